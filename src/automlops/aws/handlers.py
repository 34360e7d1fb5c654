"""The Lambda entry points, one per stage. Thin: parse the event, call the stage function.

`automlops.aws.handlers.<stage>` accepts a direct S3 event notification, an SQS batch whose
bodies are S3 event notifications (the deployment's wiring: S3 -> SQS -> Lambda), or, for
evaluate, an SQS batch of evaluation messages. An SQS batch goes through the dispatcher the
local worker uses (`automlops.dispatch`) inside Powertools' batch processor, which answers the
messages to retry as partial batch failures (`batchItemFailures`): a transient failure is
retried after an exponential back-off and lands in the dead-letter queue after the queue's
maxReceiveCount; a permanent one (bad input) is logged as the run's failure and acknowledged,
as the local worker does.

Alerts (`usecases.alerts`) go to the runtime's sink, CloudWatch metrics on AWS: a run that
fails for good here (bad input, or its retries exhausted: dead-lettered) or in its SageMaker
training or transform job, a gate decision, and what the scheduled monitor finds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from automlops.aws.runtime import AwsRuntime, build_runtime
from automlops.aws.sqs_queue import queue_name_from_arn
from automlops.dispatch import (
    DONE,
    Action,
    Decision,
    Job,
    Outcome,
    RetryPolicy,
    StageEvent,
    dispatch,
    failure,
)
from automlops.events import S3Event, S3EventRecord, SqsRecord
from automlops.keys import RunRef
from automlops.routing import QUEUE_TRIGGERS, Stage
from automlops.stages import STAGES
from automlops.usecases.alerts import failed_run_alert, gate_alert

logger = Logger(service="automlops")

_runtime: AwsRuntime | None = None


def configure(runtime: AwsRuntime | None) -> None:
    """Use `runtime` for the handlers (None: build one from the environment on next use)."""
    global _runtime
    _runtime = runtime


def current_runtime() -> AwsRuntime:
    """The runtime of this Lambda container, built on first use (cold start)."""
    global _runtime
    if _runtime is None:
        _runtime = build_runtime()
    return _runtime


class RetryLater(Exception):
    """Raised for a message to retry: the batch processor reports it as a failed item."""


def run_stage(
    stage: Stage,
    event: StageEvent,
    rt: AwsRuntime,
    named: Callable[[RunRef], None] | None = None,
) -> Outcome:
    """Run one stage on one event, logging with the run's identity (also given to `named`)."""
    spec = STAGES[stage]
    ports = rt.ports(progress=lambda text: logger.info(text))
    try:
        run = spec.identify(event, ports)
        logger.append_keys(dataset=run.dataset, run_id=run.run_id)
        if named is not None:
            named(run)
    except Exception as exc:  # the run cannot be named: log the event instead
        logger.append_keys(source=event.key if isinstance(event, S3EventRecord) else None)
        return _failed(exc, rt, None)
    try:
        result = rt.runners[stage](event, ports)
    except Exception as exc:
        return _failed(exc, rt, run)
    logger.info(
        "stage skipped: already done" if result.duplicate else "stage succeeded",
        extra={
            "outputs": result.outputs,
            "model_version": result.model_version,
            "headline": result.headline,
            "note": result.note,
            "run_finished": result.final,
        },
    )
    if stage is Stage.evaluate and not result.duplicate and result.model_version is not None:
        alert = gate_alert(run.dataset, result.model_version, result.note or "", run.run_id)
        if alert is not None:
            rt.alerts().send(alert)
    return DONE


# The dataset dimension of a failed run whose event named none (e.g. a key outside the layout).
UNIDENTIFIED = "unidentified"


def _failed(exc: Exception, rt: AwsRuntime, run: RunRef | None) -> Outcome:
    outcome = failure(exc)
    if outcome.permanent:
        # The input is wrong: the run fails now, and the message is acknowledged.
        logger.error("run failed", extra={"error": outcome.error, "error_type": type(exc).__name__})
        dataset, run_id = (UNIDENTIFIED, None) if run is None else (run.dataset, run.run_id)
        rt.alerts().send(failed_run_alert(dataset, run_id, outcome.error))
    else:
        logger.exception("stage failed; will be retried", extra={"error_type": type(exc).__name__})
    return outcome


def handle_sqs(stage: Stage, event: dict[str, Any], rt: AwsRuntime) -> dict[str, Any]:
    """Process an SQS batch; answer the messages to retry as partial batch failures."""
    policy = RetryPolicy.of(rt.config.settings())
    # The handler's queue carries this stage's messages themselves (evaluation) or S3
    # notifications, routed record by record.
    queue_stage = stage if any(t.stage is stage for t in QUEUE_TRIGGERS) else None

    def accept(job: Job) -> bool:
        if job.stage is stage:
            return True
        # The deployment's S3 filters route; a mismatch is a wiring error, not data.
        key = job.event.key if isinstance(job.event, S3EventRecord) else None
        logger.warning("event not for this stage; ignored", extra={"key": key})
        return False

    def record_handler(record: SQSRecord) -> None:
        message = SqsRecord.model_validate(record.raw_event)
        logger.append_keys(message_id=message.message_id, receive_count=message.receive_count)
        failing: list[RunRef] = []  # runs of this message that failed transiently

        def run(job: Job) -> Outcome:
            named: list[RunRef] = []
            outcome = run_stage(job.stage, job.event, rt, named.append)
            if not outcome.ok and not outcome.permanent:
                failing.extend(named)
            return outcome

        try:
            decision = dispatch(
                message,
                router=rt.router,
                queue_stage=queue_stage,
                run=run,
                policy=policy,
                accept=accept,
            )
            _answer(decision, message, rt, failing)
        finally:
            logger.remove_keys(["message_id", "receive_count", "dataset", "run_id", "source"])

    # A batch whose every message fails is answered like any other, item by item.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(process_partial_response(event, record_handler, processor))


def _answer(decision: Decision, message: SqsRecord, rt: AwsRuntime, failing: list[RunRef]) -> None:
    """Carry a decision out in a batch: return to acknowledge, raise to have it retried.

    A message to dead-letter is failed too: the queue's redrive policy moves it once it has
    had maxReceiveCount deliveries (the deployment sets that to `max_receives`); its runs
    (`failing`; none named: an unreadable message) failed for good.
    """
    if decision.action is Action.ack:
        return
    if decision.action is Action.dead_letter:
        logger.error(
            "giving up: the message goes to the dead-letter queue",
            extra={"error": decision.error},
        )
        sink = rt.alerts()
        error = f"dead-lettered after {message.receive_count} deliveries: {decision.error}"
        named: list[tuple[str, str | None]] = [(r.dataset, r.run_id) for r in failing]
        for dataset, run_id in named or [(UNIDENTIFIED, None)]:
            sink.send(failed_run_alert(dataset, run_id, error))
    else:
        try:
            queue = queue_name_from_arn(message.event_source_arn)
            rt.queue.change_visibility(queue, message.receipt_handle, decision.delay_s)
        except Exception:  # best effort: without it the queue's visibility timeout applies
            logger.warning("could not delay the retry", exc_info=True)
    raise RetryLater(decision.error or "failed")


def handle_s3(stage: Stage, event: dict[str, Any], rt: AwsRuntime) -> dict[str, Any]:
    """Process a direct S3 notification; raise on a transient failure (Lambda retries)."""
    records = S3Event.model_validate(event).records
    failed: list[str] = []
    for record in records:
        trigger = rt.router.match_object(record.bucket, record.key)
        if trigger is None or trigger.stage is not stage:
            logger.warning("event not for this stage; ignored", extra={"key": record.key})
            continue
        outcome = run_stage(stage, record, rt)
        if not outcome.ok and not outcome.permanent:
            failed.append(outcome.error or record.key)
    if failed:
        raise RuntimeError(f"{len(failed)} record(s) failed: {failed[0]}")
    return {"processed": len(records)}


def handle(stage: Stage, event: dict[str, Any], rt: AwsRuntime | None = None) -> dict[str, Any]:
    """Dispatch a Lambda event of either shape to the stage."""
    rt = rt or current_runtime()
    logger.append_keys(stage=stage.value)
    records = event.get("Records") or []
    if not records:
        logger.warning("event without records; nothing to do")
        return {"batchItemFailures": []}
    source = records[0].get("eventSource")
    if source == "aws:sqs":
        return handle_sqs(stage, event, rt)
    if source == "aws:s3":
        return handle_s3(stage, event, rt)
    raise ValueError(f"unsupported event source {source!r}")


def _entry_point(stage: Stage, doc: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda handler of one stage: `handle` with the invocation's context logged."""

    def entry_point(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return handle(stage, event)

    # serverless.yml names each handler `automlops.aws.handlers.<stage>`: give it that name.
    entry_point.__name__ = entry_point.__qualname__ = stage.value
    entry_point.__doc__ = doc
    return logger.inject_lambda_context(clear_state=True)(entry_point)


# The entry points, one per stage (deploy/aws/serverless.yml references them by name).
preprocess = _entry_point(
    Stage.preprocess, "Lambda handler: an uploaded CSV becomes splits, a transform and a schema."
)
train = _entry_point(
    Stage.train, "Lambda handler: a schema.json starts training (in-function or a SageMaker job)."
)
deploy = _entry_point(
    Stage.deploy, "Lambda handler: a model.tar.gz is registered, hosted and queued for evaluation."
)
evaluate = _entry_point(
    Stage.evaluate,
    "Lambda handler: an evaluation message scores the candidate and decides promotion.",
)
score = _entry_point(
    Stage.score, "Lambda handler: a file under score/<dataset>/ is scored by the champion."
)


@logger.inject_lambda_context(clear_state=True)
def training_job_state(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda handler (EventBridge): a failed or stopped SageMaker training job fails its run.

    The failure is recorded with SageMaker's reason where `automlops aws models` / `aws runs`
    show it, and logged as the run's failure. An event that is not a training job's state
    change raises: Lambda retries it, then its on-failure destination keeps it.
    """
    from automlops.aws.training_failures import failure_of, record_failure

    rt = current_runtime()
    failure = failure_of(event)
    if failure is None:
        return {"recorded": None}
    logger.append_keys(dataset=failure.dataset, run_id=failure.run_id, stage="train")
    key = record_failure(rt.store, rt.config.bucket_model_output, failure)
    logger.error(
        "run failed: its training job failed",
        extra={"job": failure.job_name, "status": failure.status, "error": failure.reason},
    )
    reason = f"training job {failure.job_name} {failure.status.lower()}: {failure.reason}"
    rt.alerts().send(failed_run_alert(failure.dataset, failure.run_id, reason))
    return {"recorded": key}


@logger.inject_lambda_context(clear_state=True)
def monitor(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda handler (EventBridge schedule): a loop turn for every dataset's champion.

    `usecases.loop.turn_all`, as `automlops up`'s schedule runs it: the monitor over the last
    24 hours of captured traffic (feedback CSVs under feedback/<dataset>/ of the data bucket
    ingested on the way, no S3 notification needed), one report per dataset in the monitoring
    bucket, its alerts as CloudWatch metrics, and the dataset's retrain policy (manifest): a
    triggered retrain is a new upload to the data bucket, whose notification starts the
    pipeline and the gate. A dataset whose turn fails is logged and listed under "failed";
    the others go on, and the next scheduled run looks again.
    """
    from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent

    from automlops.usecases.loop import turn_all

    # A scheduled event names its rule; an operator's `aws lambda invoke` may send `{}`.
    scheduled = EventBridgeEvent(event)
    logger.append_keys(stage="monitor", rule=",".join(scheduled.get("resources") or []) or None)
    rt = current_runtime()
    sweep = turn_all(rt.ports(progress=lambda text: logger.info(text)), sender=rt.alerts())
    for dataset, turned in sweep.turns.items():
        report = turned.monitor.report
        logger.info(
            "monitored",
            extra={
                "dataset": dataset,
                "champion": report.champion,
                "requests": report.requests,
                "rows": report.rows,
                "labels_matched": report.labels.matched,
                "alerts": report.alerts,
                "report": turned.monitor.json_key,
                "retrain": None if turned.decision is None else turned.decision.triggered,
                "upload": None if turned.upload is None else turned.upload.key,
            },
        )
    for dataset, error in sweep.failures.items():
        logger.error("monitor failed", extra={"dataset": dataset, "error": error})
    return {
        "scheduled_at": scheduled.get("time"),
        "failed": dict(sweep.failures),
        "reports": {dataset: t.monitor.json_key for dataset, t in sweep.turns.items()},
        "alerts": {dataset: len(t.monitor.report.alerts) for dataset, t in sweep.turns.items()},
        "retrains": {
            dataset: t.upload.key for dataset, t in sweep.turns.items() if t.upload is not None
        },
    }


def transform_job_state(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda handler (EventBridge): a scoring run's Batch Transform job ended.

    Completed, failed or stopped, the end is recorded on the run (`runs/<dataset>/<run>/
    transform-job.json`, with SageMaker's reason for a failure) and logged as the run's outcome. A
    completed job's unreadable rows are summed from its mini-batches' records into errors.csv
    first; more than the run's `max_bad_share` of them fails the run (`aws.transform.settle`).
    A failed run sends the failed-run alert. An event that is not a transform job's state
    change raises: Lambda retries it, then its on-failure destination keeps it.
    """
    from automlops.aws.transform import end_of, settle, write_record

    rt = current_runtime()
    end = end_of(event)
    if end is None:
        return {"recorded": None}
    logger.append_keys(dataset=end.record.dataset, run_id=end.record.run_id, stage="score")
    bucket = rt.config.bucket_model_output
    record = settle(end, rt.store, rt.store.client, bucket)
    key = write_record(rt.store, bucket, record)
    if record.status == "Completed":
        logger.info(
            "run succeeded: its transform job completed",
            extra={"output": record.output, "rows": record.rows, "error_rows": record.error_rows},
        )
        return {"recorded": key}
    if end.record.status == "Completed":  # completed, but too many rows left out
        message = "run failed: too many unreadable rows"
        reason = f"transform job {record.job}: {record.reason}"
    else:
        message = "run failed: its transform job failed"
        reason = f"transform job {record.job} {record.status.lower()}: {record.reason}"
    logger.error(
        message, extra={"job": record.job, "status": record.status, "error": record.reason}
    )
    rt.alerts().send(failed_run_alert(record.dataset, record.run_id, reason))
    return {"recorded": key}
