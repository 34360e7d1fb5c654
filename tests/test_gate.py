"""The promotion gate: the vectorised paired bootstrap and the manifest's thresholds."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from automlops.config import Task
from automlops.ml.evaluation.gate import (
    MAX_BOOTSTRAP_CELLS,
    MIN_RESAMPLES,
    bootstrap_weights,
    check_floors,
    compare,
    decide,
    parse_floor,
    primary,
    weighted_macro_f1,
    weighted_neg_rmse,
    weighted_roc_auc,
)
from automlops.ml.evaluation.metrics import TASK_METRICS

rng = np.random.default_rng(7)


def _binary(n: int, signal: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores where `signal` sets how well the scores separate the classes."""
    r = np.random.default_rng(seed)
    y = r.integers(0, 2, n)
    return y, np.round(r.random(n) + signal * y, 2)  # rounded: plenty of ties


def test_weighted_metrics_equal_sklearn_on_a_resample() -> None:
    y, score = _binary(400, 0.4)
    weights = next(bootstrap_weights(400, 3, rng))
    for w in weights:
        rows = np.repeat(np.arange(400), w.astype(int))
        assert weighted_roc_auc(y, score, w[None])[0] == pytest.approx(
            roc_auc_score(y[rows], score[rows])
        )
    k = 4
    labels = rng.integers(0, k, 300)
    proba = rng.random((300, k))
    w = next(bootstrap_weights(300, 1, rng))[0]
    rows = np.repeat(np.arange(300), w.astype(int))
    assert weighted_macro_f1(labels, proba, w[None])[0] == pytest.approx(
        f1_score(labels[rows], proba[rows].argmax(axis=1), average="macro")
    )
    values, pred = rng.normal(size=50), rng.normal(size=50)
    assert -weighted_neg_rmse(values, pred, np.ones((1, 50)))[0] == pytest.approx(
        np.sqrt(np.mean((values - pred) ** 2))
    )


def test_bootstrap_weights_draw_n_rows_each() -> None:
    chunks = list(bootstrap_weights(5000, 1000, rng))
    weights = np.vstack(chunks)
    assert weights.shape == (1000, 5000)
    assert (weights.sum(axis=1) == 5000).all()
    assert len(chunks) > 1  # memory is bounded by chunking


def test_a_clearly_worse_model_is_rejected() -> None:
    y, good = _binary(300, 0.8)
    _, bad = _binary(300, 0.0, seed=1)  # unrelated to the labels
    c = compare(Task.binary, y, bad, good)
    assert c.candidate < c.champion
    assert c.lower <= c.difference <= c.upper < 0
    assert c.candidate_worse
    gate = decide({"roc_auc": c.candidate}, {}, {"new_test": c}, champion_version=1)
    assert not gate.promote
    assert "worse than champion v1 beyond noise" in gate.reason
    assert gate.details()["comparisons"]["new_test"]["candidate_worse"] is True


def test_an_equal_model_is_not_rejected() -> None:
    y, score = _binary(300, 0.5)
    c = compare(Task.binary, y, score, score.copy())
    assert c.difference == 0 and c.lower == 0 and c.upper == 0
    assert not c.candidate_worse
    assert decide({}, {}, {"new_test": c}, champion_version=3).promote


def test_a_slightly_worse_model_on_few_rows_is_within_noise() -> None:
    # One extra mistake on 40 rows is not evidence of a worse model.
    y = np.array([0, 1] * 20)
    champion = np.where(y == 1, 0.9, 0.1)
    candidate = champion.copy()
    candidate[0] = 0.95  # a negative now outranks every positive
    c = compare(Task.binary, y, candidate, champion)
    assert c.difference < 0
    assert not c.candidate_worse


def test_margin_tolerates_a_small_loss() -> None:
    y, champion = _binary(2000, 0.6)
    candidate = champion + np.random.default_rng(3).normal(0, 0.08, 2000)  # a bit noisier
    strict = compare(Task.binary, y, candidate, champion, margin=0.0)
    lenient = compare(Task.binary, y, candidate, champion, margin=0.05)
    assert strict.candidate_worse
    assert not lenient.candidate_worse


def test_worse_on_either_row_set_rejects() -> None:
    y, good = _binary(200, 0.8)
    _, noise = _binary(200, 0.0, seed=2)
    same = compare(Task.binary, y, good, good)
    worse = compare(Task.binary, y, noise, good)
    gate = decide({}, {}, {"new_test": same, "champion_test": worse}, champion_version=1)
    assert not gate.promote
    assert "the champion's own test split" in gate.reason
    assert "new upload" not in gate.reason  # only the row set that failed is named


@pytest.mark.parametrize("task", list(Task))
def test_the_gate_compares_on_the_tables_primary_metric(task: Task) -> None:
    name, _, sign = primary(task)
    assert name == TASK_METRICS[task].primary
    assert sign == (1 if TASK_METRICS[task].higher_is_better else -1)


def test_regression_and_multiclass_are_oriented_higher_is_better() -> None:
    y = rng.normal(size=500)
    c = compare(Task.regression, y, y + rng.normal(0, 2.0, 500), y + rng.normal(0, 0.2, 500))
    assert c.metric == "rmse" and c.candidate > c.champion  # RMSE reported as is
    assert c.difference < 0 and c.candidate_worse
    labels = rng.integers(0, 3, 500)
    perfect = np.eye(3)[labels]
    c = compare(Task.multiclass, labels, perfect, rng.random((500, 3)))
    assert c.metric == "macro_f1" and c.difference > 0 and not c.candidate_worse


def test_bootstrap_of_5k_rows_takes_well_under_a_second() -> None:
    y, a = _binary(5000, 0.5)
    _, b = _binary(5000, 0.5, seed=4)
    compare(Task.binary, y, a, b, resamples=10)  # warm up
    # CPU time of this process: other work on a shared test machine does not count against it.
    start = time.process_time()
    c = compare(Task.binary, y, a, b)
    assert c.resamples == 1000
    assert time.process_time() - start < 1.0


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("roc_auc", ("roc_auc", "min")),
        ("min_roc_auc", ("roc_auc", "min")),
        ("rmse", ("rmse", "max")),
        ("max_rmse", ("rmse", "max")),
        ("min_f1", ("f1", "min")),
        ("min_nonsense", None),
    ],
)
def test_threshold_keys(key: str, expected: tuple[str, str] | None) -> None:
    assert parse_floor(key) == expected


def test_thresholds_decide_alone_for_a_first_model() -> None:
    values = {"roc_auc": 0.91, "rmse": 2.0}
    ok = decide(values, {"min_roc_auc": 0.9}, {}, champion_version=None)
    assert ok.promote and "first model" in ok.reason
    low = decide(values, {"min_roc_auc": 0.95}, {}, champion_version=None)
    assert not low.promote
    assert "roc_auc 0.9100 is below the minimum 0.95 (min_roc_auc)" in low.reason
    assert not decide(values, {"rmse": 1.5}, {}, None).promote  # a loss is bounded above
    unknown = check_floors(values, {"min_roc_auk": 0.5})
    assert not unknown[0].passed and "names no known metric" in unknown[0].describe()


def test_auc_without_ties_equals_sklearn_with_weights() -> None:
    # Continuous scores take the untied fast path; ties take the grouped one.
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.2).astype(int)
    score = rng.random(2000) + 0.3 * y
    weights = rng.integers(0, 4, size=(3, 2000)).astype(float)
    for row, value in zip(weights, weighted_roc_auc(y, score, weights), strict=True):
        assert value == pytest.approx(roc_auc_score(y, score, sample_weight=row))
    rounded = np.round(score, 1)  # many ties
    for row, value in zip(weights, weighted_roc_auc(y, rounded, weights), strict=True):
        assert value == pytest.approx(roc_auc_score(y, rounded, sample_weight=row))


def test_a_big_row_set_gets_fewer_resamples_but_every_row() -> None:
    rng = np.random.default_rng(4)
    n = 400_000
    y = (rng.random(n) < 0.1).astype(int)
    candidate = rng.random(n) + 0.4 * y
    champion = rng.random(n) + 0.3 * y
    started = time.perf_counter()
    result = compare(Task.binary, y, candidate, champion)
    assert result.rows == n
    assert MIN_RESAMPLES <= result.resamples <= MAX_BOOTSTRAP_CELLS // n
    assert result.lower > 0  # clearly better, and the interval says so
    assert time.perf_counter() - started < 30
