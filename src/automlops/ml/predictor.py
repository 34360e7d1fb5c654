"""A loaded model: raw rows in, predictions out, the fitted preprocessing applied inside."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from automlops.config import Task
from automlops.ml.artifact import ModelArtifact, ModelMetadata
from automlops.ml.columns.transform import CompiledTransform, FittedTransform
from automlops.ml.explain.columns import ColumnGrouping
from automlops.ml.explain.records import Explanation, FeatureContributions, RawScore
from automlops.ml.learners.base import Model
from automlops.ml.learners.catalog import load_model
from automlops.ml.learners.ensemble import ENSEMBLE


@dataclass(frozen=True)
class Predictions:
    """Model outputs for a batch of rows.

    classification: `proba` (n, k) in label order and `labels` (n,) chosen labels;
    regression: `values` (n,).
    """

    task: Task
    proba: np.ndarray | None = None
    label_index: np.ndarray | None = None
    values: np.ndarray | None = None


@dataclass(frozen=True)
class ExplainedPredictions:
    """Predictions for a batch of rows and, for the same rows, why (by raw input column)."""

    predictions: Predictions
    explanation: Explanation


_RAW_SCORES = {
    Task.regression: RawScore.value,
    Task.binary: RawScore.log_odds,
    Task.multiclass: RawScore.softmax_logit,
}


class Predictor:
    """Holds one model version ready to answer."""

    def __init__(self, artifact: ModelArtifact, *, nthread: int = 1) -> None:
        self.metadata: ModelMetadata = artifact.metadata
        self.transform: FittedTransform = artifact.transform
        self.encoder: CompiledTransform = artifact.transform.compile()
        meta = artifact.metadata
        self.model: Model = load_model(
            meta.learner, artifact.model, meta.task, len(meta.target.labels), nthread=nthread
        )
        self.labels = artifact.metadata.target.labels
        self.threshold = artifact.metadata.threshold
        self.grouping = ColumnGrouping(self.transform.feature_columns, self.input_columns)

    @classmethod
    def from_bytes(
        cls, data: bytes, source: str = "model.tar.gz", *, nthread: int = 1
    ) -> Predictor:
        """A predictor from a model.tar.gz; `nthread`: the model's threads (serving: 1)."""
        return cls(ModelArtifact.from_tar_gz(data, source), nthread=nthread)

    @property
    def input_columns(self) -> list[str]:
        return self.transform.input_columns

    def predict(self, frame: pl.DataFrame) -> Predictions:
        """Predict raw rows (missing columns and nulls are imputed as in training)."""
        return self._predict(self.encoder.encode_frame(frame))

    def predict_rows(self, rows: list[dict[str, Any]]) -> Predictions:
        """Predict JSON rows; the same answers as `predict`, faster for small batches."""
        return self._predict(self.encoder.encode_rows(rows))

    def explain_frame(self, frame: pl.DataFrame, k: int | None = None) -> ExplainedPredictions:
        """Predict raw rows and explain each: contributions per input column to the raw score
        (see `automlops.ml.explain.records`), each row's top `k` by |contribution| ranked in
        `explanation.order` (None: every column). Batch scoring calls it chunk by chunk."""
        return self._explain(self.encoder.encode_frame(frame), k)

    def explain_rows(
        self, rows: list[dict[str, Any]], k: int | None = None
    ) -> ExplainedPredictions:
        """`explain_frame` for JSON rows (as `predict_rows` is to `predict`)."""
        return self._explain(self.encoder.encode_rows(rows), k)

    def prepare_explanations(self) -> None:
        """Make ready what explaining needs (compiled code loaded, the trees' tables built) by
        explaining two rows of missing values: batch scoring runs it beside its first reads,
        so that the first chunk does not wait for it."""
        rows = np.full((2, self.encoder.width), np.nan, dtype=np.float32)
        self.model.contributions(rows, self.metadata.task)

    def _explain(self, features: np.ndarray, k: int | None) -> ExplainedPredictions:
        task = self.metadata.task
        features = self._matrix(features)
        outputs = {
            Task.regression: [self.metadata.target.name],
            Task.binary: self.labels[-1:],  # the positive label: log-odds of P(positive)
            Task.multiclass: self.labels,
        }[task]
        if len(features):
            contributions = self.model.contributions(features, task)
        else:  # no rows: nothing to ask the model (boosters refuse empty matrices)
            empty = np.zeros((0, len(outputs), features.shape[1]))
            exact = task is Task.regression or self.model.learner != ENSEMBLE  # as if rows
            contributions = FeatureContributions(empty, empty[:, :, 0], exact=exact)
        explanation = self.grouping.explain(
            contributions, outputs=outputs, raw_score=_RAW_SCORES[task], k=k
        )
        return ExplainedPredictions(self._predict(features), explanation)

    def _matrix(self, features: np.ndarray) -> np.ndarray:
        # An empty batch still has the model's width (the models check it).
        return features if len(features) else np.zeros((0, self.encoder.width), np.float32)

    def _predict(self, features: np.ndarray) -> Predictions:
        task = self.metadata.task
        n = len(features)
        features = self._matrix(features)
        raw = self.model.predict(features) if n else np.zeros((0,))
        if task is Task.regression:
            return Predictions(task=task, values=raw.reshape(-1))
        if task is Task.binary:
            positive = raw.reshape(-1)
            proba = np.column_stack([1.0 - positive, positive])
            threshold = 0.5 if self.threshold is None else self.threshold
            index = (positive >= threshold).astype(np.int64)
            return Predictions(task=task, proba=proba, label_index=index)
        proba = raw.reshape(n, len(self.labels))
        return Predictions(task=task, proba=proba, label_index=proba.argmax(axis=1))

    def importances(self) -> dict[str, float]:
        """Relative importance of each model feature (after preprocessing)."""
        return self.model.importances(self.metadata.feature_names)
