"""Hyperparameter search within a time budget: Optuna's TPE sampler over several learner
families, median pruning, selection on held-out predictions, then a refit on all rows.

Selection data depends on size: small data sets are scored by k-fold cross-validation over
the training and validation rows (a 20 % validation split of a few hundred rows is too noisy
to choose by); larger ones by the validation split. Big ones are tuned on samples: trials fit
on a stratified sample of at most TUNE_MAX_TRAIN_ROWS training rows and are scored on at most
TUNE_MAX_VALID_ROWS validation rows (a trial on millions of rows would leave one or two trials
in the budget; beyond a few hundred thousand rows more rows barely change which settings
win). The chosen configuration is then refitted on every training and validation row, after
the search: the budget is the search's, and the refit of a sampled search comes on top (at
most REFIT_BUDGET_SHARE times the budget; boosting stops adding rounds there).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold

from automlops.config import Task
from automlops.ml.learners.base import SMALL_DATA_ROWS, Data, Learner, Model
from automlops.ml.learners.catalog import LEARNER_NAMES, learner
from automlops.ml.learners.ensemble import ENSEMBLE, EnsembleModel, Member, select_weights
from automlops.ml.splits import sample_indices

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Validation score the search maximises, per task (losses negated).
SELECTION_METRIC = {Task.binary: "roc_auc", Task.multiclass: "-log_loss", Task.regression: "-rmse"}
CV_MAX_ROWS = SMALL_DATA_ROWS  # below this many rows, select by cross-validation
CV_FOLDS = 5
TUNE_MAX_TRAIN_ROWS = 100_000  # trials fit on a stratified sample of this many rows at most
TUNE_MAX_VALID_ROWS = 50_000  # and are scored on this many validation rows at most
ENSEMBLE_CANDIDATES = 3  # best trials kept for an ensemble, beside each family's best
ENSEMBLE_GRACE_SHARE = 0.03  # an ensemble's refits may end this share of the budget late
REFIT_BUDGET_SHARE = 2.0  # a sampled search's refit on all rows may take this share of the budget


def validation_score(task: Task, y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Higher is better: ROC AUC, negative log loss, or negative RMSE."""
    if task is Task.binary:
        return float(roc_auc_score(y, pred)) if len(np.unique(y)) == 2 else 0.0
    if task is Task.multiclass:
        proba = np.clip(pred.reshape(len(y), n_classes), 1e-15, 1.0)
        proba = proba / proba.sum(axis=1, keepdims=True)
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
    selection: str  # "5-fold cross-validation" or "validation split"
    refit: str  # what the final model was trained on
    # Out-of-sample predictions of the chosen configuration and their labels: the validation
    # split, or every row's out-of-fold prediction. The binary threshold is tuned on these.
    heldout_y: np.ndarray
    heldout_pred: np.ndarray
    trials: list[TrialRecord] = field(default_factory=list)
    # Rows the trials were fitted and scored on (samples of a big data set: fewer than given).
    search_rows: tuple[int, int] = (0, 0)


def search_sample(task: Task, data: Data, limit: int, seed: int) -> Data:
    """`data` itself when it has at most `limit` rows, else a seeded sample of that many
    (stratified by class for classification)."""
    y = data[1]
    if len(y) <= limit:
        return data
    strata = None if task is Task.regression else y
    rows = sample_indices(len(y), limit, seed=seed, strata=strata)
    return data[0][rows], y[rows]


class BudgetSpent(Exception):
    """No trial finished within the budget."""


@dataclass(eq=False)  # identity: `in` must not compare prediction arrays
class _Candidate:
    number: int  # its trial
    score: float
    learner: str
    params: dict[str, Any]
    rounds: int | None
    pred: np.ndarray
    model: Model | None  # holdout mode: the model itself
    duration_s: float  # of its trial: what a refit on all rows is estimated from


def _folds(task: Task, y: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if task is Task.regression:
        splitter: Any = KFold(CV_FOLDS, shuffle=True, random_state=seed)
    else:
        smallest = int(np.bincount(y.astype(int)).min(initial=0)) if len(y) else 0
        if smallest < CV_FOLDS:
            splitter = KFold(CV_FOLDS, shuffle=True, random_state=seed)
        else:
            splitter = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


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
    ensemble: bool = True,
    progress: Callable[[TuningProgress], None] | None = None,
) -> TuningResult:
    """Search learners and parameters for `budget_s` seconds; returns the refitted best model,
    or, when `ensemble` is set and averaging the best trials scores higher on the held-out
    predictions, a weighted ensemble of them (see `automlops.ml.learners.ensemble`).

    The first trials are each family's sound defaults (the reference's XGBoost settings
    among them), the cheap linear model first, so even a tiny budget yields a reasonable model
    and every later trial can be cut at the deadline. The sampler is seeded, so the sequence
    of trials is reproducible; how many run depends on the budget.
    """
    start = time.monotonic()
    deadline = start + budget_s
    families = {name: learner(name) for name in learners}
    full_train, full_validation = train, validation
    train = search_sample(task, train, TUNE_MAX_TRAIN_ROWS, seed)
    validation = search_sample(task, validation, TUNE_MAX_VALID_ROWS, seed + 1)
    sampled = len(train[1]) < len(full_train[1]) or len(validation[1]) < len(full_validation[1])
    all_x = np.concatenate([full_train[0], full_validation[0]])
    all_y = np.concatenate([full_train[1], full_validation[1]])
    use_cv = len(all_y) < CV_MAX_ROWS
    folds = _folds(task, all_y, seed) if use_cv else []
    held_y = all_y if use_cv else validation[1]
    # A sampled search's refit on all rows is long and bounded separately: one model only.
    ensemble = ensemble and not sampled

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=len(families) + 4)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=len(families) + 2, n_warmup_steps=20)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    for family in sorted(families.values(), key=lambda f: f.name != "linear"):
        study.enqueue_trial(family.defaults(task, len(all_y)))

    records: list[TrialRecord] = []
    pool: list[_Candidate] = []  # completed trials kept for the final choice, best first
    # Time a refit on all rows takes, as a share of a trial's time. A sampled search keeps
    # nothing back: its refit on all rows comes after the budget.
    refit_share = 1.0 / CV_FOLDS * 1.3 if use_cv else len(all_y) / max(len(train[1]), 1)
    if sampled:
        refit_share = 0.0
    reserve = [0.0]  # time kept back for the final refit(s)

    def refit_time(candidates: list[_Candidate]) -> float:
        return sum(c.duration_s for c in candidates) * refit_share

    def family_bests() -> list[_Candidate]:
        bests: dict[str, _Candidate] = {}
        for c in pool:  # best first
            bests.setdefault(c.learner, c)
        return list(bests.values())

    def keep(candidate: _Candidate) -> None:
        pool.append(candidate)
        pool.sort(key=lambda c: -c.score)
        bests = family_bests()
        pool[:] = [c for i, c in enumerate(pool) if i < ENSEMBLE_CANDIDATES or c in bests]
        # Cross-validation leaves no trial model to fall back on, so an ensemble's refits
        # are reserved for in advance (each family's best: the likely members).
        reserve[0] = refit_time(bests if ensemble and use_cv else pool[:1])

    def search_over() -> bool:
        # The first trial always completes: a model slightly late beats no model.
        return bool(pool) and time.monotonic() > deadline - reserve[0]

    def evaluate(
        trial: optuna.Trial, family: Learner, params: dict[str, Any]
    ) -> tuple[float, np.ndarray, int | None, Model | None, bool]:
        pruned = False

        def on_round(step: int, score: float) -> bool:
            nonlocal pruned
            if search_over():
                return True  # out of time: keep what was learnt so far
            if use_cv:
                return False  # cross-validation prunes between folds instead
            trial.report(score, step)
            if trial.should_prune():
                pruned = True
                return True
            return False

        def fit(data: Data, held: Data) -> Model:
            return family.fit(
                task, n_classes, data, held, params, seed=seed, nthread=nthread, on_round=on_round
            )

        if not use_cv:
            model = fit(train, validation)
            pred = model.predict(validation[0])
            score = validation_score(task, validation[1], pred, n_classes)
            return score, pred, model.rounds, model, pruned
        oof = np.zeros((len(all_y), n_classes) if task is Task.multiclass else len(all_y))
        rounds = []
        for i, (fit_idx, held_idx) in enumerate(folds):
            model = fit((all_x[fit_idx], all_y[fit_idx]), (all_x[held_idx], all_y[held_idx]))
            oof[held_idx] = model.predict(all_x[held_idx]).reshape(oof[held_idx].shape)
            if model.rounds is not None:
                rounds.append(model.rounds)
            seen = np.concatenate([h for _, h in folds[: i + 1]])
            trial.report(validation_score(task, all_y[seen], oof[seen], n_classes), i)
            if i < len(folds) - 1 and (trial.should_prune() or search_over()):
                return math.nan, oof, None, None, True
        score = validation_score(task, all_y, oof, n_classes)
        return score, oof, (int(np.mean(rounds)) if rounds else None), None, pruned

    def objective(trial: optuna.Trial) -> float:
        name = trial.suggest_categorical("learner", list(families))
        params = families[name].suggest(trial, task, len(all_y))
        began = time.monotonic()
        try:
            score, pred, rounds, model, pruned = evaluate(trial, families[name], params)
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
            TrialRecord(
                trial.number,
                name,
                params,
                state,
                None if math.isnan(score) else score,
                duration,
                rounds,
            )
        )
        if not pruned and math.isfinite(score):
            keep(_Candidate(trial.number, score, name, params, rounds, pred, model, duration))
        if progress is not None:
            progress(
                TuningProgress(
                    trial=trial.number + 1,
                    learner=name,
                    score=None if math.isnan(score) else score,
                    best=pool[0].score if pool else None,
                    best_learner=pool[0].learner if pool else None,
                    elapsed_s=time.monotonic() - start,
                    budget_s=budget_s,
                )
            )
        if pruned:
            raise optuna.TrialPruned()
        return score

    def stop_when_spent(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        if search_over():
            study.stop()

    study.optimize(
        objective, timeout=max(budget_s, 0.001), callbacks=[stop_when_spent], gc_after_trial=False
    )
    if not pool:
        raise BudgetSpent("no trial completed within the time budget")

    def held_score(pred: np.ndarray) -> float:
        return validation_score(task, held_y, pred, n_classes)

    def affordable(candidates: list[_Candidate]) -> bool:
        # Holdout mode can always fall back on the trial models; cross-validation must refit.
        # The search stopped as the time left fell below the reserve, so a refit costing the
        # reserve overruns by a moment: a small grace allows for that.
        grace = ENSEMBLE_GRACE_SHARE * budget_s
        return not use_cv or time.monotonic() + refit_time(candidates) <= deadline + grace

    def refit_params(c: _Candidate) -> dict[str, Any]:
        return _refit_params(c, len(all_y), len(full_train[1]), use_cv)

    def refit(c: _Candidate, refit_deadline: float | None = None) -> Model:
        return families[c.learner].fit(
            task,
            n_classes,
            (all_x, all_y),
            (all_x[:0], all_y[:0]),
            refit_params(c),
            seed=seed,
            nthread=nthread,
            deadline=refit_deadline,
        )

    def no_time_to_refit(c: _Candidate) -> bool:
        # Holdout mode keeps each trial's model to fall back on; a sampled search always
        # refits (after the budget, bounded separately).
        return not sampled and c.model is not None and time.monotonic() + refit_time([c]) > deadline

    def single(chosen: _Candidate) -> TuningResult:
        params = refit_params(chosen)
        pred = chosen.pred
        if no_time_to_refit(chosen):
            assert chosen.model is not None
            final = chosen.model  # keep the model selected on validation
            refitted = f"the {len(train[1])} training rows only (no time left to refit on all rows)"
        else:
            # The refit of a sampled search comes after the budget and may take
            # REFIT_BUDGET_SHARE of it again; boosting stops adding rounds there.
            refit_deadline = time.monotonic() + REFIT_BUDGET_SHARE * budget_s if sampled else None
            final = refit(chosen, refit_deadline)
            refitted = f"all {len(all_y)} training and validation rows"
            wanted = params.get("rounds")
            short = wanted is not None and final.rounds is not None and final.rounds < wanted
            if short and refit_deadline is None:
                # LightGBM ends by itself once no leaf can be split: a whole model, whose
                # held-out predictions are still the selected trial's.
                refitted += f"; {final.rounds} of {wanted} rounds (no further split possible)"
            elif short:
                refitted += f"; stopped at {final.rounds} of {wanted} rounds (refit time limit)"
                # A shorter model's probabilities differ: the threshold is tuned on its own
                # predictions of the validation rows (seen in the refit, but few rounds
                # overfit little) rather than on the selected trial's.
                pred = final.predict(validation[0])
        return TuningResult(
            model=final,
            learner=chosen.learner,
            params=params,
            score=chosen.score,
            metric=SELECTION_METRIC[task],
            selection=_selection(use_cv, sampled, train, validation),
            refit=refitted,
            heldout_y=held_y,
            heldout_pred=pred,
            trials=records,
            search_rows=(len(train[1]), len(validation[1])),
        )

    # (weight, candidate) pairs, heaviest first.
    members: list[tuple[float, _Candidate]] = [(1.0, pool[0])]
    if ensemble and len(pool) > 1:
        for candidates in (pool, family_bests()):
            if len(candidates) < 2:
                continue
            weights = select_weights([c.pred for c in candidates], held_score)
            picked = sorted(
                ((w, c) for w, c in zip(weights, candidates, strict=True) if w > 0),
                key=lambda wc: -wc[0],
            )
            if affordable([c for _, c in picked]):
                members = picked
                break
    if len(members) == 1:
        return single(pool[0])

    fitted: list[Member] = []
    notes: list[str] = []
    for weight, c in members:
        if no_time_to_refit(c):
            assert c.model is not None
            fitted.append(Member(weight, c.model))  # the trial's own model
            notes.append(f"{c.learner} #{c.number} on the training rows only")
        else:
            fitted.append(Member(weight, refit(c)))
    blend = sum(weight * c.pred for weight, c in members)
    described = ", ".join(f"{c.learner} #{c.number} {weight:.2f}" for weight, c in members)
    refitted = f"each member on all {len(all_y)} training and validation rows"
    if notes:
        refitted += " except " + "; ".join(notes) + " (no time left to refit)"
    return TuningResult(
        model=EnsembleModel(fitted),
        learner=ENSEMBLE,
        params={
            "members": [
                {
                    "trial": c.number,
                    "learner": c.learner,
                    "weight": weight,
                    "params": c.params,
                    "rounds": c.rounds,
                }
                for weight, c in members
            ]
        },
        score=held_score(blend),
        metric=SELECTION_METRIC[task],
        selection=_selection(use_cv, sampled, train, validation)
        + f"; ensemble of {described} (weights chosen on the same held-out predictions)",
        refit=refitted,
        heldout_y=held_y,
        heldout_pred=blend,
        trials=records,
        search_rows=(len(train[1]), len(validation[1])),
    )


def _selection(use_cv: bool, sampled: bool, train: Data, validation: Data) -> str:
    if use_cv:
        return f"{CV_FOLDS}-fold cross-validation"
    if sampled:
        return (
            f"validation split (trials on a sample: {len(train[1])} training, "
            f"{len(validation[1])} validation rows)"
        )
    return "validation split"


def _refit_params(
    candidate: _Candidate, all_rows: int, train_rows: int, use_cv: bool
) -> dict[str, Any]:
    """The candidate's parameters for a refit on all rows: boosting keeps the selected round
    count, scaled for the extra rows as the validation split's share of all rows (a sample's
    early stop says nothing about a further factor of rows)."""
    params = dict(candidate.params)
    if candidate.rounds is not None:
        fitted_on = all_rows * (CV_FOLDS - 1) / CV_FOLDS if use_cv else train_rows
        params["rounds"] = max(1, round(candidate.rounds * all_rows / fitted_on))
    return params
