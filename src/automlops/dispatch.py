"""Message dispatch, written once for the local worker and the Lambda handlers.

A queue message becomes (stage, event) jobs (`read_jobs`); each job ends in an `Outcome`; the
outcomes and the message's delivery count become one `Decision` (`decide`): acknowledge it,
retry it after an exponential back-off, or dead-letter it. Nothing here touches a queue except
`settle`, which carries a decision out over the `Queue` port; the Lambda handlers answer a
decision through Powertools' partial batch response instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError

from automlops.config import Settings
from automlops.errors import PermanentError
from automlops.events import S3Event, S3EventRecord, SqsRecord
from automlops.ports import Queue
from automlops.routing import Router, Stage

# SQS refuses a visibility timeout over 12 hours; a back-off never asks for more.
MAX_BACK_OFF_S = 12 * 3600.0

StageEvent = S3EventRecord | SqsRecord


@dataclass(frozen=True)
class Job:
    """One stage to run on one event: an S3 record, or the message itself on a queue that
    triggers a stage directly (evaluation)."""

    stage: Stage
    event: StageEvent


class UnreadableMessage(ValueError):
    """A message body that is not the notification its queue carries: no retry can help."""


def read_jobs(message: SqsRecord, router: Router, queue_stage: Stage | None) -> list[Job]:
    """The jobs one message asks for.

    `queue_stage` is the stage the message's queue triggers directly (None for a queue of S3
    event notifications, which are routed record by record through the routing table; records
    no trigger matches are not jobs). The test event S3 sends when a notification is
    configured asks for nothing. UnreadableMessage when the body is neither.
    """
    if queue_stage is not None:
        return [Job(queue_stage, message)]
    try:
        body = json.loads(message.body)
    except ValueError as exc:
        raise UnreadableMessage(f"unreadable event notification: {exc}") from None
    if isinstance(body, dict) and body.get("Event") == "s3:TestEvent":
        return []
    try:
        records = S3Event.model_validate(body).records
    except ValidationError as exc:
        raise UnreadableMessage(f"unreadable event notification: {exc}") from None
    jobs: list[Job] = []
    for record in records:
        trigger = router.match_object(record.bucket, record.key)
        if trigger is not None:
            jobs.append(Job(trigger.stage, record))
    return jobs


@dataclass(frozen=True)
class Outcome:
    """How one job ended: done, or failed permanently (bad input) or transiently."""

    ok: bool
    permanent: bool = False
    error: str | None = None


DONE = Outcome(ok=True)


def failure(exc: BaseException) -> Outcome:
    """The outcome of a job that raised: a PermanentError is the input's fault (no retry),
    anything else may pass (retry); the error text names the class of a transient one."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, PermanentError):
        return Outcome(ok=False, permanent=True, error=text)
    return Outcome(ok=False, error=f"{type(exc).__name__}: {text}")


@dataclass(frozen=True)
class RetryPolicy:
    """How often a message is delivered before it is dead-lettered, and how long a failed one
    waits before its next delivery (doubling from `base_s`)."""

    max_receives: int
    base_s: float

    @classmethod
    def of(cls, settings: Settings) -> RetryPolicy:
        """The policy a workspace's or a deployment's settings configure."""
        return cls(max_receives=settings.max_receives, base_s=settings.retry_base_s)

    def back_off_s(self, receive_count: int) -> float:
        """The wait after the `receive_count`-th delivery failed: base, 2x base, 4x base..."""
        return min(self.base_s * 2 ** max(receive_count - 1, 0), MAX_BACK_OFF_S)

    def exhausted(self, receive_count: int) -> bool:
        """Whether the `receive_count`-th delivery was the last one allowed."""
        return receive_count >= self.max_receives


class Action(StrEnum):
    ack = "ack"  # done with (succeeded, or failed for good and recorded so)
    retry = "retry"  # deliver again after `delay_s`
    dead_letter = "dead_letter"  # move to the dead-letter queue now


@dataclass(frozen=True)
class Decision:
    """What to do with a message after its jobs ran."""

    action: Action
    error: str | None = None
    delay_s: float = 0.0


def decide(outcomes: Iterable[Outcome], receive_count: int, policy: RetryPolicy) -> Decision:
    """Acknowledge unless a job failed transiently; then retry with back-off, or dead-letter
    once the message has had all its deliveries. A permanent failure is acknowledged: it is
    recorded as the run's failure, and delivering it again would fail the same way."""
    transient = [o for o in outcomes if not o.ok and not o.permanent]
    if not transient:
        return Decision(Action.ack)
    error = transient[0].error or "stage failed"
    if policy.exhausted(receive_count):
        return Decision(Action.dead_letter, error=error)
    return Decision(Action.retry, error=error, delay_s=policy.back_off_s(receive_count))


def dispatch(
    message: SqsRecord,
    *,
    router: Router,
    queue_stage: Stage | None,
    run: Callable[[Job], Outcome],
    policy: RetryPolicy,
    accept: Callable[[Job], bool] = lambda job: True,
) -> Decision:
    """Read a message's jobs, run those `accept` takes, and decide the message's fate.

    An unreadable message is dead-lettered at once. `run` turns whatever the stage raised into
    an Outcome (see `failure`)."""
    try:
        jobs = read_jobs(message, router, queue_stage)
    except UnreadableMessage as exc:
        return Decision(Action.dead_letter, error=str(exc))
    return decide((run(job) for job in jobs if accept(job)), message.receive_count, policy)


def settle(queue: Queue, name: str, message: SqsRecord, decision: Decision) -> None:
    """Carry a decision out on a queue the caller received from itself (the local worker)."""
    handle = message.receipt_handle
    if decision.action is Action.ack:
        queue.delete(name, handle)
    elif decision.action is Action.dead_letter:
        queue.dead_letter(name, message, decision.error or "failed")
    else:
        queue.record_error(name, handle, decision.error or "failed")
        queue.change_visibility(name, handle, decision.delay_s)
