"""Where a run trains: inside the train function for small data, or a SageMaker training job.

The choice, per run: the dataset manifest's optional `"compute"` field (`function`,
`sagemaker` or `auto`), else the stack's AUTOMLOPS_TRAINING_MODE, and for `auto` a size rule:
in-function while the training rows, the processed bytes and the manifest's time budget stay
well inside Lambda's 15 minutes and 10 GB; otherwise a training job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson

from automlops import keys
from automlops.aws.config import AwsConfig
from automlops.aws.sagemaker import TrainingJobLauncher
from automlops.errors import PermanentError
from automlops.events import S3EventRecord
from automlops.ports import ObjectStore, Ports
from automlops.routing import Stage
from automlops.stages import STAGES, StageResult
from automlops.tabular.schema import DatasetSchema

Compute = Literal["function", "sagemaker"]
# Time a training job needs besides tuning: start, read the channels, refit, write the model.
_JOB_MARGIN_S = 300


@dataclass(frozen=True)
class ComputeChoice:
    """The chosen compute and why (logged with the run)."""

    compute: Compute
    reason: str


def requested_compute(store: ObjectStore, bucket: str, dataset: str) -> str | None:
    """The manifest's `compute` field, read from the raw JSON (the Manifest model drops it)."""
    key = keys.manifest_key(dataset)
    if store.head(bucket, key) is None:
        return None
    try:
        value = orjson.loads(store.get(bucket, key)).get("compute")
    except (orjson.JSONDecodeError, AttributeError):
        return None  # preprocess already reported an unreadable manifest
    return value if isinstance(value, str) else None


def choose_compute(
    schema: DatasetSchema, processed_bytes: int, config: AwsConfig, requested: str | None
) -> ComputeChoice:
    """Apply the manifest request, the stack's mode, then the size rule; PermanentError when
    the manifest's time budget cannot fit the chosen compute."""
    choice = _choice(schema, processed_bytes, config, requested)
    budget = schema.manifest.time_budget_s
    # The budget guard holds whatever chose the compute: a run that cannot finish is refused
    # with the reason now, not timed out on every delivery.
    if choice.compute == "function" and budget > config.function_max_seconds:
        raise PermanentError(
            f"time budget {budget:.0f}s is more than in-function training allows "
            f"({config.function_max_seconds:.0f}s of Lambda's 900 s): ask for "
            '"compute": "sagemaker" or "auto" in the manifest, or a smaller budget'
        )
    if choice.compute == "sagemaker" and budget + _JOB_MARGIN_S > config.training_max_runtime_s:
        raise PermanentError(
            f"time budget {budget:.0f}s does not fit a training job's maximum runtime "
            f"({config.training_max_runtime_s}s, with {_JOB_MARGIN_S}s to load and save)"
        )
    return choice


def _choice(
    schema: DatasetSchema, processed_bytes: int, config: AwsConfig, requested: str | None
) -> ComputeChoice:
    mode = requested or config.training_mode
    if mode == "function":
        return ComputeChoice("function", "requested in-function training")
    if mode == "sagemaker":
        return ComputeChoice("sagemaker", "requested a SageMaker training job")
    rows = schema.rows.train + schema.rows.validation
    budget = schema.manifest.time_budget_s
    if rows > config.function_max_rows:
        return ComputeChoice("sagemaker", f"{rows} rows > {config.function_max_rows}")
    if processed_bytes > config.function_max_bytes:
        return ComputeChoice("sagemaker", f"{processed_bytes} bytes > {config.function_max_bytes}")
    if budget > config.function_max_seconds:
        return ComputeChoice(
            "sagemaker", f"time budget {budget:.0f}s > {config.function_max_seconds:.0f}s"
        )
    return ComputeChoice("function", f"{rows} rows, {processed_bytes} bytes fit in the function")


class TrainDispatcher:
    """The train stage in aws mode: the same stage function, or a job running it."""

    def __init__(self, config: AwsConfig, launcher: TrainingJobLauncher) -> None:
        self.config = config
        self.launcher = launcher

    def __call__(self, record: S3EventRecord, ports: Ports) -> StageResult:
        """Run the train stage in-function or launch its training job."""
        run = keys.parse_schema_key(record.key)
        store, buckets = ports.store, ports.settings.buckets
        if store.head(buckets.model_output, keys.model_key(run.dataset, run.run_id)) is not None:
            return StageResult(run=run, duplicate=True, note="already trained")
        schema = DatasetSchema.model_validate_json(store.get(record.bucket, record.key))
        processed = 0
        for key in [*schema.split_keys.values(), schema.transform_key]:
            info = store.head(record.bucket, key)
            processed += 0 if info is None else info.size
        requested = requested_compute(store, buckets.data, run.dataset)
        choice = choose_compute(schema, processed, self.config, requested)
        ports.progress(f"training on {choice.compute}: {choice.reason}")
        if choice.compute == "function":
            return STAGES[Stage.train].run(record, ports)
        launched = self.launcher.launch(schema, record.bucket, record.key)
        verb = "launched" if launched.created else f"found ({launched.status})"
        return StageResult(
            run=run,
            outputs=[f"training-job/{launched.job_name}"],
            duplicate=not launched.created,
            note=f"SageMaker training job {launched.job_name} {verb}; "
            f"it writes {launched.model_key}",
        )
