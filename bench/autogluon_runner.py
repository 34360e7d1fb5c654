"""Runs AutoGluon-Tabular on our training rows and predicts our held-out rows (own virtualenv).

Usage: autogluon_runner.py TRAIN.parquet TEST.parquet TARGET TASK BUDGET_S SEED OUT.json
Writes {"predictions": [...], "classes": [...], "seconds": s, "best_estimator": name,
"families": [...], "version": v}, the same shape as flaml_runner.py.

AutoGluon's default preset (`medium_quality`) and its default model zoo less the neural nets
(no torch in this virtualenv): in 1.6 that is LightGBM (3 configurations), CatBoost, XGBoost,
random forest and extra trees (3 criteria each), then its weighted ensemble of them. It holds
out its own validation rows from the training rows it is given, as FLAML does. Models go to a
temporary directory removed afterwards.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time

import pandas as pd
from autogluon.core import __version__ as autogluon_version
from autogluon.tabular import TabularPredictor
from autogluon.tabular.configs.hyperparameter_configs import get_hyperparameter_config

# Our metric names, in AutoGluon's spelling.
METRIC = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "root_mean_squared_error"}
# The neural families of AutoGluon's default zoo; torch is not installed, so they are left out
# rather than left to fail at fit time.
NEURAL = {"NN_TORCH", "FASTAI", "TABPFN", "TABPFNV2", "REALMLP", "TABM", "MITRA", "TABICL"}


def model_zoo() -> dict[str, object]:
    """AutoGluon's default hyperparameters (those of `medium_quality`) without the neural nets."""
    zoo = get_hyperparameter_config("default")
    return {family: config for family, config in zoo.items() if family.upper() not in NEURAL}


def main() -> None:
    train_path, test_path, target, task, budget, seed, out = sys.argv[1:8]
    train = pd.read_parquet(train_path)
    test = pd.read_parquet(test_path)
    if task == "regression":
        train[target] = train[target].astype(float)
    else:
        train[target] = train[target].astype(str)
    features = test.drop(columns=[target])
    zoo = model_zoo()
    models = tempfile.mkdtemp(prefix="autogluon-")
    try:
        started = time.perf_counter()
        predictor = TabularPredictor(
            label=target,
            problem_type=task,
            eval_metric=METRIC[task],
            path=models,
            verbosity=0,
            # The seed of its holdout split; the models' own seeds are AutoGluon's defaults.
            learner_kwargs={"random_state": int(seed)},
        ).fit(
            train,
            time_limit=float(budget),
            presets="medium_quality",
            hyperparameters=zoo,
        )
        seconds = time.perf_counter() - started
        if task == "binary":
            proba = predictor.predict_proba(features)
            classes = [str(c) for c in proba.columns]
            predictions = proba.to_numpy().tolist()
        elif task == "multiclass":
            classes = [str(c) for c in predictor.class_labels]
            predictions = [str(v) for v in predictor.predict(features)]
        else:
            classes = []
            predictions = [float(v) for v in predictor.predict(features)]
        best = str(predictor.model_best)
        # The ensemble wins nearly always; its best single model says which family carried it.
        board = predictor.leaderboard(silent=True)
        single = board[~board["model"].str.startswith("WeightedEnsemble")]
        if best.startswith("WeightedEnsemble") and len(single):
            best += f" (best single: {single.iloc[0]['model']})"
    finally:
        shutil.rmtree(models, ignore_errors=True)
    with open(out, "w") as handle:
        json.dump(
            {
                "predictions": predictions,
                "classes": classes,
                "seconds": seconds,
                "best_estimator": best,
                "families": sorted(zoo),
                "version": autogluon_version,
            },
            handle,
        )


if __name__ == "__main__":
    pd.options.mode.copy_on_write = True
    main()
