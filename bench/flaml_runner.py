"""Runs FLAML on our training rows and predicts our held-out rows (in its own virtualenv).

Usage: flaml_runner.py TRAIN.parquet TEST.parquet TARGET TASK BUDGET_S SEED OUT.json
Writes {"predictions": [...], "classes": [...], "seconds": s, "best_estimator": name}.
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
from flaml import AutoML

METRIC = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "rmse"}


def main() -> None:
    train_path, test_path, target, task, budget, seed, out = sys.argv[1:8]
    train = pd.read_parquet(train_path)
    test = pd.read_parquet(test_path)
    x_train, y_train = train.drop(columns=[target]), train[target].astype(str)
    if task == "regression":
        y_train = train[target].astype(float)
    for frame in (x_train, test):
        for column in frame.columns:
            if frame[column].dtype == object:
                frame[column] = frame[column].astype("category")
    automl = AutoML()
    started = time.perf_counter()
    automl.fit(
        x_train,
        y_train,
        task="classification" if task != "regression" else "regression",
        metric=METRIC[task],
        time_budget=float(budget),
        seed=int(seed),
        n_jobs=2,
        verbose=0,
    )
    seconds = time.perf_counter() - started
    features = test.drop(columns=[target])
    if task == "binary":
        proba = automl.predict_proba(features)
        predictions = proba.tolist()
    elif task == "multiclass":
        predictions = [str(v) for v in automl.predict(features)]
    else:
        predictions = [float(v) for v in automl.predict(features)]
    classes = [str(c) for c in getattr(automl, "classes_", [])]
    with open(out, "w") as handle:
        json.dump(
            {
                "predictions": predictions,
                "classes": classes,
                "seconds": seconds,
                "best_estimator": automl.best_estimator,
            },
            handle,
        )


if __name__ == "__main__":
    main()
