"""XGBoost: gradient-boosted trees, saved as UBJSON."""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import xgboost as xgb

from automlops.config import Task
from automlops.ml.explain.records import FeatureContributions
from automlops.ml.learners.base import (
    PATIENCE,
    REPORT_EVERY,
    SMALL_DATA_ROWS,
    FitJob,
    RoundCallback,
    boosting_params,
    normalise,
    objective,
)

if TYPE_CHECKING:
    from automlops.ml.explain.treeshap import TreeShap

MODEL_FILE = "model.ubj"

_QUANTILE_MIN_ROWS = 200_000
_GAMMA_MIN = 1e-3  # the search's smallest minimum loss reduction per split


# Stopping on log loss: see `objective`.
OBJECTIVES: dict[Task, dict[str, Any]] = {
    Task.binary: {"objective": "binary:logistic", "eval_metric": "logloss"},
    Task.multiclass: {"objective": "multi:softprob", "eval_metric": "mlogloss"},
    Task.regression: {"objective": "reg:squarederror", "eval_metric": "rmse"},
}


class _Report(xgb.callback.TrainingCallback):
    def __init__(self, on_round: RoundCallback, higher_is_better: bool) -> None:
        self.on_round = on_round
        self.sign = 1.0 if higher_is_better else -1.0

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
        if epoch % REPORT_EVERY:
            return False
        [history] = evals_log["validation"].values()
        return self.on_round(epoch, self.sign * float(history[-1]))


class _Deadline(xgb.callback.TrainingCallback):
    """Stops adding rounds once the monotonic clock passes the deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
        return time.monotonic() > self.deadline


class XGBoostModel:
    learner = "xgboost"
    model_file = MODEL_FILE

    def __init__(self, booster: xgb.Booster, nthread: int = 1) -> None:
        self.booster = booster
        self.nthread = nthread  # for explanations (the booster has its own setting)

    @property
    def rounds(self) -> int:
        return self.booster.num_boosted_rounds()

    def predict(self, features: np.ndarray) -> np.ndarray:
        out = self.booster.inplace_predict(features, validate_features=False)
        return np.asarray(out, dtype=np.float64)

    def save(self) -> bytes:
        return bytes(self.booster.save_raw(raw_format="ubj"))

    def contributions(self, features: np.ndarray, task: Task) -> FeatureContributions:
        """Exact TreeSHAP values on the margin: our compiled TreeSHAP over the booster's trees
        (built on the first call), or XGBoost's own `pred_contribs` for trees it cannot hold."""
        if self._treeshap is not None:
            values = self._treeshap.contributions(features, self.nthread)
            base = np.repeat(self._treeshap.base[None, :], len(values), axis=0)
            return FeatureContributions(values=values, base=base)
        # One thread to build the matrix (a copy); the booster predicts with its own threads.
        matrix = xgb.DMatrix(features, nthread=1)
        # strict_shape: (rows, outputs, features + 1) for every objective; the last is the bias.
        out = self.booster.predict(matrix, pred_contribs=True, strict_shape=True)
        out = np.asarray(out, dtype=np.float64)
        return FeatureContributions(values=out[:, :, :-1], base=out[:, :, -1])

    @cached_property
    def _treeshap(self) -> TreeShap | None:
        # Imported at the first explanation: numba stays out of processes that never explain.
        from automlops.ml.explain.boosted import xgboost_treeshap

        return xgboost_treeshap(self.booster)

    def importances(self, feature_names: list[str]) -> dict[str, float]:
        gains = self.booster.get_score(importance_type="total_gain")
        # Features are unnamed in the booster (f0, f1, ...); map back to ours.
        return normalise(
            # total_gain is one number per feature (lists are for multi-output scores).
            {name: _number(gains.get(f"f{i}", 0.0)) for i, name in enumerate(feature_names)}
        )


def _config(
    *, depth: int, eta: float, gamma: float, child: float, subsample: float, columns: float
) -> dict[str, Any]:
    """One configuration as Optuna trial parameters (named as `suggest` names them)."""
    return {
        "learner": XGBoostLearner.name,
        "xgboost.max_depth": depth,
        "xgboost.eta": eta,
        "xgboost.gamma": gamma,
        "xgboost.min_child_weight": child,
        "xgboost.subsample": subsample,
        "xgboost.colsample_bytree": columns,
        "xgboost.lambda": 1.0,
        "xgboost.balanced": False,
    }


def _number(value: float | list[float]) -> float:
    return float(sum(value)) if isinstance(value, list) else float(value)


class XGBoostLearner:
    name = "xgboost"
    model_file = MODEL_FILE

    def portfolio(self, task: Task, n_rows: int) -> list[dict[str, Any]]:
        # The reference pipeline's fixed settings (its tree shape, rate and sampling), and
        # shallow trees at a low rate; on small data (selected by cross-validation) the
        # shallow ones come first: they beat the reference on each of four small regression
        # sets (by 3 % to 16 % RMSE). gamma is an absolute loss reduction: fine for one
        # logistic output, but a softmax spreads each row's gradient over k classes (4 blocks
        # most splits), and a regression target's units are arbitrary, so those get the
        # search's smallest.
        gamma = 4.0 if task is Task.binary else _GAMMA_MIN
        reference = _config(depth=5, eta=0.2, gamma=gamma, child=6.0, subsample=0.8, columns=1.0)
        low = _GAMMA_MIN
        shallow = _config(depth=3, eta=0.05, gamma=low, child=3.0, subsample=0.8, columns=0.8)
        return [shallow, reference] if n_rows < SMALL_DATA_ROWS else [reference, shallow]

    def suggest(self, trial: Any, task: Task, n_rows: int) -> dict[str, Any]:
        p = "xgboost."
        return {
            "max_depth": trial.suggest_int(p + "max_depth", 2, 10),
            "eta": trial.suggest_float(p + "eta", 0.01, 0.3, log=True),
            "gamma": trial.suggest_float(p + "gamma", _GAMMA_MIN, 10.0, log=True),
            "min_child_weight": trial.suggest_float(p + "min_child_weight", 0.5, 50.0, log=True),
            "subsample": trial.suggest_float(p + "subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float(p + "colsample_bytree", 0.3, 1.0),
            "lambda": trial.suggest_float(p + "lambda", 1e-3, 30.0, log=True),
            "balanced": trial.suggest_categorical(p + "balanced", [False, True])
            if task is Task.binary
            else False,
        }

    def fit(self, params: dict[str, Any], job: FitJob) -> XGBoostModel:
        rounds, params = boosting_params(params, job)
        (x, y), (valid_x, valid_y) = job.train, job.validation
        nthread, has_validation = job.nthread, job.has_validation
        if has_validation or len(y) < _QUANTILE_MIN_ROWS:
            dtrain = xgb.DMatrix(x, label=y, nthread=nthread)
        else:
            # A refit on many rows: the quantised matrix "hist" trains from, built directly,
            # instead of a full copy of the features first (memory and seconds on millions).
            dtrain = xgb.QuantileDMatrix(x, label=y, nthread=nthread)
        evals = []
        if has_validation:
            evals = [(xgb.DMatrix(valid_x, label=valid_y, nthread=nthread), "validation")]
        callbacks: list[xgb.callback.TrainingCallback] = (
            []
            if job.on_round is None or not has_validation
            else [_Report(job.on_round, higher_is_better=False)]  # logloss, mlogloss, rmse
        )
        if job.deadline is not None:
            callbacks.append(_Deadline(job.deadline))
        booster = xgb.train(
            {
                **objective(OBJECTIVES, job.task, job.n_classes),
                **params,
                "seed": job.seed,
                "nthread": nthread,
                "tree_method": "hist",
                "verbosity": 0,
            },
            dtrain,
            num_boost_round=rounds,
            evals=evals,
            early_stopping_rounds=PATIENCE if has_validation else None,
            verbose_eval=False,
            callbacks=callbacks,
        )
        best = getattr(booster, "best_iteration", None)
        if best is not None and best + 1 < booster.num_boosted_rounds():
            booster = booster[: best + 1]
        return XGBoostModel(booster)

    def load(self, data: bytes, task: Task, n_classes: int, *, nthread: int = 1) -> XGBoostModel:
        # One thread by default: idle XGBoost threads spin and steal a small machine's cores.
        booster = xgb.Booster(params={"nthread": nthread})
        booster.load_model(bytearray(data))
        return XGBoostModel(booster, nthread)
