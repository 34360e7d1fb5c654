"""Stage 2: processed splits become a model artifact (model.tar.gz)."""

from __future__ import annotations

import io

import numpy as np
import polars as pl

from automlops import keys
from automlops.config import Task
from automlops.events import S3EventRecord
from automlops.ml import metrics, xgboost_model
from automlops.ml.artifact import InputColumn, Lineage, ModelArtifact, ModelMetadata
from automlops.ml.schema import DatasetSchema
from automlops.ml.transform import FittedTransform
from automlops.ports import Ports
from automlops.stages.result import StageResult


def locate(record: S3EventRecord) -> keys.RunRef:
    return keys.parse_schema_key(record.key)


def train(record: S3EventRecord, ports: Ports) -> StageResult:
    """Fit a model on the train split with early stopping on validation; write model.tar.gz."""
    run = locate(record)
    store, buckets = ports.store, ports.settings.buckets
    model_key = keys.model_key(run.dataset, run.run_id)
    if store.head(buckets.model_output, model_key) is not None:
        return StageResult(run=run, duplicate=True, note="already trained")

    schema = DatasetSchema.model_validate_json(store.get(record.bucket, record.key))
    transform = FittedTransform.model_validate_json(store.get(record.bucket, schema.transform_key))
    target = schema.target

    def load(split: str) -> tuple[np.ndarray, np.ndarray]:
        frame = pl.read_parquet(io.BytesIO(store.get(record.bucket, schema.split_keys[split])))
        return transform.apply(frame), target.encode(frame.get_column(target.name), record.key)

    train_xy, valid_xy = load("train"), load("validation")
    ports.progress(f"training xgboost on {len(train_xy[1])} rows")
    booster = xgboost_model.fit(
        target.task,
        len(target.labels),
        train_xy,
        valid_xy,
        params=xgboost_model.REFERENCE_PARAMS,
        rounds=xgboost_model.REFERENCE_ROUNDS,
        seed=schema.manifest.seed,
    )
    threshold = None
    fit_metrics: dict[str, dict[str, float]] = {}
    valid_pred = xgboost_model.predict(booster, valid_xy[0], target.task)
    if target.task is Task.binary and len(np.unique(valid_xy[1])) == 2:
        threshold = metrics.best_threshold(valid_xy[1], valid_pred, "f1")
    for split, (features, y) in (("train", train_xy), ("validation", valid_xy)):
        if len(y):
            pred = xgboost_model.predict(booster, features, target.task)
            fit_metrics[split] = _score(target.task, y, pred, threshold, len(target.labels))

    metadata = ModelMetadata(
        dataset=run.dataset,
        run_id=run.run_id,
        created_at=ports.clock().isoformat(),
        task=target.task,
        target=target,
        inputs=[InputColumn(name=c.name, kind=c.kind) for c in transform.columns],
        feature_names=transform.feature_names,
        learner="xgboost",
        model_file=xgboost_model.MODEL_FILE,
        params={**xgboost_model.REFERENCE_PARAMS, "rounds": xgboost_model.REFERENCE_ROUNDS},
        best_iteration=booster.num_boosted_rounds() - 1,
        threshold=threshold,
        metrics=fit_metrics,
        lineage=Lineage(
            source_bucket=schema.source_bucket,
            source_key=schema.source_key,
            source_sha256=schema.source_sha256,
            schema_key=record.key,
            transform_key=schema.transform_key,
            split_keys=schema.split_keys,
            training_run=run.run_id,
        ),
    )
    artifact = ModelArtifact(
        metadata=metadata, transform=transform, model=xgboost_model.save(booster)
    )
    store.put(buckets.model_output, model_key, artifact.to_tar_gz())
    primary = metrics.PRIMARY_METRIC[target.task.value]
    value = fit_metrics.get("validation", {}).get(primary)
    return StageResult(
        run=run,
        outputs=[model_key],
        headline=None if value is None else (f"validation {primary}", value),
    )


def _score(
    task: Task, y: np.ndarray, pred: np.ndarray, threshold: float | None, n_classes: int
) -> dict[str, float]:
    if task is Task.binary:
        return metrics.binary_metrics(y, pred, 0.5 if threshold is None else threshold)
    if task is Task.multiclass:
        return metrics.multiclass_metrics(y, pred.reshape(len(y), n_classes))
    return metrics.regression_metrics(y, pred)
