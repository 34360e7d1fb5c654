"""Hyperparameter search within a time budget: Optuna's TPE sampler over several learner
families, median pruning on the validation curve, selection on validation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from sklearn.metrics import log_loss, roc_auc_score

from automlops.config import Task
from automlops.ml.learners import LEARNER_NAMES, Data, Model, learner

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Validation score the search maximises, per task (losses negated).
SELECTION_METRIC = {Task.binary: "roc_auc", Task.multiclass: "-log_loss", Task.regression: "-rmse"}


def validation_score(task: Task, y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Higher is better: ROC AUC, negative log loss, or negative RMSE."""
    if task is Task.binary:
        return float(roc_auc_score(y, pred)) if len(np.unique(y)) == 2 else 0.0
    if task is Task.multiclass:
        proba = np.clip(pred.reshape(len(y), n_classes), 1e-15, 1.0)
        return -float(log_loss(y, proba, labels=list(range(n_classes))))
    return -float(np.sqrt(np.mean((y - pred) ** 2)))


@dataclass
class TrialRecord:
    number: int
    learner: str
    params: dict[str, Any]
    state: str  # complete | pruned | failed
    score: float | None
    duration_s: float
    rounds: int | None = None
    error: str | None = None


@dataclass
class TuningProgress:
    trial: int
    learner: str
    score: float | None
    best: float | None
    best_learner: str | None
    elapsed_s: float
    budget_s: float


@dataclass
class TuningResult:
    model: Model
    learner: str
    params: dict[str, Any]
    score: float
    metric: str
    trials: list[TrialRecord] = field(default_factory=list)


class BudgetSpent(Exception):
    """No trial finished within the budget."""


def tune(
    task: Task,
    n_classes: int,
    train: Data,
    validation: Data,
    *,
    budget_s: float,
    seed: int,
    nthread: int = 2,
    learners: tuple[str, ...] = LEARNER_NAMES,
    progress: Callable[[TuningProgress], None] | None = None,
) -> TuningResult:
    """Search learners and parameters for `budget_s` seconds; returns the best model.

    The first trials are each family's sound defaults (the reference's XGBoost settings
    among them), so even a tiny budget yields a reasonable model. The sampler is seeded, so
    the sequence of trials is reproducible; how many run depends on the budget.
    """
    start = time.monotonic()
    deadline = start + budget_s
    families = {name: learner(name) for name in learners}
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=len(families) + 4)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=len(families) + 2, n_warmup_steps=20)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    for family in families.values():
        study.enqueue_trial(family.defaults(task))

    records: list[TrialRecord] = []
    best: dict[str, Any] = {}

    def objective(trial: optuna.Trial) -> float:
        name = trial.suggest_categorical("learner", list(families))
        family = families[name]
        params = family.suggest(trial, task, len(train[1]))
        began = time.monotonic()
        pruned = False

        def on_round(step: int, score: float) -> bool:
            nonlocal pruned
            if time.monotonic() > deadline:
                return True  # out of time: keep what was learnt so far
            trial.report(score, step)
            if trial.should_prune():
                pruned = True
                return True
            return False

        try:
            model = family.fit(
                task,
                n_classes,
                train,
                validation,
                params,
                seed=seed,
                nthread=nthread,
                on_round=on_round,
            )
            score = validation_score(task, validation[1], model.predict(validation[0]), n_classes)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # a bad parameter corner must not end the search
            records.append(
                TrialRecord(
                    trial.number,
                    name,
                    params,
                    "failed",
                    None,
                    time.monotonic() - began,
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
            raise optuna.TrialPruned() from None
        duration = time.monotonic() - began
        state = "pruned" if pruned else "complete"
        records.append(
            TrialRecord(trial.number, name, params, state, score, duration, model.rounds)
        )
        if not pruned and math.isfinite(score) and score > best.get("score", -math.inf):
            best.update(score=score, model=model, learner=name, params=params)
        if progress is not None:
            progress(
                TuningProgress(
                    trial=trial.number + 1,
                    learner=name,
                    score=score,
                    best=best.get("score"),
                    best_learner=best.get("learner"),
                    elapsed_s=time.monotonic() - start,
                    budget_s=budget_s,
                )
            )
        if pruned:
            raise optuna.TrialPruned()
        return score

    def stop_when_spent(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        if time.monotonic() >= deadline:
            study.stop()

    study.optimize(
        objective,
        timeout=max(budget_s, 0.001),
        callbacks=[stop_when_spent],
        catch=(),
        gc_after_trial=False,
    )
    if "model" not in best:
        raise BudgetSpent("no trial completed within the time budget")
    return TuningResult(
        model=best["model"],
        learner=best["learner"],
        params=best["params"],
        score=best["score"],
        metric=SELECTION_METRIC[task],
        trials=records,
    )
