"""XGBoost training and prediction for the three tasks."""

from __future__ import annotations

from typing import Any

import numpy as np
import xgboost as xgb

from automlops.config import Task

MODEL_FILE = "model.ubj"

# The reference pipeline's fixed settings; the tuner searches around them.
REFERENCE_PARAMS: dict[str, Any] = {
    "max_depth": 5,
    "eta": 0.2,
    "gamma": 4,
    "min_child_weight": 6,
    "subsample": 0.8,
}
REFERENCE_ROUNDS = 100


def objective_params(task: Task, n_classes: int) -> dict[str, Any]:
    if task is Task.binary:
        return {"objective": "binary:logistic", "eval_metric": "auc"}
    if task is Task.multiclass:
        return {"objective": "multi:softprob", "num_class": n_classes, "eval_metric": "mlogloss"}
    return {"objective": "reg:squarederror", "eval_metric": "rmse"}


def fit(
    task: Task,
    n_classes: int,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    *,
    params: dict[str, Any],
    rounds: int,
    seed: int,
    nthread: int = 0,
    early_stopping: int = 10,
) -> xgb.Booster:
    """Train with early stopping on validation; the returned booster ends at its best round."""
    dtrain = xgb.DMatrix(train[0], label=train[1], nthread=nthread)
    dvalid = xgb.DMatrix(validation[0], label=validation[1], nthread=nthread)
    booster = xgb.train(
        {
            **objective_params(task, n_classes),
            **params,
            "seed": seed,
            "nthread": nthread,
            "tree_method": "hist",
            "verbosity": 0,
        },
        dtrain,
        num_boost_round=rounds,
        evals=[(dvalid, "validation")],
        early_stopping_rounds=early_stopping if len(validation[1]) else None,
        verbose_eval=False,
    )
    best = getattr(booster, "best_iteration", None)
    if best is not None and best + 1 < booster.num_boosted_rounds():
        booster = booster[: best + 1]
    return booster


def save(booster: xgb.Booster) -> bytes:
    """The booster in XGBoost's own UBJSON format."""
    return bytes(booster.save_raw(raw_format="ubj"))


def load(data: bytes, *, nthread: int = 1) -> xgb.Booster:
    """Load a booster; one thread by default (idle XGBoost threads spin on small machines)."""
    booster = xgb.Booster(params={"nthread": nthread})
    booster.load_model(bytearray(data))
    return booster


def predict(booster: xgb.Booster, features: np.ndarray, task: Task) -> np.ndarray:
    """binary: P(positive) (n,); multiclass: probabilities (n, k); regression: values (n,)."""
    out = booster.inplace_predict(features, validate_features=False)
    return np.asarray(out, dtype=np.float64)
