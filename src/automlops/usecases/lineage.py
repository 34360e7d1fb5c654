"""Lineage: how a model version came to be (upload -> processed splits -> training -> artifact
-> evaluation reports -> promotion decisions), assembled from the registry and the objects it
names into one typed record.

`Lineage.model_dump(mode="json")` is the document `automlops lineage --json` prints: a public
contract, so field names and their order are the document's keys and must not change.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from automlops import keys
from automlops.config import Settings
from automlops.errors import AutomlopsError
from automlops.names import check_dataset_name
from automlops.ports import ObjectStore
from automlops.registry import Decision, ModelVersion, Registry, VersionStatus
from automlops.usecases.retrain_policy import RetrainDecision, decision_of

if TYPE_CHECKING:
    from automlops.ml.artifact import ModelMetadata


class SourceStep(BaseModel):
    """The upload the version was trained from."""

    bucket: str
    key: str
    sha256: str


class ProcessedStep(BaseModel):
    """What preprocess wrote: the schema, the fitted transform, the splits, the drift check."""

    # `schema` is a (deprecated) BaseModel method, so the field has another name in Python and
    # keeps its name in the document.
    model_config = ConfigDict(serialize_by_alias=True)

    bucket: str
    schema_key: str = Field(serialization_alias="schema")
    transform: str | None  # None when the artifact cannot be read
    splits: dict[str, str]  # split name -> key (only the test split without the artifact)
    drift: str | None  # None when no drift check was written


class TrainingStep(BaseModel):
    """The training run: its learner, parameters, scores and tuning trials."""

    run_id: str
    created_at: str
    learner: str
    params: dict[str, Any]
    best_iteration: int | None
    threshold: float | None
    metrics: dict[str, dict[str, float]]  # per split
    trials: list[dict[str, Any]]


class ArtifactStep(BaseModel):
    """Where the model archive lives and the endpoint that serves it."""

    bucket: str
    key: str
    endpoint: str | None


class EvaluationStep(BaseModel):
    """The evaluation's reports, plots and scores."""

    bucket: str
    report_json: str
    report_md: str
    report_html: str
    plots: list[str]
    metrics: dict[str, float]


class Lineage(BaseModel):
    """Everything known about how one version of a dataset's model came to be."""

    dataset: str
    version: int
    status: VersionStatus
    is_champion: bool
    source: SourceStep
    processed: ProcessedStep
    training: TrainingStep
    artifact: ArtifactStep
    evaluation: EvaluationStep | None  # None until the version is evaluated
    decisions: list[Decision]
    # The retrain decision whose upload the version was trained from (capture window, reasons);
    # None for a version uploaded by a person.
    trigger: RetrainDecision | None = None


def trace(store: ObjectStore, settings: Settings, dataset: str, version: int) -> Lineage:
    """Everything known about `version` of `dataset`; AutomlopsError when it is unknown."""
    dataset = check_dataset_name(dataset)
    doc = Registry(store, settings.buckets.model_output).read(dataset)
    entry = doc.get(version)
    meta = _metadata(store, entry)
    return Lineage(
        dataset=dataset,
        version=version,
        status=entry.status,
        is_champion=doc.champion == version,
        source=SourceStep(
            bucket=meta.lineage.source_bucket if meta else settings.buckets.data,
            key=entry.source_key,
            sha256=entry.source_sha256,
        ),
        processed=_processed(store, settings, dataset, entry, meta),
        training=_training(entry, meta),
        artifact=ArtifactStep(
            bucket=entry.artifact_bucket, key=entry.artifact_key, endpoint=entry.endpoint
        ),
        evaluation=_evaluation(store, settings, entry),
        decisions=list(entry.decisions),
        trigger=decision_of(store, settings, dataset, entry.source_key),
    )


def _metadata(store: ObjectStore, entry: ModelVersion) -> ModelMetadata | None:
    """The artifact's metadata, or None: a missing or unreadable artifact still leaves the
    registry's part of the story."""
    from automlops.ml.artifact import ModelArtifact  # the ML stack, only when tracing

    with contextlib.suppress(AutomlopsError):
        data = store.get(entry.artifact_bucket, entry.artifact_key)
        return ModelArtifact.from_tar_gz(data, entry.artifact_key).metadata
    return None


def _processed(
    store: ObjectStore,
    settings: Settings,
    dataset: str,
    entry: ModelVersion,
    meta: ModelMetadata | None,
) -> ProcessedStep:
    bucket = settings.buckets.automl_data
    drift_key = keys.drift_key(dataset, entry.run_id)
    return ProcessedStep(
        bucket=bucket,
        schema_key=meta.lineage.schema_key if meta else keys.schema_key(dataset, entry.run_id),
        transform=meta.lineage.transform_key if meta else None,
        splits=meta.lineage.split_keys if meta else {"test": entry.test_key},
        drift=drift_key if store.head(bucket, drift_key) else None,
    )


def _training(entry: ModelVersion, meta: ModelMetadata | None) -> TrainingStep:
    return TrainingStep(
        run_id=entry.run_id,
        created_at=meta.created_at if meta else entry.created_at,
        learner=entry.learner,
        params=meta.params if meta else {},
        best_iteration=meta.best_iteration if meta else None,
        threshold=meta.threshold if meta else None,
        metrics=meta.metrics if meta else {},
        trials=meta.trials if meta else [],
    )


def _evaluation(
    store: ObjectStore, settings: Settings, entry: ModelVersion
) -> EvaluationStep | None:
    if not entry.report_key:
        return None
    bucket = settings.buckets.model_monitoring
    files = keys.report_files(entry.report_key)
    prefix = entry.report_key.removesuffix("report.json")
    return EvaluationStep(
        bucket=bucket,
        report_json=files["json"],
        report_md=files["markdown"],
        report_html=files["html"],
        plots=[k for k in store.list(bucket, prefix) if k.endswith(".png")],
        metrics=entry.metrics,
    )
