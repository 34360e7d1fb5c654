"""LightGBM: leaf-wise gradient-boosted trees, saved in LightGBM's text format."""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np

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

MODEL_FILE = "model.lgb.txt"


# Stopping on log loss: see `objective`.
OBJECTIVES: dict[Task, dict[str, Any]] = {
    Task.binary: {"objective": "binary", "metric": "binary_logloss"},
    Task.multiclass: {"objective": "multiclass", "metric": "multi_logloss"},
    Task.regression: {"objective": "regression", "metric": "rmse"},
}


class LightGBMModel:
    learner = "lightgbm"
    model_file = MODEL_FILE

    def __init__(self, booster: lgb.Booster, nthread: int = 1) -> None:
        self.booster = booster
        self.nthread = nthread

    @property
    def rounds(self) -> int:
        return self.booster.current_iteration()

    def predict(self, features: np.ndarray) -> np.ndarray:
        out = self.booster.predict(features, num_threads=self.nthread)
        return np.asarray(out, dtype=np.float64)

    def save(self) -> bytes:
        return self.booster.model_to_string().encode()

    def contributions(self, features: np.ndarray, task: Task) -> FeatureContributions:
        """Exact TreeSHAP values on the raw score: our compiled TreeSHAP over the booster's
        trees (built on the first call), or LightGBM's own `pred_contrib` for trees it cannot
        hold (categorical splits, linear leaves)."""
        if self._treeshap is not None:
            values = self._treeshap.contributions(features, self.nthread)
            base = np.repeat(self._treeshap.base[None, :], len(values), axis=0)
            return FeatureContributions(values=values, base=base)
        out = self.booster.predict(features, pred_contrib=True, num_threads=self.nthread)
        # (rows, outputs * (features + 1)), class by class; the last of each block is the bias.
        out = np.asarray(out, dtype=np.float64).reshape(len(features), -1, features.shape[1] + 1)
        return FeatureContributions(values=out[:, :, :-1], base=out[:, :, -1])

    @cached_property
    def _treeshap(self) -> TreeShap | None:
        # Imported at the first explanation: numba stays out of processes that never explain.
        from automlops.ml.explain.boosted import lightgbm_treeshap

        return lightgbm_treeshap(self.booster)

    def importances(self, feature_names: list[str]) -> dict[str, float]:
        gains = self.booster.feature_importance(importance_type="gain")
        return normalise({n: float(g) for n, g in zip(feature_names, gains, strict=False)})


class LightGBMLearner:
    name = "lightgbm"
    model_file = MODEL_FILE

    def portfolio(self, task: Task, n_rows: int) -> list[dict[str, Any]]:
        # First the default: on small data, random split thresholds regularise strongly and
        # stop sooner, and a higher rate keeps a first trial over many classes and five
        # folds short. Then the complements that differ most from it: few leaves at a lower
        # rate (the best or near it on four small regression sets), and the library's usual
        # shape (31 leaves, exact thresholds: the best LightGBM on one of them).
        small = n_rows < SMALL_DATA_ROWS
        default = _config(leaves=31, rate=0.1 if small else 0.05, fraction=0.9, extra=small)
        few_leaves = _config(leaves=8, rate=0.05, fraction=0.8, extra=False, min_child=30)
        usual = _config(leaves=31, rate=0.05, fraction=0.9, extra=not small)
        return [default, few_leaves, usual]

    def suggest(self, trial: Any, task: Task, n_rows: int) -> dict[str, Any]:
        p = "lightgbm."
        return {
            "num_leaves": trial.suggest_int(p + "num_leaves", 4, 256, log=True),
            "learning_rate": trial.suggest_float(p + "learning_rate", 0.01, 0.3, log=True),
            "min_child_samples": trial.suggest_int(p + "min_child_samples", 2, 200, log=True),
            "feature_fraction": trial.suggest_float(p + "feature_fraction", 0.3, 1.0),
            "bagging_fraction": trial.suggest_float(p + "bagging_fraction", 0.5, 1.0),
            "lambda_l2": trial.suggest_float(p + "lambda_l2", 1e-3, 30.0, log=True),
            # Random split thresholds: a strong regulariser on small or noisy data.
            "extra_trees": trial.suggest_categorical(p + "extra_trees", [False, True]),
            "balanced": trial.suggest_categorical(p + "balanced", [False, True])
            if task is Task.binary
            else False,
        }

    def fit(self, params: dict[str, Any], job: FitJob) -> LightGBMModel:
        rounds, params = boosting_params(params, job)
        config = {
            **objective(OBJECTIVES, job.task, job.n_classes),
            **params,
            "bagging_freq": 1 if params.get("bagging_fraction", 1.0) < 1.0 else 0,
            "seed": job.seed,
            "deterministic": True,
            "num_threads": job.nthread,
            "verbosity": -1,
        }
        (x, y), (valid_x, valid_y) = job.train, job.validation
        dtrain = lgb.Dataset(x, label=y, free_raw_data=True)
        callbacks: list[Any] = []
        valid_sets = []
        if job.has_validation:
            valid_sets = [lgb.Dataset(valid_x, label=valid_y, reference=dtrain)]
            callbacks.append(lgb.early_stopping(PATIENCE, verbose=False))
            if job.on_round is not None:
                callbacks.append(_reporter(job.on_round))
        if job.deadline is not None:
            callbacks.append(_deadline(job.deadline))
        booster = lgb.train(
            config, dtrain, num_boost_round=rounds, valid_sets=valid_sets, callbacks=callbacks
        )
        if booster.best_iteration and booster.best_iteration < booster.current_iteration():
            booster = lgb.Booster(model_str=booster.model_to_string(booster.best_iteration))
        return LightGBMModel(booster, job.nthread)

    def load(self, data: bytes, task: Task, n_classes: int, *, nthread: int = 1) -> LightGBMModel:
        return LightGBMModel(lgb.Booster(model_str=data.decode()), nthread)


def _config(
    *, leaves: int, rate: float, fraction: float, extra: bool, min_child: int = 20
) -> dict[str, Any]:
    """One configuration as Optuna trial parameters (named as `suggest` names them)."""
    return {
        "learner": LightGBMLearner.name,
        "lightgbm.num_leaves": leaves,
        "lightgbm.learning_rate": rate,
        "lightgbm.min_child_samples": min_child,
        "lightgbm.feature_fraction": fraction,
        "lightgbm.bagging_fraction": fraction,
        "lightgbm.lambda_l2": 1.0,
        "lightgbm.extra_trees": extra,
        "lightgbm.balanced": False,
    }


def _deadline(deadline: float) -> Any:
    """Stops adding rounds once the monotonic clock passes the deadline."""

    def callback(env: Any) -> None:
        if time.monotonic() > deadline:
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list or [])

    # LightGBM orders callbacks by an `order` attribute it reads off the function object;
    # mypy knows no attributes on functions.
    callback.order = 50  # type: ignore[attr-defined]
    return callback


def _reporter(on_round: RoundCallback) -> Any:
    def callback(env: Any) -> None:
        if env.iteration % REPORT_EVERY or not env.evaluation_result_list:
            return
        _, _, value, higher_is_better = env.evaluation_result_list[0][:4]
        score = value if higher_is_better else -value
        if on_round(env.iteration, float(score)):
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)

    callback.order = 40  # type: ignore[attr-defined]  # see _deadline
    return callback
