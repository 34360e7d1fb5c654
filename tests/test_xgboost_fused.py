"""An ensemble of XGBoost members predicts in one pass over all their trees
(`ml/learners/xgboost_fused.py`): the same predictions as member by member, for every task,
and never used where it could differ."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from automlops.config import Task
from automlops.ml.learners import xgboost_fused
from automlops.ml.learners.catalog import load_model
from automlops.ml.learners.ensemble import EnsembleModel, Member
from automlops.ml.learners.xgboost_model import XGBoostModel

OBJECTIVES = {
    Task.binary: {"objective": "binary:logistic"},
    Task.multiclass: {"objective": "multi:softprob", "num_class": 3},
    Task.regression: {"objective": "reg:squarederror"},
}


def _data(task: Task, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values take each split's default side
    signal = np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) ** 2
    if task is Task.binary:
        return x, (signal > 0.5).astype(float)
    if task is Task.multiclass:
        return x, np.digitize(signal, [0.0, 1.0]).astype(float)
    return x, 3.0 * signal + rng.normal(size=n)


def _members(task: Task) -> list[XGBoostModel]:
    x, y = _data(task)
    members = []
    for depth, rounds, eta in ((2, 12, 0.3), (5, 7, 0.2), (3, 20, 0.1)):
        params = {**OBJECTIVES[task], "max_depth": depth, "eta": eta, "nthread": 1, "seed": depth}
        booster = xgb.train(params, xgb.DMatrix(x, label=y), rounds)
        members.append(XGBoostModel(booster))
    return members


@pytest.mark.parametrize("task", list(Task))
def test_fused_members_predict_what_they_predict_apart(task: Task) -> None:
    members = _members(task)
    weighted = [Member(w, m) for w, m in zip((0.5, 0.3, 0.2), members, strict=True)]
    fused = EnsembleModel(weighted, xgboost_fused.fuse_members)
    apart = EnsembleModel(weighted)
    assert fused._fused is not None and apart._fused is None
    x, _ = _data(task, 300)
    np.testing.assert_allclose(fused.predict(x), apart.predict(x), rtol=0, atol=1e-6)
    for output, member in zip(fused._fused(x), members, strict=True):
        np.testing.assert_allclose(output, member.predict(x), rtol=0, atol=1e-6)
    if task is Task.multiclass:
        np.testing.assert_allclose(fused.predict(x).sum(axis=1), 1.0, atol=1e-9)


def test_a_loaded_ensemble_of_boosters_is_fused_and_others_are_not() -> None:
    members = _members(Task.binary)
    saved = EnsembleModel([Member(1.0, m) for m in members]).save()
    loaded = load_model("ensemble", saved, Task.binary, 2)
    assert isinstance(loaded, EnsembleModel) and loaded._fused is not None
    x, _ = _data(Task.binary, 100)
    apart = EnsembleModel(loaded.members)
    np.testing.assert_allclose(loaded.predict(x), apart.predict(x), rtol=0, atol=1e-6)

    class Constant:  # a member of another library: nothing to fuse
        learner = "linear"

        def predict(self, features: np.ndarray) -> np.ndarray:
            return np.full(len(features), 0.25)

    mixed = [members[0], Constant()]
    assert xgboost_fused.fuse_members(mixed) is None  # type: ignore[list-item]
    assert xgboost_fused.fuse_members(members[:1]) is None  # one booster: nothing to gain


def test_a_fused_booster_that_disagrees_on_the_probe_is_not_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    members = _members(Task.regression)
    assert xgboost_fused.fuse_members(members) is not None
    monkeypatch.setattr(xgboost_fused, "_TOLERANCE", -1.0)  # nothing can agree
    assert xgboost_fused.fuse_members(members) is None
