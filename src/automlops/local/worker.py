"""The local worker: takes messages off the queues, runs the stage each one triggers, and
records every run and stage."""

from __future__ import annotations

import hashlib
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from automlops.errors import PermanentError
from automlops.events import S3Event, S3EventRecord, SqsRecord
from automlops.keys import RunRef
from automlops.local.runlog import RunRecord
from automlops.local.runtime import LocalRuntime
from automlops.ports import Ports
from automlops.routing import Stage
from automlops.stages import STAGES

log = logging.getLogger(__name__)

RunCallback = Callable[[RunRecord], None]
ProgressCallback = Callable[[RunRef, Stage, str], None]


@dataclass
class _Outcome:
    ok: bool
    permanent: bool = False
    error: str | None = None


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
        self.queues = [runtime.settings.queues.events, runtime.settings.queues.evaluation]

    def step(self) -> bool:
        """Process one message if any is visible; True when one was processed."""
        for queue in self.queues:
            messages = self.runtime.queue.receive(queue, max_messages=1)
            if messages:
                self._handle(queue, messages[0])
                return True
        return False

    def pending(self) -> int:
        """Messages queued or in flight on the pipeline's queues."""
        return sum(sum(self.runtime.queue.counts(q)) for q in self.queues)

    def run_until_idle(self, poll_s: float = 0.2) -> None:
        """Process until nothing is queued or in flight (in flight: waits for its timeout)."""
        while True:
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
        router = self.runtime.router
        if queue == self.runtime.settings.queues.events:
            try:
                records = S3Event.model_validate_json(message.body).records
            except ValueError as exc:
                self._drop(queue, message, f"unreadable event notification: {exc}")
                return
            jobs: list[tuple[Stage, object]] = []
            for record in records:
                trigger = router.match_object(record.bucket, record.key)
                if trigger is not None:
                    jobs.append((trigger.stage, record))
        else:
            stage = router.stage_for_queue(queue)
            jobs = [] if stage is None else [(stage, message)]

        outcomes = [self._run_stage(stage, event, message) for stage, event in jobs]
        failed = [o for o in outcomes if not o.ok and not o.permanent]
        if not failed:
            self.runtime.queue.delete(queue, message.receipt_handle)
            return
        error = failed[0].error or "stage failed"
        if message.receive_count >= self.runtime.settings.max_receives:
            self.runtime.queue.dead_letter(queue, message.receipt_handle, error)
        else:
            self.runtime.queue.record_error(queue, message.receipt_handle, error)
            backoff = self.runtime.settings.retry_base_s * 2 ** (message.receive_count - 1)
            self.runtime.queue.change_visibility(queue, message.receipt_handle, backoff)

    def _drop(self, queue: str, message: SqsRecord, error: str) -> None:
        log.error("dead-lettering message %s: %s", message.message_id, error)
        self.runtime.queue.dead_letter(queue, message.receipt_handle, error)

    def _run_stage(self, stage: Stage, event: object, message: SqsRecord) -> _Outcome:
        runlog = self.runtime.runlog
        spec = STAGES[stage]
        ports = self.runtime.ports()
        source = event.key if isinstance(event, S3EventRecord) else None
        try:
            run = spec.locate(event, ports)
        except Exception as exc:  # the run cannot even be named: name it after the event
            run = _fallback_run(event, message)
            runlog.start_stage(run.run_id, run.dataset, source, stage.value)
            return self._fail(run, stage, exc, message)

        if stage is not Stage.preprocess:
            source = None  # the run's source was recorded by its first stage
        runlog.start_stage(run.run_id, run.dataset, source, stage.value)
        self._progress_fn(run, stage)("started")
        ports = Ports(
            store=ports.store,
            queue=ports.queue,
            host=ports.host,
            settings=ports.settings,
            progress=self._progress_fn(run, stage),
        )
        try:
            result = spec.run(event, ports)
        except Exception as exc:
            return self._fail(run, stage, exc, message)
        run_status = "succeeded" if result.final else None
        runlog.finish_stage(
            run.run_id,
            stage.value,
            status="skipped" if result.duplicate else "succeeded",
            run_status=run_status,
            model_version=result.model_version,
            headline=result.headline,
            note=result.note,
        )
        if result.final:
            self._announce(run)
        return _Outcome(ok=True)

    def _fail(self, run: RunRef, stage: Stage, exc: Exception, message: SqsRecord) -> _Outcome:
        permanent = isinstance(exc, PermanentError)
        error = str(exc) or type(exc).__name__
        if not permanent:
            error = f"{type(exc).__name__}: {error}"
            log.warning("stage %s of run %s failed: %s", stage, run.run_id, traceback.format_exc())
        exhausted = message.receive_count >= self.runtime.settings.max_receives
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
        return _Outcome(ok=False, permanent=permanent, error=error)

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


def _fallback_run(event: object, message: SqsRecord) -> RunRef:
    if isinstance(event, S3EventRecord):
        parts = event.key.split("/")
        dataset = parts[1] if len(parts) > 2 else "unknown"
        material = f"{event.bucket}/{event.key}/{event.s3.object.e_tag}"
    else:
        dataset, material = "unknown", message.message_id
    return RunRef(dataset, "evt-" + hashlib.sha256(material.encode()).hexdigest()[:12])
