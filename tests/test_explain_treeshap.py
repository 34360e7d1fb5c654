"""Our compiled TreeSHAP (ml/explain/treeshap.py) against shap's TreeExplainer and the
boosters' own TreeSHAP, on features with missing values, zeros and one-hot columns."""

from __future__ import annotations

import functools
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb

from automlops.config import Task
from automlops.ml.explain import treeshap
from automlops.ml.explain.boosted import lightgbm_treeshap, xgboost_treeshap
from automlops.ml.explain.forest import cut_trees
from automlops.ml.explain.treeshap import TreeShap, margin
from automlops.ml.learners.lightgbm_model import LightGBMModel
from automlops.ml.learners.xgboost_model import XGBoostModel

TASKS = [Task.binary, Task.multiclass, Task.regression]
XGB_OBJECTIVES = {
    Task.binary: {"objective": "binary:logistic"},
    Task.multiclass: {"objective": "multi:softprob", "num_class": 3},
    Task.regression: {"objective": "reg:squarederror"},
}
LGB_OBJECTIVES = {
    Task.binary: {"objective": "binary"},
    Task.multiclass: {"objective": "multiclass", "num_class": 3},
    Task.regression: {"objective": "regression"},
}


def features(seed: int, n: int) -> np.ndarray:
    """Numbers with gaps (NaN), a one-hot block of three columns (as the transform encodes a
    category), a mostly-zero column and noise."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 8), np.float32)
    x[:, 0] = rng.normal(size=n)
    x[:, 1] = rng.normal(size=n)
    x[rng.random(n) < 0.15, 0] = np.nan
    x[rng.random(n) < 0.15, 1] = np.nan
    x[np.arange(n), 2 + rng.integers(0, 3, size=n)] = 1.0  # one-hot: columns 2, 3, 4
    x[:, 5] = np.where(rng.random(n) < 0.6, 0.0, rng.normal(size=n))
    x[:, 6:] = rng.normal(size=(n, 2))
    return x


def labels(x: np.ndarray, task: Task) -> np.ndarray:
    score = np.nan_to_num(x[:, 0], nan=-1.0) + 1.5 * x[:, 2] - x[:, 3] + 0.7 * x[:, 5]
    score = score + np.isnan(x[:, 1]) * 0.8
    if task is Task.regression:
        return score
    if task is Task.binary:
        return (score > 0.3).astype(np.float64)
    return np.digitize(score, [-0.5, 0.7]).astype(np.float64)


@functools.cache
def xgboost_booster(task: Task, depth: int = 6) -> xgb.Booster:
    x = features(0, 600)
    params = {**XGB_OBJECTIVES[task], "max_depth": depth, "nthread": 1, "verbosity": 0}
    return xgb.train(params, xgb.DMatrix(x, label=labels(x, task)), 15)


@functools.cache
def lightgbm_booster(task: Task, **extra: Any) -> lgb.Booster:
    x = features(0, 600)
    params = {
        **LGB_OBJECTIVES[task],
        "num_leaves": 24,
        "min_child_samples": 5,
        "num_threads": 1,
        "verbosity": -1,
        **extra,
    }
    return lgb.train(params, lgb.Dataset(x, label=labels(x, task)), 15)


def shap_values(booster: Any, x: np.ndarray, outputs: int) -> tuple[np.ndarray, np.ndarray]:
    """shap's TreeExplainer values as (rows, outputs, features) and its base per output."""
    shap = pytest.importorskip("shap")
    explainer = shap.TreeExplainer(booster)
    values = np.asarray(explainer.shap_values(x), np.float64)
    if values.ndim == 2:
        values = values[:, None, :]
    elif values.shape[1] != outputs:  # (rows, features, classes)
        values = values.transpose(0, 2, 1)
    base = np.atleast_1d(np.asarray(explainer.expected_value, np.float64))
    return values, base


def rows() -> np.ndarray:
    """Rows to explain: fresh ones, with a NaN where training had none (column 6)."""
    x = features(1, 80)
    x[::9, 6] = np.nan
    return x


# shap warns that its LightGBM binary output changed shape: handled in shap_values.
@pytest.mark.filterwarnings("ignore:LightGBM binary classifier:UserWarning")
@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
@pytest.mark.parametrize("task", TASKS)
def test_ours_agree_with_shap(task: Task, name: str) -> None:
    booster = xgboost_booster(task) if name == "xgboost" else lightgbm_booster(task)
    ours = xgboost_treeshap(booster) if name == "xgboost" else lightgbm_treeshap(booster)
    assert ours is not None
    x = rows()
    outputs = 3 if task is Task.multiclass else 1
    values, base = shap_values(booster, x, outputs)
    got = ours.contributions(x)
    assert got.shape == (len(x), outputs, x.shape[1])
    np.testing.assert_allclose(got, values, atol=1e-4)
    np.testing.assert_allclose(ours.base, base, atol=1e-4)
    # Additive on the booster's own margin.
    if name == "xgboost":
        margin = booster.predict(xgb.DMatrix(x), output_margin=True, strict_shape=True)
    else:
        margin = booster.predict(x, raw_score=True)
    summed = ours.base + got.sum(axis=2)
    np.testing.assert_allclose(summed, np.asarray(margin).reshape(summed.shape), atol=1e-4)


@pytest.mark.parametrize("task", TASKS)
def test_lightgbm_zero_as_missing_matches_lightgbms_own(task: Task) -> None:
    """LightGBM's "Zero" missing type (zeros and NaN take the default side): shap does not
    model it, LightGBM's own pred_contrib does."""
    booster = lightgbm_booster(task, zero_as_missing=True)
    ours = lightgbm_treeshap(booster)
    assert ours is not None
    assert "Zero" in str(booster.dump_model())  # the case under test is in the trees
    x = rows()
    theirs = booster.predict(x, pred_contrib=True).reshape(len(x), -1, x.shape[1] + 1)
    np.testing.assert_allclose(ours.contributions(x), theirs[:, :, :-1], atol=1e-6)
    np.testing.assert_allclose(ours.base, theirs[0, :, -1], atol=1e-6)


@functools.cache
def bushy_booster() -> xgb.Booster:
    """Deep trees fitted to noise: more splits than a 64-bit key holds."""
    x = features(0, 600)
    noise = np.random.default_rng(3).normal(size=len(x))
    params = {"max_depth": 10, "min_child_weight": 0, "lambda": 0, "nthread": 1, "verbosity": 0}
    return xgb.train(params, xgb.DMatrix(x, label=noise), 3)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "bushy"])
def test_tables_direct_leaves_and_threads_give_the_same_values(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leaves past the table limits take the direct (depth^2) route: same values; so do rows
    split over threads and in blocks, rows one at a time (walked, not grouped), and rows
    grouped by their way through whole trees of more splits than a 64-bit word holds (keys of
    several words) rather than through the trees' parts."""
    booster = bushy_booster() if kind == "bushy" else xgboost_booster(Task(kind), depth=10)
    tabled = xgboost_treeshap(booster)
    assert tabled is not None and tabled.forest.depth.max() > 4
    x = features(2, 700)
    expected = tabled.contributions(x)
    if kind == "bushy":  # whole trees: keys of several words
        whole = TreeShap(tabled.forest, part_splits=None)
        assert (whole.index.splits > 2 * 63).any() and whole.index.most_words >= 3
        np.testing.assert_allclose(whole.contributions(x), expected, atol=1e-9)
    for direct in (TreeShap(tabled.forest, budget=0), TreeShap(tabled.forest, max_depth=4)):
        assert (direct.tables.start < 0).any()
        np.testing.assert_allclose(direct.contributions(x), expected, atol=1e-9)
    np.testing.assert_allclose(tabled.contributions(x, nthread=2), expected, atol=1e-9)
    with monkeypatch.context() as patch:  # blocks of 64 rows, over two threads and one
        patch.setattr(treeshap, "ROW_BLOCK", 64)
        for nthread in (1, 2):
            np.testing.assert_allclose(tabled.contributions(x, nthread), expected, atol=1e-9)
    # One row at a time (no grouping of rows by their way through a tree): the same.
    one_by_one = np.concatenate([tabled.contributions(x[i : i + 1]) for i in range(0, 700, 70)])
    np.testing.assert_allclose(one_by_one, expected[::70], atol=1e-9)
    library = booster.predict(xgb.DMatrix(x), pred_contribs=True, strict_shape=True)
    np.testing.assert_allclose(expected, library[:, :, :-1], atol=1e-4)


def test_models_use_it_and_keep_the_library_for_trees_it_cannot_hold() -> None:
    x = features(0, 600)
    y = labels(x, Task.binary)
    model = XGBoostModel(xgboost_booster(Task.binary))
    model.contributions(x[:3], Task.binary)
    assert model._treeshap is not None  # our path, not pred_contribs
    with pytest.raises(ValueError, match="shape"):  # too narrow: refused, never read past
        model._treeshap.contributions(x[:3, :2])
    # LightGBM's categorical splits ("==") are not in our layout: its own TreeSHAP answers.
    codes = x.copy()
    codes[:, 2] = np.argmax(x[:, 2:5], axis=1)
    params = {"objective": "binary", "verbosity": -1, "num_threads": 1, "min_data_per_group": 5}
    booster = lgb.train(params, lgb.Dataset(codes, label=y, categorical_feature=[2]), 10)
    assert "==" in str(booster.dump_model())
    categorical = LightGBMModel(booster)
    explained = categorical.contributions(codes[:20], Task.binary)
    assert categorical._treeshap is None
    margin = booster.predict(codes[:20], raw_score=True)
    np.testing.assert_allclose(explained.raw_score[:, 0], margin, atol=1e-6)


def test_keys_give_each_split_one_bit_shallow_splits_first() -> None:
    """Every split of a tree has its own bit in the key, over as many words as it takes, and
    a split's bit comes before its children's (groups in key order then differ mostly at deep
    splits)."""
    tabled = xgboost_treeshap(bushy_booster())
    assert tabled is not None
    ours = TreeShap(tabled.forest, part_splits=None)
    forest, index = ours.forest, ours.index
    for t in range(forest.trees):
        a, b = forest.tree_start[t], forest.tree_start[t + 1]
        internal = np.flatnonzero(forest.leaf[a:b] < 0) + a
        place = index.word[internal] * 63 + 62 - index.shift[internal]
        np.testing.assert_array_equal(np.sort(place), np.arange(index.splits[t]))
        at = dict(zip(internal.tolist(), place.tolist(), strict=True))
        for node in internal[1:]:
            assert at[a + forest.parent[node]] < at[node]


def test_rows_grouped_by_their_way_agree_with_rows_walked_alone() -> None:
    """On deep trees, whole (keys of several words) or cut into parts, rows that repeat,
    differ at one split or at none: grouped in a batch, each row gets what walking it alone
    gives, and equal rows equal values."""
    tabled = xgboost_treeshap(bushy_booster())
    assert tabled is not None
    x = features(4, 300)
    x[100:200] = x[:100]
    x[200:300, 0] = x[:100, 0] + 1e-3  # mostly the same side of every split, now and then not
    x[200:300, 1:] = x[:100, 1:]
    alone = np.concatenate([tabled.contributions(x[i : i + 1]) for i in range(len(x))])
    for part_splits in (None, 16, 3):
        grouped = TreeShap(tabled.forest, part_splits=part_splits).contributions(x)
        np.testing.assert_allclose(grouped, alone, atol=1e-9)
        np.testing.assert_array_equal(grouped[100:200], grouped[:100])


@pytest.mark.parametrize("kind", ["multiclass", "bushy"])
def test_trees_cut_into_parts_keep_the_model(kind: str) -> None:
    """Cut into parts of at most a few splits below their path, the trees give the same
    margins (their leaves, each once, and zeros) and the same values; each part is a path of
    splits, each with a zero leaf on its other side, above one subtree of the tree."""
    booster = bushy_booster() if kind == "bushy" else xgboost_booster(Task.multiclass, depth=10)
    ours = xgboost_treeshap(booster)
    assert ours is not None
    forest, parts = ours.forest, cut_trees(ours.forest, 5)
    assert parts.trees > forest.trees and parts.outputs == forest.outputs
    x = features(5, 200)
    np.testing.assert_allclose(margin(parts, x), margin(forest, x), atol=1e-9)
    leaves = parts.leaf[parts.leaf >= 0]
    real = leaves[leaves < len(forest.value)]
    np.testing.assert_array_equal(np.sort(real), np.arange(len(forest.value)))  # each once
    assert (parts.value[len(forest.value) :] == 0).all()
    for t in range(parts.trees):
        a, b = parts.tree_start[t], parts.tree_start[t + 1]
        zero = (parts.leaf[a:b] >= len(forest.value)).sum()
        # Splits on the path (one per zero leaf) plus at most 5 below it.
        assert (parts.leaf[a:b] < 0).sum() <= zero + 5
    whole = TreeShap(forest, part_splits=None).contributions(x)
    np.testing.assert_allclose(TreeShap(forest, part_splits=5).contributions(x), whole, atol=1e-9)
