"""Settings of a workspace and the per-dataset manifest."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from automlops.names import check_dataset_name

DEFAULT_HOME = ".automlops"
# A training time budget is a positive number of seconds, at most a day.
MAX_TIME_BUDGET_S = 24 * 3600.0
# Contributions per row a batch scoring may ask for (`automlops predict --explain K`).
MAX_EXPLAIN = 50


class Task(StrEnum):
    """What a model predicts."""

    binary = "binary"
    multiclass = "multiclass"
    regression = "regression"


class Buckets(BaseModel):
    """Bucket names by role, as in the reference pipeline."""

    data: str = "data"
    automl_data: str = "automl-data"
    model_output: str = "model-output"
    model_monitoring: str = "model-monitoring"

    def all(self) -> list[str]:
        """Every bucket name."""
        return [self.data, self.automl_data, self.model_output, self.model_monitoring]


class Queues(BaseModel):
    """Queue names: S3 notifications and evaluation messages, each with a dead-letter queue."""

    events: str = "object-events"
    evaluation: str = "evaluation"

    @property
    def served(self) -> list[str]:
        """The queues the pipeline consumes, whose dead letters are listed and redriven (a
        runtime without an object-events queue, as on AWS, leaves it empty)."""
        return [name for name in (self.events, self.evaluation) if name]


def _env_number(name: str, default: float) -> float:
    """A number from the environment (operators and tests tune timeouts without code)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"${name} must be a number, not {raw!r}") from None


def max_instances_setting() -> int:
    """Most rows one invocation may carry: $AUTOMLOPS_MAX_INSTANCES, else 100,000.

    The body limit alone bounds bytes, not work: 10 MB of `{}` is 3 million rows, seconds of
    CPU and a quarter-gigabyte answer. One place, read by `Settings` and by the serving apps.
    """
    value = int(_env_number("AUTOMLOPS_MAX_INSTANCES", 100_000))
    if value < 1:
        raise ValueError(f"$AUTOMLOPS_MAX_INSTANCES must be at least 1, not {value}")
    return value


class CaptureSettings(BaseModel):
    """What the inference server records of the traffic it serves (the monitor's input).

    On by default at 100 %: the loop (monitor, live metrics) needs every answer a label may come
    back for, and the cost is small (measured in `bench/capture.py`). Each knob has an
    environment variable, so `automlops serve` and `up` are tuned without code.
    """

    # $AUTOMLOPS_CAPTURE=0 turns capture off.
    enabled: bool = Field(default_factory=lambda: _env_number("AUTOMLOPS_CAPTURE", 1.0) != 0)
    # Share of requests captured, 0..1 ($AUTOMLOPS_CAPTURE_RATE).
    sample_rate: float = Field(
        default_factory=lambda: _env_number("AUTOMLOPS_CAPTURE_RATE", 1.0), ge=0.0, le=1.0
    )
    # Requests and bytes held before a write; beyond either, requests are dropped and counted,
    # never waited for ($AUTOMLOPS_CAPTURE_BUFFER, $AUTOMLOPS_CAPTURE_BUFFER_BYTES).
    buffer_size: int = Field(
        default_factory=lambda: int(_env_number("AUTOMLOPS_CAPTURE_BUFFER", 20_000)), ge=1
    )
    buffer_bytes: int = Field(
        default_factory=lambda: int(_env_number("AUTOMLOPS_CAPTURE_BUFFER_BYTES", 64 * 1024**2)),
        ge=1,
    )
    # Seconds between writes: what a killed server can lose ($AUTOMLOPS_CAPTURE_FLUSH_S).
    flush_interval_s: float = Field(
        default_factory=lambda: _env_number("AUTOMLOPS_CAPTURE_FLUSH_S", 5.0), gt=0
    )


class Settings(BaseModel):
    """Runtime settings shared by the local and AWS runtimes."""

    buckets: Buckets = Field(default_factory=Buckets)
    queues: Queues = Field(default_factory=Queues)
    # How long a received message stays hidden before it is redelivered: a local worker's lease
    # on it, renewed every third of it while the stage runs (however long the stage), so only
    # a dead worker lets it lapse and a new one takes the message within this time;
    # $AUTOMLOPS_VISIBILITY_TIMEOUT overrides. (On AWS the queue's own timeout applies.)
    visibility_timeout_s: float = Field(
        default_factory=lambda: _env_number("AUTOMLOPS_VISIBILITY_TIMEOUT", 30.0)
    )
    max_receives: int = 4
    retry_base_s: float = 0.5
    max_body_bytes: int = 10 * 1024 * 1024
    # Rows per invocation request (more: 413 naming the cap); $AUTOMLOPS_MAX_INSTANCES overrides.
    max_instances: int = Field(default_factory=max_instances_setting, ge=1)
    # Largest upload preprocess reads (it streams a clean file, but holds the typed table:
    # about 1-1.5x the file): bigger ones fail at once, judged by the object's size before a
    # byte is read; $AUTOMLOPS_MAX_UPLOAD_BYTES overrides.
    max_upload_bytes: int = Field(
        default_factory=lambda: int(_env_number("AUTOMLOPS_MAX_UPLOAD_BYTES", 1024**3))
    )
    seed: int = 42
    capture: CaptureSettings = Field(default_factory=CaptureSettings)


def resolve_home(home: str | Path | None) -> Path:
    """The workspace root: explicit value, else $AUTOMLOPS_HOME, else ./.automlops."""
    if home is None:
        home = os.environ.get("AUTOMLOPS_HOME") or DEFAULT_HOME
    return Path(home).expanduser().resolve()


class RetrainPolicy(BaseModel):
    """When the monitor writes the labelled captured rows back as a new upload of the dataset
    (so the pipeline and the gate decide again). Every trigger is off by default."""

    # Drift of any of these columns triggers ("*": any column).
    on_drift: list[str] = Field(default_factory=list)
    # The live primary metric worse than the champion's test-split value by more than this
    # (absolute), measured on at least `min_labels` labelled rows.
    on_metric_drop: float | None = Field(default=None, ge=0)
    min_labels: int = Field(default=100, ge=1)
    # Every this many new labelled rows since the last retrain (None: off).
    every_labels: int | None = Field(default=None, ge=1)
    # Append the labelled rows to the champion's training upload rather than train on them alone.
    with_training_file: bool = False
    # No new retrain this soon after the last one: the run it started must be judged first.
    cooldown_hours: float = Field(default=24.0, ge=0)

    @property
    def enabled(self) -> bool:
        """Whether any trigger is on."""
        return bool(self.on_drift) or self.on_metric_drop is not None or bool(self.every_labels)


class Manifest(BaseModel):
    """How to learn from a dataset; stored once per dataset and reused by later uploads."""

    dataset: str
    target: str | None = None
    positive: str | None = None
    task: Task | None = None
    drop: list[str] = Field(default_factory=list)
    # Columns kept as features though they look like row identifiers or target leaks.
    keep: list[str] = Field(default_factory=list)
    time_budget_s: float = Field(default=60.0, gt=0, le=MAX_TIME_BUDGET_S)
    split: tuple[float, float, float] = (0.7, 0.2, 0.1)
    seed: int = 42
    # Learner families the tuner may use, and the metric the binary decision threshold
    # maximises on validation (f1, balanced_accuracy or accuracy).
    learners: list[str] = Field(default_factory=lambda: ["xgboost", "lightgbm", "linear"])
    # Average the best trials when that scores higher on held-out predictions (False: always
    # one model, which serves a little faster).
    ensemble: bool = True
    threshold_metric: str = "f1"
    # Promotion gate: reject a candidate worse than the champion by more than `gate_margin` on
    # the primary metric at `gate_confidence` (one-sided), or below any `min_metrics` floor.
    gate_margin: float = 0.0
    gate_confidence: float = 0.95
    min_metrics: dict[str, float] = Field(default_factory=dict)
    # Data drift against the champion's training data: `warn` records it (drift.json, report,
    # schema notes); `block` stops the run in preprocess, before training.
    drift: Literal["warn", "block"] = "warn"
    # The loop: when a monitor run retrains, and where its alerts go (a URL that takes a JSON
    # POST; `--alert-webhook` sets one for every dataset).
    retrain: RetrainPolicy = Field(default_factory=RetrainPolicy)
    alert_webhook: str | None = None

    @field_validator("dataset")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_dataset_name(value)  # the one rule serving and the dashboard route by

    @field_validator("alert_webhook")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("alert_webhook must be an http:// or https:// URL")
        return value

    @field_validator("split")
    @classmethod
    def _split_sums_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if abs(sum(value) - 1.0) > 1e-9 or min(value) <= 0:
            raise ValueError("split fractions must be positive and sum to 1")
        return value
