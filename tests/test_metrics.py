"""Tests for automlops.ml.evaluation.metrics: hand-computed values, agreement with scikit-learn."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from automlops.config import Task
from automlops.ml.evaluation.metrics import (
    DESCRIPTIVE_FIELDS,
    HIGHER_IS_BETTER,
    PRIMARY_METRIC,
    TASK_METRICS,
    best_threshold,
    binary_metrics,
    confusion,
    multiclass_metrics,
    regression_metrics,
)

FAST = settings(max_examples=30, deadline=None)

BINARY_KEYS = {
    "roc_auc",
    "pr_auc",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "specificity",
    "log_loss",
    "brier",
    "threshold",
    "positive_rate",
    "n",
    "tp",
    "fp",
    "tn",
    "fn",
}

# Grid values force tied scores; free floats cover the general case.
probability = st.one_of(
    st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
    st.floats(0.0, 1.0, allow_nan=False),
)


@st.composite
def binary_data(draw: st.DrawFn, min_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(min_size, 30))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    p = draw(st.lists(probability, min_size=n, max_size=n))
    return np.array(y, dtype=np.int64), np.array(p, dtype=np.float64)


def assert_plain(result: dict) -> None:
    """Only builtin int/float values (np.float64 subclasses float, so check the exact type)."""
    for key, value in result.items():
        assert type(value) in (int, float), (key, type(value))
    json.dumps(result)


# --- binary: hand-computed example -------------------------------------------------------------

# TP=4, FP=2, TN=3, FN=1 at threshold 0.5: all four counts differ, so accuracy (TP+TN)/n = 0.7
# is distinguishable from the reference system's (TN+TN)/n = 0.6.
Y_HAND = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
P_HAND = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.65, 0.55, 0.4, 0.2, 0.1])


def test_binary_hand_computed_confusion_and_ratios() -> None:
    m = binary_metrics(Y_HAND, P_HAND)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (4, 2, 3, 1)
    assert m["n"] == 10
    assert m["accuracy"] == pytest.approx((4 + 3) / 10)
    assert m["accuracy"] != pytest.approx(2 * 3 / 10)
    assert m["precision"] == pytest.approx(4 / 6)
    assert m["recall"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(2 * 4 / (2 * 4 + 2 + 1))
    assert m["specificity"] == pytest.approx(3 / (3 + 2))
    assert m["positive_rate"] == pytest.approx(6 / 10)
    assert m["threshold"] == 0.5


def test_binary_hand_computed_probabilistic_scores() -> None:
    m = binary_metrics(Y_HAND, P_HAND)
    # 21 of the 25 (positive, negative) pairs are ranked correctly.
    assert m["roc_auc"] == pytest.approx(21 / 25)
    squared = [(p - y) ** 2 for y, p in zip(Y_HAND, P_HAND, strict=True)]
    assert m["brier"] == pytest.approx(sum(squared) / 10)
    assert m["brier"] == pytest.approx(0.1725)
    logs = [-math.log(p if y == 1 else 1 - p) for y, p in zip(Y_HAND, P_HAND, strict=True)]
    assert m["log_loss"] == pytest.approx(sum(logs) / 10)
    assert_plain(m)


# --- binary: agreement with scikit-learn ------------------------------------------------------


@FAST
@given(data=binary_data(), threshold=probability)
def test_binary_matches_sklearn(data: tuple[np.ndarray, np.ndarray], threshold: float) -> None:
    y, p = data
    m = binary_metrics(y, p, threshold)
    assert set(m) == BINARY_KEYS
    assert_plain(m)

    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (tp, fp, tn, fn)
    assert m["n"] == len(y) == tp + fp + tn + fn
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["accuracy"] == pytest.approx((tp + tn) / len(y))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred, zero_division=0))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, zero_division=0))
    expected_spec = tn / (tn + fp) if tn + fp else 0.0
    assert m["specificity"] == pytest.approx(expected_spec)
    assert m["positive_rate"] == pytest.approx(pred.mean())
    assert m["threshold"] == threshold
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=[0, 1]))
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))

    if 0 < y.sum() < len(y):
        assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
        assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, p))
    else:
        assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"])


def test_threshold_is_inclusive() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.5, 0.5, 0.7, 0.2])
    m = binary_metrics(y, p, threshold=0.5)
    # Both rows scoring exactly 0.5 count as predicted positive.
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 1, 0)
    m = binary_metrics(y, p, threshold=0.7)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (1, 0, 2, 1)
    m = binary_metrics(y, p, threshold=float(np.nextafter(0.5, 1.0)))
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (1, 0, 2, 1)


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_gives_nan_auc_without_raising(label: int) -> None:
    y = np.full(5, label)
    p = np.array([0.1, 0.4, 0.5, 0.8, 0.9])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UndefinedMetricWarning leaks out either
        m = binary_metrics(y, p)
    assert math.isnan(m["roc_auc"])
    assert math.isnan(m["pr_auc"])
    assert all(not math.isnan(v) for k, v in m.items() if k not in {"roc_auc", "pr_auc"})
    assert_plain(m)


def test_no_predicted_positives_gives_zero_precision() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.1, 0.2, 0.3, 0.4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = binary_metrics(y, p, threshold=0.9)
    assert m["precision"] == 0.0
    assert m["recall"] == 0.0
    assert m["f1"] == 0.0
    assert m["positive_rate"] == 0.0
    assert m["specificity"] == 1.0


def test_binary_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        binary_metrics(np.array([0, 2]), np.array([0.1, 0.9]))
    with pytest.raises(ValueError):
        binary_metrics(np.array([0, 1]), np.array([0.1]))
    with pytest.raises(ValueError):
        binary_metrics(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError):
        binary_metrics(np.array([], dtype=int), np.array([]))


# --- multiclass -------------------------------------------------------------------------------


def _normalise(raw: np.ndarray) -> np.ndarray:
    return raw / raw.sum(axis=1, keepdims=True)


def test_multiclass_with_missing_class_matches_sklearn() -> None:
    # Class 2 never occurs in y_true but is predicted for the last row.
    y = np.array([0, 0, 1, 1, 3, 3, 0, 1])
    proba = _normalise(
        np.array(
            [
                [0.7, 0.1, 0.1, 0.1],
                [0.2, 0.6, 0.1, 0.1],
                [0.1, 0.7, 0.1, 0.1],
                [0.1, 0.5, 0.2, 0.2],
                [0.1, 0.1, 0.1, 0.7],
                [0.3, 0.1, 0.2, 0.4],
                [0.5, 0.2, 0.2, 0.1],
                [0.1, 0.2, 0.6, 0.1],
            ]
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = multiclass_metrics(y, proba)
    pred = proba.argmax(axis=1)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about the unseen predicted class
        assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    # Per-class recall over the classes present: 0 -> 2/3, 1 -> 2/3, 3 -> 2/2.
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert m["weighted_f1"] == pytest.approx(
        skm.f1_score(y, pred, average="weighted", zero_division=0)
    )
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=[0, 1, 2, 3]))
    assert m["n"] == 8
    assert_plain(m)


@st.composite
def multiclass_data(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    k = draw(st.integers(2, 5))
    n = draw(st.integers(1, 25))
    # y_true only uses a subset of the classes, so missing classes are common.
    present = draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True))
    y = draw(st.lists(st.sampled_from(present), min_size=n, max_size=n))
    cells = draw(st.lists(st.floats(0.01, 1.0), min_size=n * k, max_size=n * k))
    return np.array(y), _normalise(np.array(cells).reshape(n, k))


@FAST
@given(data=multiclass_data())
def test_multiclass_matches_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, proba = data
    k = proba.shape[1]
    m = multiclass_metrics(y, proba)
    assert set(m) == {"accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "log_loss", "n"}
    assert_plain(m)
    pred = proba.argmax(axis=1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert m["weighted_f1"] == pytest.approx(
        skm.f1_score(y, pred, average="weighted", zero_division=0)
    )
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=list(range(k))))
    assert m["n"] == len(y)


def test_multiclass_rejects_bad_input() -> None:
    proba = _normalise(np.ones((3, 3)))
    with pytest.raises(ValueError):
        multiclass_metrics(np.array([0, 1, 3]), proba)  # index out of range
    with pytest.raises(ValueError):
        multiclass_metrics(np.array([0, 1]), proba)  # length mismatch
    with pytest.raises(ValueError):
        multiclass_metrics(np.array([0, 0, 0]), np.ones((3, 1)))  # k < 2


# --- confusion --------------------------------------------------------------------------------


def test_confusion_rows_true_columns_predicted() -> None:
    y = np.array([0, 0, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 2, 0, 2])
    assert confusion(y, pred, 4) == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    matrix = confusion(y, pred, 3)
    assert all(type(v) is int for row in matrix for v in row)
    assert matrix == skm.confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()
    assert confusion(np.array([], dtype=int), np.array([], dtype=int), 2) == [[0, 0], [0, 0]]
    with pytest.raises(ValueError):
        confusion(y, pred, 2)  # class 2 out of range for k=2


# --- regression -------------------------------------------------------------------------------

finite = st.floats(-1e3, 1e3, allow_nan=False)


@FAST
@given(pairs=st.lists(st.tuples(finite, finite), min_size=2, max_size=30))
def test_regression_matches_sklearn(pairs: list[tuple[float, float]]) -> None:
    y = np.array([a for a, _ in pairs])
    pred = np.array([b for _, b in pairs])
    m = regression_metrics(y, pred)
    assert_plain(m)
    assert m["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred))
    assert m["rmse"] == pytest.approx(math.sqrt(np.mean((y - pred) ** 2)))
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred))
    assert m["n"] == len(y)
    if (y == 0).any():
        assert "mape" not in m
    else:
        assert m["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y, pred))


def test_regression_hand_computed() -> None:
    y = np.array([1.0, 2.0, 4.0, 5.0])
    pred = np.array([2.0, 2.0, 3.0, 5.0])
    m = regression_metrics(y, pred)
    assert m["rmse"] == pytest.approx(math.sqrt(2 / 4))
    assert m["mae"] == pytest.approx(2 / 4)
    # SS_res = 2, SS_tot = 4 + 1 + 1 + 4 = 10.
    assert m["r2"] == pytest.approx(1 - 2 / 10)
    assert m["mape"] == pytest.approx((1 / 1 + 0 + 1 / 4 + 0) / 4)
    assert "mape" not in regression_metrics(np.array([0.0, 1.0]), np.array([0.5, 1.0]))
    with pytest.raises(ValueError):
        regression_metrics(np.array([1.0]), np.array([1.0]))


# --- metric registry --------------------------------------------------------------------------


def test_metric_directions_cover_every_returned_metric() -> None:
    returned = (
        set(binary_metrics(Y_HAND, P_HAND))
        | set(multiclass_metrics(np.array([0, 1]), np.array([[0.6, 0.4], [0.3, 0.7]])))
        | set(regression_metrics(np.array([1.0, 2.0]), np.array([1.5, 2.5])))
    )
    assert returned - DESCRIPTIVE_FIELDS == set(HIGHER_IS_BETTER)
    assert not DESCRIPTIVE_FIELDS & set(HIGHER_IS_BETTER)
    for name in ("rmse", "mae", "mape", "log_loss", "brier"):
        assert HIGHER_IS_BETTER[name] is False
    for name in ("roc_auc", "pr_auc", "accuracy", "f1", "macro_f1", "r2", "specificity"):
        assert HIGHER_IS_BETTER[name] is True
    assert PRIMARY_METRIC == {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}
    assert all(metric in HIGHER_IS_BETTER for metric in PRIMARY_METRIC.values())


def test_one_table_names_each_tasks_primary_and_search_metric() -> None:
    assert set(TASK_METRICS) == set(Task)
    assert {task.value: m.primary for task, m in TASK_METRICS.items()} == PRIMARY_METRIC
    assert TASK_METRICS[Task.multiclass].search == "log_loss"
    assert not TASK_METRICS[Task.multiclass].search_higher_is_better
    assert not TASK_METRICS[Task.regression].higher_is_better
    assert TASK_METRICS[Task.binary].higher_is_better


# --- best_threshold ---------------------------------------------------------------------------


def _counts(y: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    tp = int(np.sum((pred == 1) & (y == 1)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    tn = int(np.sum((pred == 0) & (y == 0)))
    return tp, fp, tn, len(y) - tp - fp - tn


# Textbook definitions for the brute force (the binary tests tie these to sklearn); sklearn's
# per-call overhead would make a loop over every threshold too slow for the test budget.
def _f1(tp: int, fp: int, tn: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _accuracy(tp: int, fp: int, tn: int, fn: int) -> float:
    return (tp + tn) / (tp + fp + tn + fn)


def _balanced_accuracy(tp: int, fp: int, tn: int, fn: int) -> float:
    return (tp / (tp + fn) + tn / (tn + fp)) / 2


BRUTE = {"f1": _f1, "accuracy": _accuracy, "balanced_accuracy": _balanced_accuracy}
SKLEARN = {
    "f1": lambda y, pred: skm.f1_score(y, pred, zero_division=0),
    "accuracy": skm.accuracy_score,
    "balanced_accuracy": skm.balanced_accuracy_score,
}


@settings(max_examples=40, deadline=None)
@pytest.mark.parametrize("metric", sorted(BRUTE))
@given(data=binary_data(min_size=2))
def test_best_threshold_matches_brute_force(
    metric: str, data: tuple[np.ndarray, np.ndarray]
) -> None:
    y, p = data
    assume(0 < y.sum() < len(y))
    # Every distinct confusion matrix comes from some observed score, or from predicting none.
    candidates = [*np.unique(p), np.inf]
    brute_best = max(BRUTE[metric](*_counts(y, (p >= t).astype(int))) for t in candidates)

    t = best_threshold(y, p, metric)
    assert type(t) is float
    pred = (p >= t).astype(int)
    assert BRUTE[metric](*_counts(y, pred)) == pytest.approx(brute_best, rel=1e-12, abs=1e-12)
    assert SKLEARN[metric](y, pred) == pytest.approx(brute_best, rel=1e-12, abs=1e-12)


def test_best_threshold_hand_example() -> None:
    # Candidates 0.9/0.8/0.7/0.6 give F1 2/6, 4/7, 6/8, 8/9; 0.6 is the unique best.
    y = np.array([1, 1, 1, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    assert best_threshold(y, p) == 0.6
    assert best_threshold(y, p, "accuracy") == 0.6
    # With ties in score the returned threshold keeps the whole tied group together.
    y = np.array([1, 0, 1, 0])
    p = np.array([0.8, 0.3, 0.3, 0.1])
    t = best_threshold(y, p, "f1")
    assert binary_metrics(y, p, t)["f1"] == pytest.approx(max(2 / 3, 4 / 5))


def test_best_threshold_can_predict_nothing_positive_for_accuracy() -> None:
    # Positives score lowest: the best accuracy is predicting all negative.
    y = np.array([0, 0, 0, 1])
    p = np.array([0.9, 0.8, 0.7, 0.1])
    t = best_threshold(y, p, "accuracy")
    assert t > 0.9
    assert binary_metrics(y, p, t)["accuracy"] == 0.75


def test_best_threshold_single_class_and_bad_metric() -> None:
    p = np.array([0.2, 0.7, 0.9])
    assert best_threshold(np.zeros(3, dtype=int), p) == 0.5
    assert best_threshold(np.ones(3, dtype=int), p, "balanced_accuracy") == 0.5
    with pytest.raises(ValueError):
        best_threshold(np.array([0, 1, 1]), p, "roc_auc")
