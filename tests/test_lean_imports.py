"""A serving process imports the learner libraries without their optional integrations; they
train and predict there exactly as in a process that imported them whole."""

from __future__ import annotations

import subprocess
import sys

_CODE = """
import sys
if sys.argv[1] == "lean":
    from automlops.serving.lean_imports import import_learner_libraries
    import_learner_libraries()
    assert "xgboost" in sys.modules and "lightgbm" in sys.modules

import numpy as np
from automlops.config import Task
from automlops.ml.learners.base import FitJob
from automlops.ml.learners.catalog import learner

rng = np.random.default_rng(0)
x = rng.normal(size=(2000, 4)).astype(np.float32)
y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(float)
for name in ("xgboost", "lightgbm"):
    job = FitJob(Task.binary, 2, (x[:1500], y[:1500]), (x[1500:], y[1500:]), seed=1, nthread=1)
    model = learner(name).fit({"rounds": 30}, job)
    print(name, np.round(model.predict(x[1500:1510]), 6).tolist())
print(sorted(m for m in ("sklearn", "pandas") if m in sys.modules))
import sklearn, pandas  # hidden only while the libraries were first imported
"""


def _run(mode: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _CODE, mode], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_learner_libraries_load_lean_and_answer_as_when_loaded_whole() -> None:
    lean, whole = _run("lean"), _run("whole")
    assert lean[-1] == "[]"  # neither scikit-learn nor pandas came with the libraries
    assert whole[-1] != "[]"  # ...which they do when imported plainly: the test can tell
    assert len(lean) == 3
    assert lean[:2] == whole[:2]
