"""The Lambda entry points, one per stage. Thin: parse the event, call the stage function.

`automlops.aws.handlers.<stage>` accepts a direct S3 event notification, an SQS batch whose
bodies are S3 event notifications (the deployment's wiring: S3 -> SQS -> Lambda), or, for
evaluate, an SQS batch of evaluation messages. SQS batches answer with partial batch failures
(`batchItemFailures`): a transient failure is retried after an exponential backoff and lands in
the dead-letter queue after the queue's maxReceiveCount; a permanent one (bad input) is logged
as the run's failure and acknowledged, as the local worker does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from automlops.aws.runtime import AwsRuntime, build_runtime
from automlops.aws.sqs_queue import queue_name_from_arn
from automlops.errors import PermanentError
from automlops.events import S3Event, S3EventRecord, SqsRecord
from automlops.routing import QUEUE_TRIGGERS, Stage
from automlops.stages import STAGES

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


@dataclass(frozen=True)
class Outcome:
    """How one stage run ended: ok, or failed permanently or transiently."""

    ok: bool
    permanent: bool = False
    error: str | None = None


def run_stage(stage: Stage, event: S3EventRecord | SqsRecord, rt: AwsRuntime) -> Outcome:
    """Run one stage on one event, logging with the run's identity."""
    spec = STAGES[stage]
    ports = rt.ports(progress=lambda text: logger.info(text))
    source = event.key if isinstance(event, S3EventRecord) else None
    try:
        run = spec.locate(event, ports)
        logger.append_keys(dataset=run.dataset, run_id=run.run_id)
    except Exception as exc:  # the run cannot be named: log the event instead
        logger.append_keys(source=source)
        return _failed(stage, exc)
    try:
        result = rt.runners[stage](event, ports)
    except Exception as exc:
        return _failed(stage, exc)
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
    return Outcome(ok=True)


def _failed(stage: Stage, exc: Exception) -> Outcome:
    if isinstance(exc, PermanentError):
        # The input is wrong: the run fails now, and the message is acknowledged.
        logger.error("run failed", extra={"error": str(exc), "error_type": type(exc).__name__})
        return Outcome(ok=False, permanent=True, error=str(exc))
    logger.exception("stage failed; will be retried", extra={"error_type": type(exc).__name__})
    return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}")


def _jobs(stage: Stage, message: SqsRecord, rt: AwsRuntime) -> list[S3EventRecord | SqsRecord]:
    """What one SQS message asks this stage to do."""
    if any(t.stage is stage for t in QUEUE_TRIGGERS):
        return [message]
    body = json.loads(message.body)
    if isinstance(body, dict) and body.get("Event") == "s3:TestEvent":
        return []  # S3 sends one when the notification is configured
    records = S3Event.model_validate(body).records
    jobs: list[S3EventRecord | SqsRecord] = []
    for record in records:
        trigger = rt.router.match_object(record.bucket, record.key)
        if trigger is None or trigger.stage is not stage:
            # The deployment's S3 filters route; a mismatch is a wiring error, not data.
            logger.warning(
                "event not for this stage; ignored",
                extra={"bucket": record.bucket, "key": record.key},
            )
            continue
        jobs.append(record)
    return jobs


def handle_sqs(stage: Stage, event: dict[str, Any], rt: AwsRuntime) -> dict[str, Any]:
    """Process an SQS batch; answer the messages to retry as partial batch failures."""
    failures: list[dict[str, str]] = []
    for raw in event["Records"]:
        message = SqsRecord.model_validate(raw)
        logger.append_keys(message_id=message.message_id, receive_count=message.receive_count)
        try:
            jobs = _jobs(stage, message, rt)
        except ValueError as exc:
            # Unreadable body: retrying cannot help, the redrive policy dead-letters it.
            logger.error("unreadable message", extra={"error": str(exc)})
            failures.append({"itemIdentifier": message.message_id})
            continue
        outcomes = [run_stage(stage, job, rt) for job in jobs]
        if any(not o.ok and not o.permanent for o in outcomes):
            failures.append({"itemIdentifier": message.message_id})
            _back_off(message, rt)
        logger.remove_keys(["message_id", "receive_count", "dataset", "run_id", "source"])
    return {"batchItemFailures": failures}


def _back_off(message: SqsRecord, rt: AwsRuntime) -> None:
    attempts = message.receive_count
    if attempts >= rt.config.max_receives:
        logger.error("giving up: the message goes to the dead-letter queue")
        return
    delay = rt.config.retry_base_s * 2 ** (attempts - 1)
    try:
        queue = queue_name_from_arn(message.event_source_arn)
        rt.queue.change_visibility(queue, message.receipt_handle, delay)
    except Exception:  # best effort: without it the queue's visibility timeout applies
        logger.warning("could not delay the retry", exc_info=True)


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


@logger.inject_lambda_context(clear_state=True)
def preprocess(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda handler: an uploaded CSV becomes splits, a transform and a schema."""
    return handle(Stage.preprocess, event)


@logger.inject_lambda_context(clear_state=True)
def train(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda handler: a schema.json starts training (in-function or a SageMaker job)."""
    return handle(Stage.train, event)


@logger.inject_lambda_context(clear_state=True)
def deploy(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda handler: a model.tar.gz is registered, hosted and queued for evaluation."""
    return handle(Stage.deploy, event)


@logger.inject_lambda_context(clear_state=True)
def evaluate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda handler: an evaluation message scores the candidate and decides promotion."""
    return handle(Stage.evaluate, event)
