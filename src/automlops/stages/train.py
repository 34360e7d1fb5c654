"""Stage 2: processed splits become a tuned model artifact (model.tar.gz)."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from automlops import keys
from automlops.config import Task
from automlops.errors import ConflictError
from automlops.events import S3EventRecord
from automlops.ml.artifact import InputColumn, Lineage, ModelArtifact, ModelMetadata
from automlops.ml.columns.transform import FittedTransform
from automlops.ml.evaluation import metrics
from automlops.ml.splits import sample_indices
from automlops.ml.tuning.outcome import Refit, RefitStatus, Selection, TrialState
from automlops.ml.tuning.search import (
    TUNE_MAX_TRAIN_ROWS,
    TUNE_MAX_VALID_ROWS,
    Tuner,
    TuningProgress,
)
from automlops.ports import Ports
from automlops.stages.result import StageResult
from automlops.tabular.schema import DatasetSchema

# Part of the budget kept for loading data, the threshold and writing the artifact: the
# search (its refit included) gets what is left, so the stage ends close to the budget.
_OVERHEAD_SHARE = 0.1
_MIN_SEARCH_S = 1.0
# The training rows' metrics are computed on a seeded sample of at most this many rows:
# predicting millions of rows would take seconds outside any budget.
_TRAIN_METRIC_ROWS = 100_000
# Transforming the splits' rows into features counts against the budget too: beyond the rows
# the search samples (`TUNE_MAX_TRAIN_ROWS`, `TUNE_MAX_VALID_ROWS`), a big split is transformed
# only as far as this share of the budget allows, at the rate a first slice of rows shows. The
# rows left out are rows the refit could not have used in its own share of the budget.
_LOAD_SHARE = 0.1
_RATE_PROBE_ROWS = 20_000


def identify(record: S3EventRecord, ports: Ports) -> keys.RunRef:
    """The run a schema.json belongs to, named by its key (preprocess chose the name)."""
    return keys.parse_schema_key(record.key)


@dataclass(frozen=True)
class TrainingData:
    """What preprocess wrote for a run, loaded: the schema, the fitted transform, and the
    training and validation splits as (features, encoded labels); `split_rows`, each split's
    rows in the store (more than loaded when the budget left no time to transform them all)."""

    schema: DatasetSchema
    transform: FittedTransform
    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray]
    split_rows: tuple[int, int]

    @property
    def sampled_note(self) -> str:
        """E.g. "a sample of 150,000 of the 3,501,980 training and validation rows loaded
        (...)"; empty when every row was loaded."""
        loaded, stored = len(self.train[1]) + len(self.validation[1]), sum(self.split_rows)
        if loaded == stored:
            return ""
        return (
            f"a sample of {loaded:,} of the {stored:,} training and validation rows loaded "
            "(the time budget left no time to transform more)"
        )


@dataclass(frozen=True)
class FitScores:
    """The decision threshold (binary) and the metrics of the fit, per split."""

    threshold: float | None
    metrics: dict[str, dict[str, float]]


def train(record: S3EventRecord, ports: Ports) -> StageResult:
    """Tune learners within the manifest's time budget; write the best model as model.tar.gz."""
    started = time.monotonic()
    run = identify(record, ports)
    store, buckets = ports.store, ports.settings.buckets
    model_key = keys.model_key(run.dataset, run.run_id)
    if store.head(buckets.model_output, model_key) is not None:
        return StageResult(run=run, duplicate=True, note="already trained")

    data = _load(record, ports, started)
    budget = data.schema.manifest.time_budget_s
    search_s = max(_MIN_SEARCH_S, budget * (1 - _OVERHEAD_SHARE) - (time.monotonic() - started))
    tuner = _tune(ports, data, search_s)
    scores = _fit_scores(data, tuner)
    metadata = _metadata(record, ports, run, data, tuner, scores)
    model = tuner.best_model_
    artifact = ModelArtifact(metadata=metadata, transform=data.transform, model=model.save())
    try:
        # Only if absent: a second worker training the same run meanwhile (a redelivery)
        # must not replace the model file the first one's deploy is reading.
        store.put_if(buckets.model_output, model_key, artifact.to_tar_gz(), if_match=None)
    except ConflictError:
        return StageResult(run=run, duplicate=True, note="trained meanwhile by another worker")
    primary = metrics.PRIMARY_METRIC[data.schema.target.task.value]
    value = scores.metrics.get("validation", {}).get(primary)
    return StageResult(
        run=run,
        outputs=[model_key],
        headline=None if value is None else (f"validation {primary}", value),
        note=_trials_note(tuner) + (f"; {data.sampled_note}" if data.sampled_note else ""),
    )


def _trials_note(tuner: Tuner) -> str:
    """E.g. "lightgbm best of 7/9 trials (2 cut short by the time budget)"."""
    trials = tuner.trials_
    completed = sum(t.state is TrialState.complete for t in trials)
    cut = sum(t.cut for t in trials)
    note = f"{tuner.best_learner_} best of {completed}/{len(trials)} trials"
    return note + (f" ({cut} cut short by the time budget)" if cut else "")


def _load(record: S3EventRecord, ports: Ports, started: float) -> TrainingData:
    """The run's schema and transform, and its training and validation splits transformed:
    every row, or, when transforming every row of a big split would overrun the budget's
    `_LOAD_SHARE` (counted from `started`, the stage's start), a seeded sample of as many rows
    as fit in it, stratified by class (never fewer than the search samples)."""
    store = ports.store
    schema = DatasetSchema.model_validate_json(store.get(record.bucket, record.key))
    transform = FittedTransform.model_validate_json(store.get(record.bucket, schema.transform_key))
    target, manifest = schema.target, schema.manifest
    compiled = transform.compile()

    def read(split: str) -> tuple[pl.DataFrame, np.ndarray]:
        frame = pl.read_parquet(io.BytesIO(store.get(record.bucket, schema.split_keys[split])))
        return frame, target.encode(frame.get_column(target.name), record.key)

    (train_frame, train_y), (valid_frame, valid_y) = read("train"), read("validation")
    n_train, n_valid = len(train_y), len(valid_y)
    keep = n_train
    if n_train > TUNE_MAX_TRAIN_ROWS:
        # The rate of this machine, now, on a slice of rows (a small cost, and no guess).
        probe_rows = _sample(target.task, train_y, _RATE_PROBE_ROWS, manifest.seed)
        begun = time.monotonic()
        compiled.encode_frame(train_frame[probe_rows])
        per_row = max(time.monotonic() - begun, 1e-6) / len(probe_rows)
        left = started + _LOAD_SHARE * manifest.time_budget_s - time.monotonic()
        # Both splits are cut in the same proportion: validation rows cost as much.
        affordable = int(max(left, 0.0) / per_row / (1 + n_valid / n_train))
        keep = min(n_train, max(TUNE_MAX_TRAIN_ROWS, affordable))
    keep_valid = n_valid if keep == n_train else max(TUNE_MAX_VALID_ROWS, n_valid * keep // n_train)

    def transformed(frame: pl.DataFrame, y: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
        if rows >= len(y):
            return compiled.encode_frame(frame), y
        picked = _sample(target.task, y, rows, manifest.seed)
        return compiled.encode_frame(frame[picked]), y[picked]

    return TrainingData(
        schema,
        transform,
        transformed(train_frame, train_y, keep),
        transformed(valid_frame, valid_y, keep_valid),
        (n_train, n_valid),
    )


def _sample(task: Task, y: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded sample of `rows` of these labels (stratified by class)."""
    return sample_indices(len(y), rows, seed=seed, strata=None if task is Task.regression else y)


def _tune(ports: Ports, data: TrainingData, search_s: float) -> Tuner:
    """A tuner fitted on the training split within `search_s` seconds of search."""
    target, manifest = data.schema.target, data.schema.manifest
    tuner = Tuner(
        target.task,
        len(target.labels),
        budget_s=search_s,
        seed=manifest.seed,
        learners=tuple(manifest.learners),
        ensemble=manifest.ensemble,
        progress=lambda p: ports.progress(_progress_line(p)),
    )
    rows = len(data.train[1])
    sample = ""
    if rows > tuner.max_train_rows:
        sample = (
            f" (trials on a {tuner.max_train_rows}-row sample, then a refit on as many rows "
            "as the budget allows)"
        )
    if data.sampled_note:
        ports.progress(data.sampled_note)
    ports.progress(f"tuning on {rows} rows for {search_s:.0f}s{sample}")
    tuner.fit(data.train, data.validation)
    return tuner


def _fit_scores(data: TrainingData, tuner: Tuner) -> FitScores:
    """The threshold and the fit's metrics on the training rows and the held-out rows."""
    task, n_classes = data.schema.target.task, len(data.schema.target.labels)
    model = tuner.best_model_
    # The threshold and the held-out metrics come from out-of-sample predictions (validation
    # split or out-of-fold), never from rows the final model was fitted on.
    held_y, held_pred = tuner.heldout_y_, tuner.heldout_pred_
    threshold = None
    if task is Task.binary and len(np.unique(held_y)) == 2:
        threshold = metrics.best_threshold(held_y, held_pred, data.schema.manifest.threshold_metric)
    train_x, train_y = data.train
    if len(train_y) > _TRAIN_METRIC_ROWS:
        rows = _sample(task, train_y, _TRAIN_METRIC_ROWS, seed=0)
        train_x, train_y = train_x[rows], train_y[rows]
    fit_metrics: dict[str, dict[str, float]] = {
        "train": _score(task, train_y, model.predict(train_x), threshold, n_classes)
    }
    if len(held_y):
        fit_metrics["validation"] = _score(task, held_y, held_pred, threshold, n_classes)
    return FitScores(threshold, fit_metrics)


def _metadata(
    record: S3EventRecord,
    ports: Ports,
    run: keys.RunRef,
    data: TrainingData,
    tuner: Tuner,
    scores: FitScores,
) -> ModelMetadata:
    """What the artifact says about its model: task, inputs, tuning, scores and lineage."""
    schema, transform, model = data.schema, data.transform, tuner.best_model_
    return ModelMetadata(
        dataset=run.dataset,
        run_id=run.run_id,
        created_at=ports.clock().isoformat(),
        task=schema.target.task,
        target=schema.target,
        inputs=[InputColumn(name=c.name, kind=c.kind) for c in transform.columns],
        feature_names=transform.feature_names,
        learner=tuner.best_learner_,
        model_file=model.model_file,
        params=tuner.best_params_,
        best_iteration=None if model.rounds is None else model.rounds - 1,
        threshold=scores.threshold,
        metrics=scores.metrics,
        trials=[t.model_dump(mode="json") for t in tuner.trials_],
        selection=_selection_of_stored(tuner.selection_, data),
        refit=_refit_of_stored(tuner.refit_, data),
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


def _progress_line(p: TuningProgress) -> str:
    best = "n/a" if p.best is None else f"{p.best:.4f} ({p.best_learner})"
    score = "pruned" if p.score is None else f"{p.score:.4f}"
    return f"trial {p.trial} {p.learner}: {score}  best {best}  {p.elapsed_s:.0f}/{p.budget_s:.0f}s"


def _score(
    task: Task, y: np.ndarray, pred: np.ndarray, threshold: float | None, n_classes: int
) -> dict[str, float]:
    if task is Task.binary:
        return metrics.binary_metrics(y, pred, 0.5 if threshold is None else threshold)
    if task is Task.multiclass:
        return metrics.multiclass_metrics(y, pred.reshape(len(y), n_classes))
    return metrics.regression_metrics(y, pred)


def _refit_of_stored(refit: Refit | None, data: TrainingData) -> Refit | None:
    """A refit record counted against the rows in the store: when only a sample of the splits
    was loaded, a model fitted on every loaded row was fitted on a sample of the file's, and the
    report must say so (a trial's own model, `no_time`, says "training rows only" already)."""
    if refit is None or not data.sampled_note or refit.status is RefitStatus.no_time:
        return refit
    return refit.model_copy(update={"of_rows": sum(data.split_rows)})


def _selection_of_stored(selection: Selection, data: TrainingData) -> Selection:
    """`_refit_of_stored` for each member of an ensemble."""
    members = [
        m.model_copy(update={"refit": _refit_of_stored(m.refit, data)}) for m in selection.members
    ]
    return selection.model_copy(update={"members": members})
