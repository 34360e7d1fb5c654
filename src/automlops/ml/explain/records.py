"""What an explanation is: typed records of contributions, in model-feature or raw-column units.

Every explanation is additive on the model's raw score: `base + contributions.sum()` equals
the score before the output link, per row and per output:

- regression: the predicted value;
- binary classification: the log-odds of the positive class, log(p / (1 - p));
- multiclass: each class's softmax logit (probabilities are their softmax), one output per
  class.

An ensemble of classifiers averages probabilities, not raw scores: its contributions are the
members' contributions, weighted as the members are, and sum exactly to the weighted mean of
the members' raw scores, which approximates the ensemble's own (see `exact`; `gap` measures
the difference).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class RawScore(StrEnum):
    """The units contributions are in (the model's output before its link)."""

    value = "value"
    log_odds = "log-odds"
    softmax_logit = "softmax logit"


@dataclass(frozen=True)
class FeatureContributions:
    """A model's contributions per model feature (after preprocessing).

    `values` is (rows, outputs, features) and `base` (rows, outputs); outputs are 1 for
    regression and binary, the class count for multiclass. `exact` is False when the sum is
    only an approximation of the model's raw score (an ensemble averaging probabilities).
    """

    values: np.ndarray
    base: np.ndarray
    exact: bool = True

    def __post_init__(self) -> None:
        if self.values.ndim != 3 or self.base.shape != self.values.shape[:2]:
            raise ValueError(
                f"contributions {self.values.shape} and base {self.base.shape} do not match"
            )

    @property
    def raw_score(self) -> np.ndarray:
        """base + the sum of contributions: (rows, outputs)."""
        return np.asarray(self.base + self.values.sum(axis=2))


@dataclass(frozen=True)
class Explanation:
    """Contributions of each raw input column to each row's raw score.

    `values` is (rows, outputs, columns) in `columns` order; `base` (rows, outputs) is the
    score with no column contributing (the same for every row for the models here). `outputs`
    names each output: the target for regression, the positive label for binary, every label
    for multiclass. `order` ranks each row's columns by |contribution|, largest first, keeping
    the top K asked for: (rows, outputs, K).
    """

    columns: tuple[str, ...]
    outputs: tuple[str, ...]
    raw_score: RawScore
    exact: bool
    values: np.ndarray
    base: np.ndarray
    order: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def k(self) -> int:
        """Contributions kept per row and output (the top K, or every column)."""
        return int(self.order.shape[2])

    def top(self) -> tuple[np.ndarray, np.ndarray]:
        """The kept contributions, largest |value| first: column indices and their values,
        each (rows, outputs, K)."""
        return self.order, np.take_along_axis(self.values, self.order, axis=2)


def rank(values: np.ndarray, k: int | None) -> np.ndarray:
    """Indices of the last axis of `values` by |value| descending, the first `k` (None: all).

    Ties keep column order (a stable sort), so equal contributions list as the columns do.
    """
    width = values.shape[-1]
    keep = width if k is None else max(0, min(k, width))
    if keep == 0:
        return np.zeros((*values.shape[:-1], 0), dtype=np.intp)
    magnitude = -np.abs(values)
    if keep < width and width > 32:
        # Many columns, few kept: partition first, then sort only the kept ones.
        part = np.argpartition(magnitude, keep - 1, axis=-1)[..., :keep]
        part.sort(axis=-1)  # column order, so the stable sort below breaks ties by it
        sub = np.take_along_axis(magnitude, part, axis=-1)
        return np.take_along_axis(part, np.argsort(sub, axis=-1, kind="stable"), axis=-1)
    return np.argsort(magnitude, axis=-1, kind="stable")[..., :keep]
