"""Champion/challenger comparison on the same rows: a paired bootstrap of the metric difference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from automlops.config import Task

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def _roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else float("nan")


def _macro_f1(y: np.ndarray, proba: np.ndarray) -> float:
    return float(f1_score(y, proba.argmax(axis=1), average="macro", zero_division=0))


def _neg_rmse(y: np.ndarray, values: np.ndarray) -> float:
    # Negated so that "higher is better" holds for every primary metric.
    return -float(np.sqrt(np.mean((y - values) ** 2)))


PRIMARY: dict[Task, tuple[str, MetricFn, int]] = {
    Task.binary: ("roc_auc", _roc_auc, 1),
    Task.multiclass: ("macro_f1", _macro_f1, 1),
    Task.regression: ("rmse", _neg_rmse, -1),
}


@dataclass(frozen=True)
class Comparison:
    """Candidate vs champion on the same rows.

    `difference`, `lower` and `upper` are in the metric's "higher is better" orientation
    (candidate minus champion), so a negative difference means the candidate is worse.
    """

    metric: str
    rows: int
    candidate: float
    champion: float
    difference: float
    lower: float  # one-sided lower confidence bound of the difference
    upper: float  # one-sided upper confidence bound of the difference
    confidence: float
    margin: float

    @property
    def candidate_worse(self) -> bool:
        """Worse beyond noise: even the optimistic bound is a loss larger than the margin."""
        return self.upper < -self.margin

    def as_dict(self) -> dict[str, float | str | int | bool]:
        return {**asdict(self), "candidate_worse": self.candidate_worse}


def compare(
    task: Task,
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    *,
    margin: float = 0.0,
    confidence: float = 0.95,
    resamples: int = 500,
    seed: int = 0,
) -> Comparison:
    """Paired bootstrap: resample rows, score both models on each resample, bound the gap."""
    name, metric, sign = PRIMARY[task]
    n = len(y)
    cand_value, champ_value = metric(y, candidate), metric(y, champion)
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for i in range(resamples):
        idx = rng.integers(0, n, n)
        diffs[i] = metric(y[idx], candidate[idx]) - metric(y[idx], champion[idx])
    diffs = diffs[~np.isnan(diffs)]
    alpha = 1.0 - confidence
    lower = float(np.quantile(diffs, alpha)) if len(diffs) else float("nan")
    upper = float(np.quantile(diffs, 1 - alpha)) if len(diffs) else float("nan")
    return Comparison(
        metric=name,
        rows=n,
        candidate=sign * cand_value,
        champion=sign * champ_value,
        difference=cand_value - champ_value,
        lower=lower,
        upper=upper,
        confidence=confidence,
        margin=margin,
    )
