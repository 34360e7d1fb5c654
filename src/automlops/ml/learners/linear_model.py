"""Regularised linear models, fitted with scikit-learn and stored as coefficients in JSON.

Prediction is plain numpy on the stored numbers, so loading runs no library code at all.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import orjson

from automlops.config import Task
from automlops.ml.explain.records import FeatureContributions
from automlops.ml.learners.base import FitJob, normalise

MODEL_FILE = "model.linear.json"

MAX_ITER = 300  # L-BFGS iterations of a logistic fit
# With a deadline the logistic fit runs in chunks of iterations (warm-started), the first
# of FIRST_CHUNK, each next one twice the last up to MAX_CHUNK, and stops between chunks once
# the next would end past it: its iteration cap is the time left. A small first chunk keeps
# the overrun of a slow one small; doubling keeps the restarts few.
FIRST_CHUNK = 5
MAX_CHUNK = 80


class LinearModel:
    learner = "linear"
    model_file = MODEL_FILE
    rounds = None
    capped = False  # set by a fit whose iterations stopped for its deadline, not convergence

    def __init__(
        self,
        task: Task,
        mean: np.ndarray,
        scale: np.ndarray,
        coef: np.ndarray,
        intercept: np.ndarray,
    ) -> None:
        self.task = task
        self.mean = mean
        self.scale = scale
        self.coef = coef  # (k, n_features); k = 1 for binary and regression
        self.intercept = intercept

    def predict(self, features: np.ndarray) -> np.ndarray:
        z = ((features - self.mean) / self.scale) @ self.coef.T + self.intercept
        if self.task is Task.regression:
            return z[:, 0]
        if self.task is Task.binary:
            return 1.0 / (1.0 + np.exp(-np.clip(z[:, 0], -500, 500)))
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def contributions(self, features: np.ndarray, task: Task) -> FeatureContributions:
        """Coefficient x the value centred on its training mean (in standard units, as the
        coefficients are); the base is the intercept, the score of the training means."""
        standard = (features - self.mean) / self.scale
        values = standard[:, None, :] * self.coef[None, :, :]
        base = np.broadcast_to(self.intercept, values.shape[:2]).astype(np.float64)
        return FeatureContributions(values=values.astype(np.float64), base=base)

    def save(self) -> bytes:
        return orjson.dumps(
            {
                "task": self.task.value,
                "mean": self.mean.tolist(),
                "scale": self.scale.tolist(),
                "coef": self.coef.tolist(),
                "intercept": self.intercept.tolist(),
            }
        )

    def importances(self, feature_names: list[str]) -> dict[str, float]:
        # Standardised inputs make coefficient sizes comparable across features.
        weights = np.abs(self.coef).sum(axis=0)
        return normalise({n: float(w) for n, w in zip(feature_names, weights, strict=False)})


class LinearLearner:
    name = "linear"
    model_file = MODEL_FILE

    def portfolio(self, task: Task, n_rows: int) -> list[dict[str, Any]]:
        # A search asks for its portfolio before its first trial: scikit-learn's solvers are
        # imported now (seconds on a busy machine), not inside the first linear trial, whose
        # duration the time kept back for its refit is estimated from. Loading a model for
        # serving never comes here and never imports them.
        import sklearn.linear_model  # noqa: F401

        return [{"learner": self.name, "linear.C": 1.0, "linear.balanced": False}]

    def suggest(self, trial: Any, task: Task, n_rows: int) -> dict[str, Any]:
        return {
            "C": trial.suggest_float("linear.C", 1e-4, 1e2, log=True),
            "balanced": trial.suggest_categorical("linear.balanced", [False, True])
            if task is not Task.regression
            else False,
        }

    def fit(self, params: dict[str, Any], job: FitJob) -> LinearModel:
        from sklearn.linear_model import LogisticRegression, Ridge
        from threadpoolctl import threadpool_limits

        task, n_classes, seed = job.task, job.n_classes, job.seed
        features, y = job.train
        mean = features.mean(axis=0)
        scale = features.std(axis=0)
        scale[scale == 0] = 1.0
        standard = (features - mean) / scale
        c = float(params.get("C", 1.0))
        capped = False  # Ridge is solved in one step: nothing to cap
        if task is Task.regression:
            model = Ridge(alpha=1.0 / c, random_state=seed).fit(standard, y)
            coef = np.atleast_2d(model.coef_)
            intercept = np.atleast_1d(model.intercept_)
        else:
            model = LogisticRegression(
                C=c,
                class_weight="balanced" if params.get("balanced") else None,
                max_iter=MAX_ITER if job.deadline is None else FIRST_CHUNK,
                warm_start=job.deadline is not None,
                random_state=seed,
            )
            # L-BFGS's matrix products run on BLAS threads, which spin while they wait: held to
            # the fit's threads, as the boosting libraries are (one on small data).
            with threadpool_limits(limits=job.nthread, user_api="blas"):
                capped = _fit_until(model, standard, y, job.deadline)
            coef, intercept = model.coef_, model.intercept_
            if task is Task.multiclass and coef.shape[0] != n_classes:
                coef, intercept = _all_classes(model.classes_, coef, intercept, n_classes)
        fitted = LinearModel(task, mean, scale, np.asarray(coef), np.asarray(intercept))
        fitted.capped = capped
        return fitted

    def load(self, data: bytes, task: Task, n_classes: int, *, nthread: int = 1) -> LinearModel:
        raw = orjson.loads(data)
        return LinearModel(
            Task(raw["task"]),
            np.asarray(raw["mean"]),
            np.asarray(raw["scale"]),
            np.asarray(raw["coef"]),
            np.asarray(raw["intercept"]),
        )


def _fit_until(model: Any, x: np.ndarray, y: np.ndarray, deadline: float | None) -> bool:
    """Fits `model` (a warm-starting LogisticRegression when `deadline` is set) until it
    converges, reaches MAX_ITER, or the next chunk of iterations would end past `deadline`
    (the last chunk's duration, scaled to the next one's size, is the estimate). The first
    chunk always runs: a model cut short still predicts, from a few iterations' coefficients.
    Chunks restart L-BFGS's curvature memory, so a bounded fit converges to the same optimum
    as an unbounded one, not through the same iterates. True when the deadline stopped it."""
    from sklearn.exceptions import ConvergenceWarning

    done = 0
    with warnings.catch_warnings():
        # A capped fit is expected under a deadline; the search scores what it gives.
        if deadline is not None:
            warnings.simplefilter("ignore", ConvergenceWarning)
        while True:
            began = time.monotonic()
            model.fit(x, y)
            done += model.max_iter
            converged = int(np.max(model.n_iter_)) < model.max_iter
            if deadline is None or converged or done >= MAX_ITER:
                return False
            chunk = min(2 * model.max_iter, MAX_CHUNK, MAX_ITER - done)
            now = time.monotonic()
            if now + (now - began) * chunk / model.max_iter > deadline:
                return True
            model.max_iter = chunk


def _all_classes(
    classes: np.ndarray, coef: np.ndarray, intercept: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    # A class absent from the training rows gets a very low score rather than no column.
    full_coef = np.zeros((n_classes, coef.shape[1]))
    full_intercept = np.full(n_classes, -50.0)
    full_coef[classes] = coef
    full_intercept[classes] = intercept
    return full_coef, full_intercept
