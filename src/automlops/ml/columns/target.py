"""The prediction target: choosing it, detecting the task, mapping labels to classes."""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel

from automlops.config import Task
from automlops.errors import DataError

_TARGET_NAMES = ("y", "target", "label", "class")
_POSITIVE_WORDS = ("yes", "y", "true", "t", "1", "1.0", "positive", "pos")
_MAX_CLASSES = 100
_REGRESSION_MIN_UNIQUE = 20


def named_target(columns: list[str]) -> str | None:
    """The column named y/target/label/class (any case, in that order of preference), if any."""
    lowered = {c.lower(): c for c in columns}
    return next((lowered[name] for name in _TARGET_NAMES if name in lowered), None)


def default_target(columns: list[str]) -> str:
    """A column named y/target/label/class (any case), else the last column."""
    return named_target(columns) or columns[-1]


class TargetSpec(BaseModel):
    """How target values become model outputs. `labels` are strings, in class-index order."""

    name: str
    task: Task
    labels: list[str] = []
    positive: str | None = None

    def encode(self, values: pl.Series, source: str) -> np.ndarray:
        """Target values to class indices (classification) or floats (regression)."""
        if self.task is Task.regression:
            numbers = values.cast(pl.Float64, strict=False)
            if numbers.null_count() > values.null_count():
                raise DataError(
                    source, "regression target has non-numeric values", column=self.name
                )
            return numbers.to_numpy()
        index = {label: i for i, label in enumerate(self.labels)}
        codes = _as_labels(values).replace_strict(index, default=-1, return_dtype=pl.Int32)
        return codes.to_numpy()


def _as_labels(values: pl.Series) -> pl.Series:
    # Integral floats read as "1.0" would not match the label "1" seen elsewhere.
    if values.dtype.is_float() and (values.drop_nulls() % 1 == 0).all():
        values = values.cast(pl.Int64)
    if values.dtype == pl.Categorical:
        return values  # text already (stored compactly): compared and listed by its values
    return values.cast(pl.String)


def fit_target(
    values: pl.Series,
    name: str,
    *,
    task: Task | None,
    positive: str | None,
    source: str,
) -> TargetSpec:
    """Detect the task (unless given) and the label set of a target column (nulls excluded)."""
    present = values.drop_nulls()
    if present.len() == 0:
        raise DataError(source, "target column has no values", column=name)
    n_unique = present.n_unique()
    if task is None:
        numeric = present.dtype.is_numeric()
        integral = numeric and bool((present.cast(pl.Float64) % 1 == 0).all())
        if n_unique == 2:
            task = Task.binary
        elif numeric and (not integral or n_unique > _REGRESSION_MIN_UNIQUE):
            task = Task.regression
        else:
            task = Task.multiclass
    if task is Task.regression:
        if not present.dtype.is_numeric() and present.cast(pl.Float64, strict=False).null_count():
            raise DataError(source, "regression target has non-numeric values", column=name)
        return TargetSpec(name=name, task=task)

    labels = sorted(_as_labels(present).unique().to_list())
    if len(labels) < 2:
        raise DataError(
            source, f"target has a single class ({labels[0]!r}); nothing to learn", column=name
        )
    if task is Task.binary:
        if len(labels) != 2:
            raise DataError(
                source, f"binary task needs 2 classes, target has {len(labels)}", column=name
            )
        if positive is None:
            positive = _guess_positive(present, labels)
        elif positive not in labels:
            raise DataError(
                source, f"positive label {positive!r} not among target values {labels}", column=name
            )
        negative = labels[0] if labels[1] == positive else labels[1]
        return TargetSpec(name=name, task=task, labels=[negative, positive], positive=positive)
    if len(labels) > _MAX_CLASSES:
        raise DataError(
            source,
            f"target has {len(labels)} classes (more than {_MAX_CLASSES}); "
            "pass --task regression if it is a number",
            column=name,
        )
    return TargetSpec(name=name, task=Task.multiclass, labels=labels)


def _guess_positive(values: pl.Series, labels: list[str]) -> str:
    for label in labels:
        if label.lower() in _POSITIVE_WORDS:
            return label
    counts = _as_labels(values).value_counts().with_columns(pl.col(values.name).cast(pl.String))
    # The minority class is usually the one of interest (fraud, churn, a "yes").
    minority = counts.sort(["count", values.name], descending=[False, False]).row(0)[0]
    return str(minority)
