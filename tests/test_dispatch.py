"""The dispatcher, purely: message bodies in, jobs and decisions out (no queue, no stage)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automlops.config import Settings
from automlops.dispatch import (
    DONE,
    MAX_BACK_OFF_S,
    Action,
    Decision,
    Job,
    Outcome,
    RetryPolicy,
    UnreadableMessage,
    decide,
    dispatch,
    failure,
    read_jobs,
    settle,
)
from automlops.errors import DataError, PermanentError
from automlops.events import S3Event, SqsRecord, object_created
from automlops.local.sqlite_queue import SqliteQueue
from automlops.routing import Router, Stage

SETTINGS = Settings()
ROUTER = Router(SETTINGS)
POLICY = RetryPolicy(max_receives=4, base_s=0.5)


def _message(body: str, receive_count: int = 1) -> SqsRecord:
    return SqsRecord(
        messageId="m1",
        receiptHandle="rh1",
        body=body,
        attributes={"ApproximateReceiveCount": str(receive_count)},
    )


def _created(bucket: str, key: str) -> S3Event:
    return object_created(bucket, key, size=3, etag="abc", configuration_id="c")


def _notification(*events: S3Event) -> str:
    records = [record for event in events for record in event.records]
    return S3Event(Records=records).model_dump_json(by_alias=True)


def test_s3_records_are_routed_to_their_stages_and_strays_are_no_jobs() -> None:
    buckets = SETTINGS.buckets
    body = _notification(
        _created(buckets.data, "data/bank/new file é.csv"),
        _created(buckets.automl_data, "automl/bank/r1/schema.json"),
        _created(buckets.data, "elsewhere/x.csv"),  # no trigger names it
    )
    jobs = read_jobs(_message(body), ROUTER, queue_stage=None)
    assert [job.stage for job in jobs] == [Stage.preprocess, Stage.train]
    assert jobs[0].event.key == "data/bank/new file é.csv"  # type: ignore[union-attr]  # S3 record


def test_a_queue_that_triggers_a_stage_makes_the_message_its_event() -> None:
    message = _message('{"anything": 1}')
    assert read_jobs(message, ROUTER, queue_stage=Stage.evaluate) == [Job(Stage.evaluate, message)]


def test_the_s3_test_event_asks_for_nothing() -> None:
    body = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "data"})
    assert read_jobs(_message(body), ROUTER, queue_stage=None) == []


@pytest.mark.parametrize("body", ["not json at all", '{"Records": [{"eventName": 3}]}', "[1]"])
def test_unreadable_bodies_are_refused(body: str) -> None:
    with pytest.raises(UnreadableMessage, match="unreadable event notification"):
        read_jobs(_message(body), ROUTER, queue_stage=None)


def test_an_unreadable_message_is_dead_lettered_at_once_without_running_anything() -> None:
    ran: list[Job] = []
    decision = dispatch(
        _message("{not json"),
        router=ROUTER,
        queue_stage=None,
        run=lambda job: ran.append(job) or DONE,
        policy=POLICY,
    )
    assert decision.action is Action.dead_letter
    assert decision.error is not None and "unreadable" in decision.error
    assert ran == []


def test_failures_are_permanent_for_bad_input_and_transient_otherwise() -> None:
    bad = failure(DataError("data/x.csv", "no rows", line=3))
    assert bad.permanent and not bad.ok and bad.error == "data/x.csv: line 3: no rows"
    flaky = failure(TimeoutError("endpoint slow"))
    assert not flaky.permanent and flaky.error == "TimeoutError: endpoint slow"
    assert failure(RuntimeError()).error == "RuntimeError: RuntimeError"


def test_success_and_permanent_failures_are_acknowledged() -> None:
    assert decide([], 1, POLICY) == Decision(Action.ack)
    assert decide([DONE, failure(PermanentError("bad manifest"))], 4, POLICY).action is Action.ack


def test_a_transient_failure_is_retried_with_a_growing_back_off() -> None:
    flaky = Outcome(ok=False, error="boom")
    delays = [decide([DONE, flaky], n, POLICY).delay_s for n in (1, 2, 3)]
    assert delays == [0.5, 1.0, 2.0]
    assert decide([flaky], 1, POLICY) == Decision(Action.retry, error="boom", delay_s=0.5)
    # Never beyond what SQS accepts as a visibility timeout.
    assert RetryPolicy(max_receives=100, base_s=30).back_off_s(50) == MAX_BACK_OFF_S


def test_a_transient_failure_is_dead_lettered_after_the_last_allowed_delivery() -> None:
    flaky = Outcome(ok=False, error="boom")
    assert decide([flaky], 3, POLICY).action is Action.retry
    assert decide([flaky], 4, POLICY) == Decision(Action.dead_letter, error="boom")
    assert decide([flaky], 9, POLICY).action is Action.dead_letter


def test_every_job_of_a_message_runs_even_when_one_fails() -> None:
    buckets = SETTINGS.buckets
    body = _notification(
        _created(buckets.data, "data/a/one.csv"), _created(buckets.data, "data/b/two.csv")
    )
    ran: list[str] = []

    def run(job: Job) -> Outcome:
        ran.append(job.event.key)  # type: ignore[union-attr]  # S3 records here
        return Outcome(ok=False, error="first fails") if len(ran) == 1 else DONE

    decision = dispatch(
        _message(body, receive_count=2), router=ROUTER, queue_stage=None, run=run, policy=POLICY
    )
    assert ran == ["data/a/one.csv", "data/b/two.csv"]
    assert decision == Decision(Action.retry, error="first fails", delay_s=1.0)


def test_jobs_refused_by_accept_do_not_run() -> None:
    buckets = SETTINGS.buckets
    body = _notification(
        _created(buckets.data, "data/a/one.csv"),
        _created(buckets.automl_data, "automl/a/r/schema.json"),
    )
    ran: list[Stage] = []
    decision = dispatch(
        _message(body),
        router=ROUTER,
        queue_stage=None,
        run=lambda job: ran.append(job.stage) or Outcome(ok=False, error="x"),
        policy=POLICY,
        accept=lambda job: job.stage is Stage.train,
    )
    assert ran == [Stage.train] and decision.action is Action.retry


def test_the_policy_comes_from_the_settings() -> None:
    settings = Settings(max_receives=7, retry_base_s=2.0)
    assert RetryPolicy.of(settings) == RetryPolicy(max_receives=7, base_s=2.0)


def _received(tmp_path: Path) -> tuple[SqliteQueue, SqsRecord]:
    queue = SqliteQueue(tmp_path / "q.db", visibility_timeout_s=60)
    queue.send("q", "{}")
    (message,) = queue.receive("q")
    return queue, message


def test_settle_ack_deletes_the_message(tmp_path: Path) -> None:
    queue, message = _received(tmp_path)
    settle(queue, "q", message, Decision(Action.ack))
    assert queue.counts("q") == (0, 0)
    assert queue.dead_letters("q") == []


def test_settle_dead_letter_moves_it_with_the_error(tmp_path: Path) -> None:
    queue, message = _received(tmp_path)
    settle(queue, "q", message, Decision(Action.dead_letter, error="bad input"))
    assert queue.counts("q") == (0, 0)
    [dead] = queue.dead_letters("q")
    assert (dead.id, dead.body, dead.error) == (message.message_id, "{}", "bad input")


def test_settle_retry_hides_it_for_the_delay_and_keeps_the_error(tmp_path: Path) -> None:
    queue, message = _received(tmp_path)
    settle(queue, "q", message, Decision(Action.retry, error="flaky", delay_s=0.0))
    assert queue.counts("q") == (1, 0)  # a zero delay: visible again at once
    (again,) = queue.receive("q")
    assert again.receive_count == 2
    settle(queue, "q", again, Decision(Action.retry, error="flaky", delay_s=3600.0))
    assert queue.counts("q") == (0, 1)  # hidden for the back-off
    queue.change_visibility("q", again.receipt_handle, 0)
    # The recorded error is what a later dead-lettering by the queue itself reports.
    queue.max_receives = 2
    assert [d.error for d in queue.dead_letter_exhausted("q")] == ["flaky"]
