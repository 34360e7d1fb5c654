"""The local worker: takes messages off the queues, runs the stage each one triggers, and
records every run and stage."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace

from automlops import keys
from automlops.dispatch import (
    DONE,
    Action,
    Outcome,
    RetryPolicy,
    StageEvent,
    UnreadableMessage,
    dispatch,
    failure,
    read_jobs,
    settle,
)
from automlops.events import S3EventRecord, SqsRecord
from automlops.keys import RunRef
from automlops.local.runlog import PriorState, RunRecord
from automlops.local.runtime import LocalRuntime
from automlops.local.sqlite_queue import dlq_name
from automlops.ports import DeadLetter
from automlops.routing import Stage
from automlops.stages import STAGES, StageResult

log = logging.getLogger(__name__)

# The object each stage's next stage is triggered by, for re-sending a lost notification.
_TRIGGER_OUTPUT: dict[Stage, tuple[str, Callable[[str, str], str]]] = {
    Stage.preprocess: ("automl_data", keys.schema_key),
    Stage.train: ("model_output", keys.model_key),
}

# A running stage renews its message's visibility this many times per visibility timeout, so
# a stage longer than the timeout is not delivered (and run) a second time meanwhile.
HEARTBEATS_PER_TIMEOUT = 3

RunCallback = Callable[[RunRecord], None]
ProgressCallback = Callable[[RunRef, Stage, str], None]


class Worker:
    """Processes queued events one at a time; `on_run_end` hears of every finished run."""

    def __init__(
        self,
        runtime: LocalRuntime,
        *,
        on_run_end: RunCallback | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.runtime = runtime
        self.on_run_end = on_run_end
        self.on_progress = on_progress
        self.queues = runtime.settings.queues.served
        self.policy = RetryPolicy.of(runtime.settings)

    def step(self) -> bool:
        """Process one message if any is visible; True when one was processed."""
        for queue in self.queues:
            for dead in self.runtime.queue.dead_letter_exhausted(queue):
                self._abandoned(queue, dead)
            messages = self.runtime.queue.receive(queue, max_messages=1)
            if messages:
                self._handle(queue, messages[0])
                return True
        return False

    def pending(self) -> int:
        """Messages queued or in flight on the pipeline's queues."""
        return sum(sum(self.runtime.queue.counts(q)) for q in self.queues)

    def run_until_idle(self, poll_s: float = 0.2, stop: Callable[[], bool] = lambda: False) -> None:
        """Process until nothing is queued or in flight (in flight: waits for its timeout)."""
        while not stop():
            if not self.step():
                if self.pending() == 0:
                    return
                time.sleep(poll_s)

    def run_forever(self, poll_s: float = 0.5, stop: Callable[[], bool] = lambda: False) -> None:
        while not stop():
            if not self.step():
                time.sleep(poll_s)

    # -- one message ---------------------------------------------------------------------------

    def _handle(self, queue: str, message: SqsRecord) -> None:
        decision = dispatch(
            message,
            router=self.runtime.router,
            queue_stage=self.runtime.router.stage_for_queue(queue),
            run=lambda job: self._run_stage(job.stage, job.event, message, queue),
            policy=self.policy,
        )
        if decision.action is Action.dead_letter:
            log.error("dead-lettering message %s: %s", message.message_id, decision.error)
        settle(self.runtime.queue, queue, message, decision)

    def _abandoned(self, queue: str, dead: DeadLetter) -> None:
        """A message the queue gave up on (its consumer never finished): fail its runs."""
        error = (
            f"gave up after {dead.receive_count} deliveries that never finished (the worker "
            f"stopped or was killed each time); message {dead.id} is in {dlq_name(queue)}"
        )
        log.error("message %s dead-lettered by the queue: %s", dead.id, error)
        message = SqsRecord(
            messageId=dead.id,
            receiptHandle="",
            body=dead.body,
            attributes={"ApproximateReceiveCount": str(dead.receive_count)},
        )
        router = self.runtime.router
        try:
            jobs = read_jobs(message, router, router.stage_for_queue(queue))
        except UnreadableMessage:
            return  # no run was ever started for an unreadable message
        runlog = self.runtime.runlog
        for job in jobs:
            stage, event = job.stage, job.event
            if isinstance(event, S3EventRecord) and stage is Stage.preprocess:
                # Named through the run log: the upload event the run started from, which is
                # also the record of an upload found to be a duplicate of an earlier run.
                trigger = _trigger_id(event)
                run_id = runlog.run_of_trigger(trigger)
                if run_id is None:  # it died before the run was named
                    run = _fallback_run(event, message)
                    runlog.start_stage(
                        run.run_id, run.dataset, event.key, stage.value, trigger=trigger
                    )
                else:
                    record = runlog.get(run_id)
                    run = RunRef(record.dataset if record else "unknown", run_id)
            else:
                try:
                    run = STAGES[stage].identify(event, self.runtime.ports())
                except Exception:
                    run = _fallback_run(event, message)
            if runlog.fail_abandoned(run.run_id, stage.value, error):
                self._announce(run)

    def _run_stage(
        self, stage: Stage, event: StageEvent, message: SqsRecord, queue: str
    ) -> Outcome:
        runlog = self.runtime.runlog
        spec = STAGES[stage]
        ports = self.runtime.ports()
        source = event.key if isinstance(event, S3EventRecord) else None
        trigger = None
        if stage is Stage.preprocess and isinstance(event, S3EventRecord):
            trigger = _trigger_id(event)
        try:
            run = spec.identify(event, ports)
        except Exception as exc:  # the run cannot even be named: name it after the event
            run = _fallback_run(event, message)
            runlog.start_stage(run.run_id, run.dataset, source, stage.value, trigger=trigger)
            return self._fail(run, stage, exc, message)

        if stage not in (Stage.preprocess, Stage.score):
            source = None  # the run's source was recorded by its first stage
        prior = runlog.start_stage(
            run.run_id,
            run.dataset,
            source,
            stage.value,
            trigger=trigger,
            message_id=message.message_id,
            lease_s=self.runtime.settings.visibility_timeout_s,
        )
        held = self._held_back(prior, run, stage, message, source, trigger)
        if held is not None:
            return held
        progress = self._progress_fn(run, stage)
        if message.receive_count > 1 and prior.stage_status == "running":
            # Its last delivery never finished (the worker died): say which run goes on.
            progress(
                f"resumed: run {run.run_id}, attempt {message.receive_count} (the one before "
                "never finished)"
            )
        else:
            progress("started")
        try:
            with _Heartbeat(self._beat(queue, message, run, stage), self._beat_interval_s()):
                result = spec.run(event, replace(ports, progress=progress))
        except Exception as exc:
            return self._fail(run, stage, exc, message)
        self._record(run, stage, result, prior, message)
        return DONE

    def _held_back(
        self,
        prior: PriorState,
        run: RunRef,
        stage: Stage,
        message: SqsRecord,
        source: str | None,
        trigger: str | None,
    ) -> Outcome | None:
        """The outcome of a delivery that must not run its stage: the same bytes uploaded
        before (one record saying so), or the same work in progress under another message."""
        if prior.claimed_by is not None and trigger is not None:
            self.runtime.runlog.record_duplicate(
                trigger,
                run.dataset,
                source,
                duplicate_of=run.run_id,
                trigger=trigger,
                note=f"duplicate of run {run.run_id}: same content as an earlier upload",
            )
            self._announce(RunRef(run.dataset, trigger))
            return DONE
        if prior.busy_with is not None:
            # The first delivery does the work (and if its worker dies, that message comes
            # back), so this one is done with.
            log.info(
                "%s of run %s is in progress (message %s): dropping duplicate message %s",
                stage.value,
                run.run_id,
                prior.busy_with,
                message.message_id,
            )
            return DONE
        return None

    def _record(
        self,
        run: RunRef,
        stage: Stage,
        result: StageResult,
        prior: PriorState,
        message: SqsRecord,
    ) -> None:
        """Write a finished stage to the run log (a redelivered event's work done before
        leaves the run and stage as they were) and announce a finished run."""
        run_status = "succeeded" if result.final else None
        stage_status = "skipped" if result.duplicate else "succeeded"
        if result.duplicate and not result.final:
            if prior.run_status in ("succeeded", "failed"):
                run_status = prior.run_status
            if prior.stage_status == "succeeded":
                stage_status = "succeeded"
            if message.receive_count > 1:
                self._renotify(stage, run)
        self.runtime.runlog.finish_stage(
            run.run_id,
            stage.value,
            status=stage_status,
            run_status=run_status,
            model_version=result.model_version,
            headline=result.headline,
            note=result.note,
        )
        if result.final:
            self._announce(run)

    def _beat_interval_s(self) -> float:
        return max(self.runtime.settings.visibility_timeout_s / HEARTBEATS_PER_TIMEOUT, 0.05)

    def _beat(
        self, queue: str, message: SqsRecord, run: RunRef, stage: Stage
    ) -> Callable[[], None]:
        """One heartbeat of a running stage: the message stays hidden for another visibility
        timeout, and the run log's lease on the stage is renewed."""
        timeout = self.runtime.settings.visibility_timeout_s

        def beat() -> None:
            self.runtime.queue.change_visibility(queue, message.receipt_handle, timeout)
            self.runtime.runlog.renew_lease(run.run_id, stage.value, message.message_id)

        return beat

    def _renotify(self, stage: Stage, run: RunRef) -> None:
        """Send the notification of a stage's output again.

        A redelivered message whose stage finds its output already written may be the
        redelivery after a crash between that write and its notification; without this the
        next stage would never hear of the output. A notification too many is harmless: every
        stage is idempotent.
        """
        output = _TRIGGER_OUTPUT.get(stage)
        if output is None:
            return
        role, key_of = output
        bucket = getattr(self.runtime.settings.buckets, role)
        key = key_of(run.dataset, run.run_id)
        if self.runtime.store.renotify(bucket, key):
            log.info("re-sent the notification of %s/%s", bucket, key)

    def _fail(self, run: RunRef, stage: Stage, exc: Exception, message: SqsRecord) -> Outcome:
        outcome = failure(exc)
        permanent, error = outcome.permanent, outcome.error or "stage failed"
        if not permanent:
            log.warning("stage %s of run %s failed: %s", stage, run.run_id, traceback.format_exc())
        exhausted = self.policy.exhausted(message.receive_count)
        if permanent or exhausted:
            if exhausted and not permanent:
                error = f"{error} (gave up after {message.receive_count} attempts)"
            self.runtime.runlog.finish_stage(
                run.run_id, stage.value, status="failed", error=error, run_status="failed"
            )
            self._announce(run)
        else:
            self.runtime.runlog.finish_stage(
                run.run_id, stage.value, status="retrying", error=error
            )
        return Outcome(ok=False, permanent=permanent, error=error)

    def _announce(self, run: RunRef) -> None:
        if self.on_run_end is not None:
            record = self.runtime.runlog.get(run.run_id)
            if record is not None:
                self.on_run_end(record)

    def _progress_fn(self, run: RunRef, stage: Stage) -> Callable[[str], None]:
        def progress(text: str) -> None:
            if self.on_progress is not None:
                self.on_progress(run, stage, text)

        return progress


class WorkerPool:
    """Workers sharing a workspace's queues, each on a thread of its own.

    The queue hands each message to one receiver and the registry is compare-and-swap, so
    workers need no coordination. Threads are daemons: a stage in progress must not keep
    Ctrl-C or the end of the process waiting, and what it had in flight is redelivered after
    the visibility timeout.
    """

    def __init__(self, workers: list[Worker], *, poll_s: float = 0.25) -> None:
        self.workers = workers
        self.poll_s = poll_s
        self._stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, *, until_idle: bool = False) -> None:
        """Start every worker on its thread; they serve until `stop` (or until idle)."""
        self._stop.clear()
        self.threads = [
            threading.Thread(
                target=self._loop,
                args=(worker, until_idle),
                name=f"automlops-worker-{i}",
                daemon=True,
            )
            for i, worker in enumerate(self.workers, start=1)
        ]
        for thread in self.threads:
            thread.start()

    def _loop(self, worker: Worker, until_idle: bool) -> None:
        if until_idle:
            worker.run_until_idle(stop=self._stop.is_set)
            return
        while not self._stop.is_set():
            try:
                worker.run_forever(poll_s=self.poll_s, stop=self._stop.is_set)
            except Exception:  # a database hiccup must not end the worker for good
                log.exception("worker loop failed; restarting it")
                self._stop.wait(1.0)

    def wait(self) -> None:
        """Block until every worker has returned (Ctrl-C still reaches the caller)."""
        try:
            while any(thread.is_alive() for thread in self.threads):
                for thread in self.threads:
                    thread.join(timeout=0.5)
        finally:
            self._stop.set()

    def stop(self, grace_s: float = 5.0) -> list[str]:
        """Ask every worker to stop; the names of the threads still busy after `grace_s`."""
        self._stop.set()
        for thread in self.threads:
            thread.join(timeout=grace_s / max(len(self.threads), 1))
        return [thread.name for thread in self.threads if thread.is_alive()]


def run_workers(workers: list[Worker], *, until_idle: bool) -> None:
    """Run workers over the same queues until all are idle (`until_idle`) or forever: one
    inline, several as a WorkerPool."""
    if len(workers) == 1:
        if until_idle:
            workers[0].run_until_idle()
        else:
            workers[0].run_forever()
        return
    pool = WorkerPool(workers)
    pool.start(until_idle=until_idle)
    pool.wait()


class _Heartbeat:
    """Calls `beat` every `interval_s` seconds on a thread of its own while the block runs.

    A failed beat is logged and retried at the next interval: the stage itself goes on.
    """

    def __init__(self, beat: Callable[[], None], interval_s: float) -> None:
        self._beat = beat
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="automlops-heartbeat", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._beat()
            except Exception:
                log.warning("heartbeat failed: %s", traceback.format_exc())

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _trigger_id(record: S3EventRecord) -> str:
    """Names one upload event: a redelivery has the same name, an upload of the same bytes
    again (same or other key) another one (its sequencer and time differ)."""
    obj = record.s3.object
    material = "\0".join(
        [record.bucket, record.key, obj.e_tag, obj.sequencer, record.event_time, record.event_name]
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _fallback_run(event: StageEvent, message: SqsRecord) -> RunRef:
    if isinstance(event, S3EventRecord):
        parts = event.key.split("/")
        dataset = parts[1] if len(parts) > 2 else "unknown"
        material = f"{event.bucket}/{event.key}/{event.s3.object.e_tag}"
    else:
        dataset, material = "unknown", message.message_id
    return RunRef(dataset, "evt-" + hashlib.sha256(material.encode()).hexdigest()[:12])
