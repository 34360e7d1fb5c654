"""The learner families by name: the one place a name becomes a learner or a loaded model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from automlops.config import Task
from automlops.ml.learners.base import Learner, Model
from automlops.ml.learners.ensemble import ENSEMBLE, EnsembleModel

LEARNER_NAMES = ("xgboost", "lightgbm", "linear")


def learner(name: str) -> Learner:
    """The learner called `name` (imported lazily: each library is heavy)."""
    if name == "xgboost":
        from automlops.ml.learners.xgboost_model import XGBoostLearner

        return XGBoostLearner()
    if name == "lightgbm":
        from automlops.ml.learners.lightgbm_model import LightGBMLearner

        return LightGBMLearner()
    if name == "linear":
        from automlops.ml.learners.linear_model import LinearLearner

        return LinearLearner()
    raise ValueError(f"unknown learner {name!r}")


def load_model(name: str, data: bytes, task: Task, n_classes: int, *, nthread: int = 1) -> Model:
    """A saved model of the learner called `name`, or of an ensemble of several."""
    if name == ENSEMBLE:
        return EnsembleModel.load(
            data, task, n_classes, load_member=load_model, fuse=_fuse, nthread=nthread
        )
    return learner(name).load(data, task, n_classes, nthread=nthread)


def _fuse(models: Sequence[Model]) -> Callable[[np.ndarray], list[np.ndarray]] | None:
    """Members predicted in one pass where their library allows it (XGBoost boosters)."""
    if not all(m.learner == "xgboost" for m in models):
        return None
    from automlops.ml.learners.xgboost_fused import fuse_members

    return fuse_members(models)
