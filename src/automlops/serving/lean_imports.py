"""Start-up of a serving process: the learner libraries without their optional integrations.

XGBoost and LightGBM import scikit-learn (which pulls in scipy.stats and pandas), pandas,
pyarrow and Dask support whenever those are installed. A predictor uses none of them: it hands
the booster a float32 matrix. In a serving process they cost about a second of start-up and
150 MB, so `serve` imports the libraries first with those integrations hidden; the libraries
then run without them for the life of the process (our training code is numpy in, numpy out,
and unaffected).

Hiding is done through `sys.modules`, which is process-wide: an `import pandas` in another
thread at that moment would fail. So this runs once, before the server or any worker thread
starts (`automlops serve`, the SageMaker container), never inside a running multi-threaded
process such as `automlops up`.
"""

from __future__ import annotations

import importlib
import sys

_LIBRARIES = ("xgboost", "lightgbm")
_INTEGRATIONS = ("sklearn", "pandas", "pyarrow", "dask", "distributed", "matplotlib", "graphviz")


def import_learner_libraries() -> None:
    """Import XGBoost and LightGBM without their optional integrations (see the module doc)."""
    missing = [name for name in _LIBRARIES if name not in sys.modules]
    if not missing:
        return
    hidden = [name for name in _INTEGRATIONS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail
    try:
        for name in missing:
            importlib.import_module(name)
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
