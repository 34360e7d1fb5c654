"""Evaluation metrics for binary, multiclass and regression models.

Everything is delegated to scikit-learn so the definitions are the standard ones (the system
this replaces computed accuracy as (TN+TN)/total). All functions are pure, take numpy arrays and
return plain Python ints/floats so results can go straight into JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm

from automlops.config import Task

# Direction of every score/loss the functions below return. Descriptive fields (`threshold`,
# `positive_rate`, `n`) have no direction and are listed in DESCRIPTIVE_FIELDS instead.
HIGHER_IS_BETTER: dict[str, bool] = {
    # binary
    "roc_auc": True,
    "pr_auc": True,
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "specificity": True,
    "log_loss": False,
    "brier": False,
    "tp": True,
    "tn": True,
    "fp": False,
    "fn": False,
    # multiclass
    "balanced_accuracy": True,
    "macro_f1": True,
    "weighted_f1": True,
    # regression
    "rmse": False,
    "mae": False,
    "r2": True,
    "mape": False,
}

DESCRIPTIVE_FIELDS: frozenset[str] = frozenset({"threshold", "positive_rate", "n"})


@dataclass(frozen=True)
class TaskMetrics:
    """A task's metrics: `primary` is reported and gated on; `search` is what tuning scores
    trials by. Directions come from HIGHER_IS_BETTER."""

    primary: str
    search: str

    @property
    def higher_is_better(self) -> bool:
        """Direction of the primary metric."""
        return HIGHER_IS_BETTER[self.primary]

    @property
    def search_higher_is_better(self) -> bool:
        """Direction of the search metric."""
        return HIGHER_IS_BETTER[self.search]


# The one table of each task's metrics. Multiclass search uses log loss rather than macro F1:
# F1 of the argmax is a step function of the probabilities, too coarse to rank trials by.
TASK_METRICS: dict[Task, TaskMetrics] = {
    Task.binary: TaskMetrics(primary="roc_auc", search="roc_auc"),
    Task.multiclass: TaskMetrics(primary="macro_f1", search="log_loss"),
    Task.regression: TaskMetrics(primary="rmse", search="rmse"),
}

# Primary metric name by task value (what reports, the dashboard and the CLI look up).
PRIMARY_METRIC: dict[str, str] = {task.value: m.primary for task, m in TASK_METRICS.items()}

_THRESHOLD_METRICS = ("f1", "balanced_accuracy", "accuracy")


def binary_metrics(
    y_true: np.ndarray, p_positive: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Scores for a binary classifier.

    `y_true` holds 0/1 (1 = positive), `p_positive` the predicted probability of class 1.
    A row is predicted positive when `p_positive >= threshold`. `roc_auc` and `pr_auc`
    (average precision) are NaN when `y_true` has a single class; ratios whose denominator is
    zero (e.g. precision with no predicted positives) are 0.0. The confusion matrix is returned
    flat as `tp`, `fp`, `tn`, `fn` (ints).
    """
    y, p = _binary_inputs(y_true, p_positive)
    threshold = float(threshold)
    y_pred = (p >= threshold).astype(np.int64)
    n = int(y.size)

    # labels=[0, 1] keeps the matrix 2x2 even when only one class occurs.
    tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(y, y_pred, labels=[0, 1]).ravel())
    two_classes = 0 < tp + fn < n
    # Per-class scores in one call (sklearn's per-call overhead dominates on small inputs):
    # index 1 is the positive class; recall of class 0 is specificity.
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y, y_pred, labels=[0, 1], average=None, zero_division=0
    )

    return {
        # Ranking metrics are undefined with one class; sklearn raises or warns, we report NaN.
        "roc_auc": float(skm.roc_auc_score(y, p)) if two_classes else math.nan,
        "pr_auc": float(skm.average_precision_score(y, p)) if two_classes else math.nan,
        "accuracy": float(skm.accuracy_score(y, y_pred)),
        "precision": float(precision[1]),
        "recall": float(recall[1]),
        "f1": float(f1[1]),
        "specificity": float(recall[0]),
        # labels/pos_label make both losses well defined for single-class y_true too.
        "log_loss": float(skm.log_loss(y, p, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y, p, pos_label=1, labels=[0, 1])),
        "threshold": threshold,
        "positive_rate": (tp + fp) / n,
        "n": n,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def multiclass_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Scores for a k-class classifier.

    `y_true` holds class indices 0..k-1 and `proba` has shape (n, k); the prediction is the
    argmax (first index on ties). Classes may be missing from `y_true`: `log_loss` is computed
    over all k classes, `balanced_accuracy` averages recall over the classes present in
    `y_true`, and the F1 averages cover classes that occur in `y_true` or the predictions.
    """
    y = _as_1d(y_true, "y_true")
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] != y.size:
        raise ValueError(f"proba must have shape (n, k) with n={y.size}, got {proba.shape}")
    k = proba.shape[1]
    if k < 2:
        raise ValueError(f"multiclass metrics need at least 2 classes, got k={k}")
    if not np.isfinite(proba).all():
        raise ValueError("proba contains NaN or infinite values")
    y = _class_indices(y, k, "y_true")
    y_pred = proba.argmax(axis=1)
    # Probabilities that crossed JSON or float32 sum to 1 only approximately.
    proba = proba / np.maximum(proba.sum(axis=1, keepdims=True), 1e-300)

    return {
        "accuracy": float(skm.accuracy_score(y, y_pred)),
        # Same value as balanced_accuracy_score, minus its warning when y_pred contains a
        # class absent from y_true.
        "balanced_accuracy": float(
            skm.recall_score(y, y_pred, labels=np.unique(y), average="macro", zero_division=0)
        ),
        "macro_f1": float(skm.f1_score(y, y_pred, average="macro", zero_division=0)),
        "weighted_f1": float(skm.f1_score(y, y_pred, average="weighted", zero_division=0)),
        "log_loss": float(skm.log_loss(y, proba, labels=list(range(k)))),
        "n": int(y.size),
    }


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> list[list[int]]:
    """k x k confusion matrix as nested int lists; rows are true classes, columns predicted."""
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    y = _class_indices(_as_1d(y_true, "y_true", allow_empty=True), k, "y_true")
    pred = _class_indices(_as_1d(y_pred, "y_pred", allow_empty=True), k, "y_pred")
    if y.size != pred.size:
        raise ValueError(f"y_true and y_pred differ in length: {y.size} != {pred.size}")
    if y.size == 0:
        return [[0] * k for _ in range(k)]
    matrix = skm.confusion_matrix(y, pred, labels=list(range(k)))
    return [[int(v) for v in row] for row in matrix]


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Scores for a regressor: `rmse`, `mae`, `r2`, `n`, plus `mape` unless some y_true is 0.

    `mape` is a fraction (0.1 = 10%), as in scikit-learn. Needs at least 2 rows, since R^2 is
    undefined for a single sample.
    """
    y = _as_1d(y_true, "y_true").astype(np.float64)
    pred = _as_1d(y_pred, "y_pred").astype(np.float64)
    if y.size != pred.size:
        raise ValueError(f"y_true and y_pred differ in length: {y.size} != {pred.size}")
    if y.size < 2:
        raise ValueError("regression metrics need at least 2 rows")
    if not (np.isfinite(y).all() and np.isfinite(pred).all()):
        raise ValueError("y_true or y_pred contains NaN or infinite values")

    out: dict[str, float] = {
        "rmse": float(skm.root_mean_squared_error(y, pred)),
        "mae": float(skm.mean_absolute_error(y, pred)),
        "r2": float(skm.r2_score(y, pred)),
    }
    # sklearn divides by max(|y|, eps) instead of failing, which gives meaningless huge values.
    if not (y == 0).any():
        out["mape"] = float(skm.mean_absolute_percentage_error(y, pred))
    out["n"] = int(y.size)
    return out


def baseline_metrics(task: Task, y_true: np.ndarray, n_classes: int = 2) -> dict[str, float]:
    """The trivial model's scores on these rows, for a reader to judge a model's against: the
    class prior as every row's probabilities (so the majority class as every prediction; for
    binary, at threshold 0.5) for classification, the mean for regression.

    The prior and the mean are those of `y_true` itself: the best constant on these rows, so
    a model that does not beat it has learnt nothing a constant could not.
    """
    if task is Task.regression:
        y = _as_1d(y_true, "y_true").astype(np.float64)
        return regression_metrics(y, np.full(y.size, float(y.mean())))
    if task is Task.binary:
        y, _ = _binary_inputs(y_true, np.zeros(len(y_true)))
        return binary_metrics(y, np.full(y.size, float(y.mean())), 0.5)
    y = _class_indices(_as_1d(y_true, "y_true"), n_classes, "y_true")
    prior = np.bincount(y, minlength=n_classes) / y.size
    return multiclass_metrics(y, np.tile(prior, (y.size, 1)))


def best_threshold(y_true: np.ndarray, p_positive: np.ndarray, metric: str = "f1") -> float:
    """The decision threshold maximising `metric` ("f1", "balanced_accuracy" or "accuracy").

    Every distinct score is a candidate, plus one just above the maximum (predict nothing
    positive). The returned value `t` reproduces the best confusion matrix via `p >= t`; on ties
    the highest threshold wins. Returns 0.5 when `y_true` has a single class.
    """
    if metric not in _THRESHOLD_METRICS:
        raise ValueError(f"metric must be one of {_THRESHOLD_METRICS}, got {metric!r}")
    y, p = _binary_inputs(y_true, p_positive)
    n = y.size
    n_pos = int(y.sum())
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5

    # Sort descending once; with threshold = score s_i, the predicted positives are exactly the
    # prefix up to the last occurrence of s_i, so cumulative sums give every confusion matrix.
    order = np.argsort(p, kind="stable")[::-1]
    scores = p[order]
    tp_cum = np.cumsum(y[order])
    last_of_group = np.r_[scores[:-1] != scores[1:], True]
    candidates = scores[last_of_group]
    tp = tp_cum[last_of_group]
    fp = np.flatnonzero(last_of_group) + 1 - tp

    # Append the "predict nothing positive" option last so it only wins when strictly better.
    candidates = np.r_[candidates, np.nextafter(scores[0], np.inf)]
    tp = np.r_[tp, 0]
    fp = np.r_[fp, 0]
    tn = n_neg - fp

    if metric == "f1":
        # 2TP / (2TP + FP + FN) with FN = P - TP; the denominator is >= P > 0.
        values = 2 * tp / (tp + fp + n_pos)
    elif metric == "accuracy":
        values = (tp + tn) / n
    else:
        values = (tp / n_pos + tn / n_neg) / 2
    # argmax returns the first maximum, i.e. the highest threshold among ties.
    return float(candidates[int(np.argmax(values))])


def _as_1d(values: np.ndarray, name: str, *, allow_empty: bool = False) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty")
    return arr


def _class_indices(values: np.ndarray, k: int, name: str) -> np.ndarray:
    # Accept integral floats (e.g. 1.0) but nothing that would silently be mislabelled.
    if values.size and not (np.isfinite(values).all() and (values % 1 == 0).all()):
        raise ValueError(f"{name} must contain integer class indices")
    ints = values.astype(np.int64)
    if ints.size and (ints.min() < 0 or ints.max() >= k):
        raise ValueError(f"{name} must contain class indices in 0..{k - 1}")
    return ints


def _binary_inputs(y_true: np.ndarray, p_positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = _class_indices(_as_1d(y_true, "y_true"), 2, "y_true")
    p = _as_1d(p_positive, "p_positive").astype(np.float64)
    if y.size != p.size:
        raise ValueError(f"y_true and p_positive differ in length: {y.size} != {p.size}")
    if not np.isfinite(p).all():
        raise ValueError("p_positive contains NaN or infinite values")
    return y, p
