"""Training jobs that fail loudly: a failed or stopped SageMaker training job, announced by
EventBridge, is recorded as the failure of its run, with SageMaker's reason.

The record is a small JSON document in the model-output bucket, `runs/<dataset>/<run>/
training-failure.json` (no notification listens there); `automlops aws models` and
`automlops aws runs` show it. A later attempt of the same run that succeeds makes it moot:
listings leave out failures of runs that have a model file.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from automlops import keys
from automlops.aws.job_events import FAILED_STATES, read_state_change
from automlops.errors import NotFoundError, PermanentError
from automlops.events import object_created
from automlops.ports import ObjectStore, Queue

_FILE = "training-failure.json"


class TrainingJobFailure(BaseModel):
    """A run whose training job failed or was stopped."""

    dataset: str
    run_id: str
    job_name: str
    status: str
    reason: str
    at: str
    redriven_at: str | None = None  # when `automlops aws retrain` sent the run back to train


class TrainingJobDetail(BaseModel):
    """The part of EventBridge's "SageMaker Training Job State Change" detail read here (the
    detail is the job's DescribeTrainingJob answer)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    job_name: str = Field(alias="TrainingJobName")
    status: str = Field(alias="TrainingJobStatus")
    failure_reason: str | None = Field(default=None, alias="FailureReason")
    hyper_parameters: dict[str, str] = Field(default_factory=dict, alias="HyperParameters")


def failure_key(dataset: str, run_id: str) -> str:
    """Where a run's training failure is recorded (model-output bucket)."""
    return keys.run_record_key(dataset, run_id, _FILE)


def failure_of(event: dict[str, Any]) -> TrainingJobFailure | None:
    """The failure an EventBridge event announces; None for another state (the rule only
    sends Failed and Stopped, but a wider rule must not record successes). PermanentError when
    the event is not a training job state change of this project's jobs."""
    change = read_state_change(event, TrainingJobDetail, "training job")
    detail = change.detail
    if detail.status not in FAILED_STATES:
        return None
    params = detail.hyper_parameters
    if "dataset" not in params or "run_id" not in params:
        raise PermanentError(f"training job {detail.job_name} names no dataset and run")
    return TrainingJobFailure(
        dataset=params["dataset"],
        run_id=params["run_id"],
        job_name=detail.job_name,
        status=detail.status,
        reason=detail.failure_reason or f"the job was {detail.status.lower()}",
        at=change.time,
    )


def record_failure(store: ObjectStore, bucket: str, failure: TrainingJobFailure) -> str:
    """Record a run's training failure (the latest attempt's wins); returns its key."""
    key = failure_key(failure.dataset, failure.run_id)
    store.put(bucket, key, failure.model_dump_json(indent=1).encode())
    return key


def list_failures(
    store: ObjectStore, bucket: str, dataset: str | None = None
) -> list[TrainingJobFailure]:
    """Recorded training failures of runs that have no model file (newest first)."""
    prefix = keys.run_records_prefix(dataset)
    found: list[TrainingJobFailure] = []
    for key in store.list(bucket, prefix):
        if not key.endswith("/" + _FILE):
            continue
        failure = TrainingJobFailure.model_validate_json(store.get(bucket, key))
        if store.head(bucket, keys.model_key(failure.dataset, failure.run_id)) is None:
            found.append(failure)
    return sorted(found, key=lambda f: f.at, reverse=True)


def retrain(
    store: ObjectStore,
    queue: Queue,
    buckets: tuple[str, str],
    train_queue: str,
    dataset: str,
    run_id: str,
    now: str,
) -> str:
    """Send a run whose training job failed back to the train stage: its schema.json's
    ObjectCreated notification, as S3 sent it, into the train queue (the train function then
    starts the run's next attempt, `-a<n+1>`, capped as every attempt is). `buckets` is
    (automl-data, model-output). The failure record stays, marked `redriven_at`; it drops out
    of the listings once the run has a model file. Returns the message id."""
    automl_data, model_output = buckets
    record_key = failure_key(dataset, run_id)
    if store.head(model_output, record_key) is None:
        raise NotFoundError(f"no recorded training failure for run {run_id} of {dataset}")
    if store.head(model_output, keys.model_key(dataset, run_id)) is not None:
        raise PermanentError(f"run {run_id} of {dataset} has a model already: nothing to retrain")
    schema_key = keys.schema_key(dataset, run_id)
    schema = store.head(automl_data, schema_key)
    if schema is None:
        raise NotFoundError(f"run {run_id} of {dataset} has no {schema_key} to train from")
    event = object_created(
        automl_data, schema_key, size=schema.size, etag=schema.etag, configuration_id="retrain"
    )
    message_id = queue.send(train_queue, event.model_dump_json(by_alias=True))
    failure = TrainingJobFailure.model_validate_json(store.get(model_output, record_key))
    redriven = failure.model_copy(update={"redriven_at": now})
    store.put(model_output, record_key, redriven.model_dump_json(indent=1).encode())
    return message_id
