"""A loaded model: raw rows in, predictions out, the fitted preprocessing applied inside."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from automlops.config import Task
from automlops.ml.artifact import ModelArtifact, ModelMetadata
from automlops.ml.columns.transform import CompiledTransform, FittedTransform
from automlops.ml.learners.base import Model
from automlops.ml.learners.catalog import load_model


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

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "model.tar.gz") -> Predictor:
        return cls(ModelArtifact.from_tar_gz(data, source))

    @property
    def input_columns(self) -> list[str]:
        return self.transform.input_columns

    def predict(self, frame: pl.DataFrame) -> Predictions:
        """Predict raw rows (missing columns and nulls are imputed as in training)."""
        return self._predict(self.encoder.encode_frame(frame))

    def predict_rows(self, rows: list[dict[str, Any]]) -> Predictions:
        """Predict JSON rows; the same answers as `predict`, faster for small batches."""
        return self._predict(self.encoder.encode_rows(rows))

    def _predict(self, features: np.ndarray) -> Predictions:
        task = self.metadata.task
        n = len(features)
        if n == 0:
            features = np.zeros((0, self.encoder.width), dtype=np.float32)
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
