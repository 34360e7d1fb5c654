"""How far an explanation's sum is from the model's own raw score (0 for exact explanations).

Used to state the error of an ensemble of classifiers, whose contributions sum to the weighted
mean of its members' raw scores while it predicts the weighted mean of their probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from automlops.config import Task
from automlops.ml.explain.records import FeatureContributions

_EPS = 1e-12


@dataclass(frozen=True)
class AdditivityGap:
    """Differences between an explanation and the prediction it explains, over some rows.

    `raw_*`: |base + sum - the prediction's raw score| (log-odds; multiclass: softmax logits,
    both centred per row since a softmax ignores a shift; regression: the value).
    `probability_max`: the largest |link(base + sum) - predicted probability| (0 for
    regression).
    """

    rows: int
    raw_max: float
    raw_mean: float
    probability_max: float


def raw_scores(task: Task, predictions: np.ndarray) -> np.ndarray:
    """Predictions mapped to raw-score units: (rows, outputs)."""
    if task is Task.regression:
        return predictions.reshape(-1, 1)
    if task is Task.binary:
        p = np.clip(predictions.reshape(-1), _EPS, 1 - _EPS)
        return np.log(p / (1 - p)).reshape(-1, 1)
    logs = np.log(np.clip(predictions, _EPS, None))
    return logs - logs.mean(axis=1, keepdims=True)


def linked(task: Task, raw: np.ndarray) -> np.ndarray:
    """Raw scores (rows, outputs) through the output link: the predictions they stand for."""
    if task is Task.regression:
        return raw[:, 0]
    if task is Task.binary:
        return 1.0 / (1.0 + np.exp(-np.clip(raw[:, 0], -500, 500)))
    shifted = raw - raw.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def additivity_gap(
    task: Task, contributions: FeatureContributions, predictions: np.ndarray
) -> AdditivityGap:
    """The gap between `contributions` and the model's `predictions` for the same rows
    (predictions as `Model.predict` gives them)."""
    summed = contributions.raw_score
    want = raw_scores(task, predictions)
    if task is Task.multiclass:
        summed = summed - summed.mean(axis=1, keepdims=True)
    raw = np.abs(summed - want)
    probability = (
        np.zeros(1)
        if task is Task.regression
        else np.abs(linked(task, contributions.raw_score) - predictions)
    )
    return AdditivityGap(
        rows=int(summed.shape[0]),
        raw_max=float(raw.max(initial=0.0)),
        raw_mean=float(raw.mean()) if raw.size else 0.0,
        probability_max=float(probability.max(initial=0.0)),
    )
