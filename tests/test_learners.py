"""The boosting learners keep learning while validation improves, even where AUC cannot."""

from __future__ import annotations

import numpy as np
import pytest

from automlops.config import Task
from automlops.ml.learners.base import FitJob
from automlops.ml.learners.catalog import learner


@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
def test_binary_early_stopping_does_not_stop_at_a_perfect_auc(name: str) -> None:
    """One split separates these classes, so validation AUC is 1.0 after the first round and
    never improves; early stopping on it kept a one-round model whose probabilities barely
    left the base rate. Stopping on log loss keeps the rounds that sharpen them."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(float)
    job = FitJob(Task.binary, 2, (x[:300], y[:300]), (x[300:], y[300:]), seed=1, nthread=1)
    model = learner(name).fit({"rounds": 60}, job)
    assert model.rounds is not None and model.rounds > 5
    proba = model.predict(x[300:])
    assert ((proba > 0.5) == y[300:]).mean() >= 0.95
