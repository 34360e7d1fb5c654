"""The serving shortcuts give the libraries' own answers: XGBoost's C prediction call, and
learner libraries imported without their optional integrations."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from automlops.config import Task
from automlops.ml.xgboost_model import XGBoostLearner, _predict_dense


@pytest.mark.parametrize(
    ("task", "n_classes"), [(Task.binary, 2), (Task.multiclass, 3), (Task.regression, 0)]
)
def test_xgboost_dense_call_matches_inplace_predict(task: Task, n_classes: int) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values take the default branch
    y = {
        Task.binary: (np.nan_to_num(x[:, 0]) > 0).astype(float),
        Task.multiclass: rng.integers(0, 3, 300).astype(float),
        Task.regression: np.nan_to_num(x[:, 1]) * 2.0,
    }[task]
    model = XGBoostLearner().fit(
        task, n_classes, (x[:240], y[:240]), (x[240:], y[240:]), {"rounds": 15}, seed=1, nthread=1
    )
    for rows in (x, x[:1], x[7:9]):
        rows = np.ascontiguousarray(rows)
        expected = model.booster.inplace_predict(rows, validate_features=False)
        got = _predict_dense(model.booster, rows)
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(model.predict(rows), expected)
    # Anything but a C-ordered float32 matrix goes through inplace_predict.
    wide = np.asfortranarray(x.astype(np.float64))
    np.testing.assert_allclose(
        model.predict(wide), model.booster.inplace_predict(x, validate_features=False)
    )


def test_learner_libraries_load_without_scikit_learn_or_pandas() -> None:
    """A fresh process importing XGBoost and LightGBM the predictor's way loads neither
    scikit-learn nor pandas, and can still import both afterwards."""
    code = (
        "import sys\n"
        "from automlops.ml.predictor import import_learner_library\n"
        "import_learner_library('xgboost'); import_learner_library('lightgbm')\n"
        "assert 'xgboost' in sys.modules and 'lightgbm' in sys.modules\n"
        "print(sorted(m for m in ('sklearn', 'pandas', 'pyarrow') if m in sys.modules))\n"
        "import sklearn, pandas\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
