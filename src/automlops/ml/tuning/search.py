"""The search: Optuna's TPE sampler over several learner families, median pruning, selection
on held-out predictions (`rows`), then a refit on all rows (`refit`).

Optuna's separation is kept: each learner family's `suggest` is the search space, the sampler
and pruner are built in `_study`, and `_Search` is the objective with its state. `Tuner` is
the estimator a caller sees: configured in its constructor, run by `fit`, read through its
fitted attributes (`best_model_`, `selection_`, `trials_` ...), as scikit-learn's searches.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from automlops.config import Task
from automlops.ml.learners.base import Data, FitJob, Learner, Model
from automlops.ml.learners.catalog import LEARNER_NAMES, learner
from automlops.ml.tuning.candidates import Candidate, CandidatePool
from automlops.ml.tuning.outcome import Refit, Selection, TrialRecord, TrialState
from automlops.ml.tuning.refit import FinalModel, RefitCost, Refitter
from automlops.ml.tuning.rows import SearchRowSet, objective_name, validation_score

optuna.logging.set_verbosity(optuna.logging.WARNING)

TUNE_MAX_TRAIN_ROWS = 100_000  # trials fit on a stratified sample of this many rows at most
TUNE_MAX_VALID_ROWS = 50_000  # and are scored on this many validation rows at most
# Refits may end this share of the budget late: estimates err, and a refit cut short is a
# weaker model (the train stage keeps a tenth of its budget outside the search for this and
# for its own overhead, so it still ends within its budget and a little).
REFIT_GRACE_SHARE = 0.1
REFIT_BUDGET_SHARE = 0.3  # a sampled search keeps this share of the budget for its refit
MAX_THREADS = 2  # per fit, unless the caller says (see `fit_threads`)
SMALL_DATA_THREADS = 1  # per fit, on data selected by cross-validation


@dataclass(frozen=True)
class TuningProgress:
    """Reported after each trial."""

    trial: int
    learner: str
    score: float | None
    best: float | None
    best_learner: str | None
    elapsed_s: float
    budget_s: float


class BudgetSpent(Exception):
    """No trial finished within the budget."""


@dataclass(frozen=True)
class _Evaluation:
    """One trial's outcome: its held-out score and predictions."""

    score: float  # NaN when cross-validation was cut between folds
    pred: np.ndarray
    rounds: int | None
    model: Model | None  # holdout mode only
    pruned: bool
    cut: bool = False  # a fit of it was stopped by its deadline


class _Search:
    """One fit's search state: the rows, the deadline, the kept candidates and the time
    reserved for the refits."""

    def __init__(
        self,
        tuner: Tuner,
        rows: SearchRowSet,
        families: dict[str, Learner],
        start: float,
        nthread: int,
    ) -> None:
        self.tuner, self.rows, self.families = tuner, rows, families
        self.nthread = nthread
        self.start = start
        self.deadline = self.start + tuner.budget_s
        self.cost = RefitCost.of(rows, tuner.budget_s, tuner.refit_budget_share)
        self.pool = CandidatePool()
        self.records: list[TrialRecord] = []
        self.reserve = self.cost.reserve([])  # time kept back for the final refit(s)
        # A sampled search's refit is sized to its fixed reserve: one model only.
        self.ensemble = tuner.ensemble and not rows.sampled

    def over(self) -> bool:
        """Out of time (less left than the refits need); the first trial always completes,
        its fits cut short at their deadline: a weak model beats no model."""
        return bool(self.pool) and time.monotonic() > self.deadline - self.reserve

    def trial_deadline(self) -> float:
        """When a trial starting now must stop fitting (see `RefitCost.trial_deadline`)."""
        return self.cost.trial_deadline(time.monotonic(), self.deadline, self.reserve)

    def keep(self, candidate: Candidate) -> None:
        self.pool.keep(candidate)
        # Cross-validation leaves no trial model to fall back on, so an ensemble's refits
        # are reserved for in advance (each family's best: the likely members).
        members = self.pool.family_bests() if self.ensemble and self.rows.use_cv else []
        self.reserve = self.cost.reserve(members or [self.pool.best])

    def score(self, y: np.ndarray, pred: np.ndarray) -> float:
        return validation_score(self.tuner.task, y, pred, self.tuner.n_classes)

    def _fit(
        self,
        family: Learner,
        params: dict[str, Any],
        data: Data,
        held: Data,
        watch: _RoundWatch,
        deadline: float,
    ) -> Model:
        t = self.tuner
        job = FitJob(
            t.task,
            t.n_classes,
            data,
            held,
            seed=t.seed,
            nthread=self.nthread,
            on_round=watch,
            deadline=None if math.isinf(deadline) else deadline,
        )
        model = family.fit(params, job)
        # Boosting stops after its deadline; the logistic fit just before it (between chunks
        # of iterations) and says so.
        capped = bool(getattr(model, "capped", False))
        watch.cut = watch.cut or capped or time.monotonic() > deadline
        return model

    def evaluate(self, trial: optuna.Trial, family: Learner, params: dict[str, Any]) -> _Evaluation:
        """Fits and scores one configuration on the validation split or across the folds,
        every fit stopped at the trial's deadline (each fold at its share of the time left)."""
        watch = _RoundWatch(self, trial)
        rows = self.rows
        deadline = self.trial_deadline()
        if rows.use_cv and not self.pool:
            # The first cross-validated trial (small data) runs whole: a model cut to a few
            # rounds by a busy machine would make what is served depend on the machine's
            # speed. Its cost is a few fits of under SMALL_DATA_ROWS rows.
            deadline = math.inf
        if not rows.use_cv:
            model = self._fit(family, params, rows.train, rows.validation, watch, deadline)
            pred = model.predict(rows.validation[0])
            score = self.score(rows.validation[1], pred)
            return _Evaluation(score, pred, model.rounds, model, watch.pruned, watch.cut)
        x, y = rows.all_x, rows.all_y
        multiclass = self.tuner.task is Task.multiclass
        oof = np.zeros((len(y), self.tuner.n_classes) if multiclass else len(y))
        rounds = []
        for i, (fit_idx, held_idx) in enumerate(rows.folds):
            fold, held = (x[fit_idx], y[fit_idx]), (x[held_idx], y[held_idx])
            now = time.monotonic()
            fold_deadline = now + max(deadline - now, 0.0) / (len(rows.folds) - i)
            model = self._fit(family, params, fold, held, watch, fold_deadline)
            oof[held_idx] = model.predict(x[held_idx]).reshape(oof[held_idx].shape)
            if model.rounds is not None:
                rounds.append(model.rounds)
            seen = np.concatenate([h for _, h in rows.folds[: i + 1]])
            trial.report(self.score(y[seen], oof[seen]), i)
            if i < len(rows.folds) - 1 and (trial.should_prune() or self.over()):
                return _Evaluation(math.nan, oof, None, None, True, watch.cut)
        mean_rounds = int(np.mean(rounds)) if rounds else None
        return _Evaluation(self.score(y, oof), oof, mean_rounds, None, watch.pruned, watch.cut)

    def objective(self, trial: optuna.Trial) -> float:
        """Optuna's objective: suggest a family and its parameters, evaluate, record."""
        name = trial.suggest_categorical("learner", list(self.families))
        params = self.families[name].suggest(trial, self.tuner.task, len(self.rows.all_y))
        began = time.monotonic()
        try:
            ev = self.evaluate(trial, self.families[name], params)
        except Exception as exc:  # a bad parameter corner must not end the search
            error = f"{type(exc).__name__}: {exc}"
            self.records.append(
                TrialRecord(
                    number=trial.number,
                    learner=name,
                    params=params,
                    state=TrialState.failed,
                    score=None,
                    duration_s=time.monotonic() - began,
                    error=error,
                )
            )
            raise optuna.TrialPruned() from None
        duration = time.monotonic() - began
        score = None if math.isnan(ev.score) else ev.score
        state = TrialState.pruned if ev.pruned else TrialState.complete
        self.records.append(
            TrialRecord(
                number=trial.number,
                learner=name,
                params=params,
                state=state,
                score=score,
                duration_s=duration,
                rounds=ev.rounds,
                cut=ev.cut,
            )
        )
        if not ev.pruned and math.isfinite(ev.score):
            self.keep(
                Candidate(
                    trial.number, ev.score, name, params, ev.rounds, ev.pred, ev.model, duration
                )
            )
        self.report(trial.number + 1, name, score)
        if ev.pruned:
            raise optuna.TrialPruned()
        return ev.score

    def report(self, trial: int, name: str, score: float | None) -> None:
        if self.tuner.progress is None:
            return
        best = self.pool.best if self.pool else None
        self.tuner.progress(
            TuningProgress(
                trial=trial,
                learner=name,
                score=score,
                best=None if best is None else best.score,
                best_learner=None if best is None else best.learner,
                elapsed_s=time.monotonic() - self.start,
                budget_s=self.tuner.budget_s,
            )
        )

    def stop_when_spent(self, study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        if self.over():
            study.stop()

    def affordable(self, candidates: list[Candidate]) -> bool:
        """Holdout mode can always fall back on the trial models; cross-validation must refit.
        The search stopped as the time left fell below the reserve, so a refit costing the
        reserve overruns by a moment: a small grace allows for that."""
        grace = REFIT_GRACE_SHARE * self.tuner.budget_s
        late = time.monotonic() + self.cost.seconds(candidates) > self.deadline + grace
        return not self.rows.use_cv or not late

    def held_score(self, pred: np.ndarray) -> float:
        return self.score(self.rows.held_y, pred)


@dataclass
class _RoundWatch:
    """Called after each boosting round of a trial: stops it at the deadline, or when the
    pruner says so (holdout mode; cross-validation prunes between folds instead)."""

    search: _Search
    trial: optuna.Trial
    pruned: bool = False
    cut: bool = False  # a fit ran to its deadline

    def __call__(self, step: int, score: float) -> bool:
        if self.search.over():
            return True  # out of time: keep what was learnt so far
        if self.search.rows.use_cv:
            return False
        self.trial.report(score, step)
        if self.trial.should_prune():
            self.pruned = True
        return self.pruned


def _study(tuner: Tuner, families: dict[str, Learner], rows: int) -> optuna.Study:
    """The seeded sampler and the pruner, with each family's portfolio enqueued first, round
    by round (each family's default first, the cheap linear model first of all), so even a
    tiny budget yields a reasonable model and the ensemble has proven, diverse members."""
    sampler = optuna.samplers.TPESampler(seed=tuner.seed, n_startup_trials=len(families) + 4)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=len(families) + 2, n_warmup_steps=20)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    ordered = sorted(families.values(), key=lambda f: f.name != "linear")
    portfolios = [family.portfolio(tuner.task, rows) for family in ordered]
    for round_ in range(max(len(p) for p in portfolios)):
        for portfolio in portfolios:
            if round_ < len(portfolio):
                study.enqueue_trial(portfolio[round_])
    return study


def fit_threads() -> int:
    """Threads per fit: the cores left idle by the rest of the machine (its one-minute load
    average), at least 1 and at most MAX_THREADS.

    Boosting threads wait for each other at every tree level, so a thread whose core is
    taken stalls the others: on a busy 2-core machine an XGBoost trial took 14 s with 2
    threads and 0.8 s with 1 on 350 rows, 17.9 s and 0.8 s on 33,000 rows (measured with
    OpenMP's spinning waiters; the package now makes them sleep, which leaves the stall but
    not the spin). Small data gains little from a second thread even on an idle machine, so
    it always gets one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    idle = (cores or 1) - os.getloadavg()[0]
    return max(1, min(MAX_THREADS, round(idle)))


class Tuner:
    """Searches learners and parameters for `budget_s` seconds, then refits the best on all
    rows; or, when `ensemble` is set and averaging the best trials scores higher on the
    held-out predictions, builds a weighted ensemble of them.

    The budget covers the refit: every fit of a trial stops at a deadline that leaves time
    for the refits (`refit.RefitCost`); a sampled search keeps `refit_budget_share` of the
    budget for its refit, on as many rows as fit in it. Trials a deadline cut short are
    marked `cut` in `trials_`. Each fit uses `nthread` threads (by default one on small
    data, selected by cross-validation, else `fit_threads`).

    The sampler is seeded, so the sequence of trials is reproducible up to the first trial a
    deadline cut short; how many run depends
    on the budget, unless `max_trials` ends the search first (then, given time, the outcome
    does not depend on the machine's speed). Fitted attributes (set by `fit`): `best_model_`,
    `best_learner_`, `best_params_`, `best_score_`, `selection_`, `refit_`, `heldout_y_`,
    `heldout_pred_` (out-of-sample predictions of the final choice: the binary threshold is
    tuned on them),
    `trials_`.
    """

    best_model_: Model
    best_learner_: str
    best_params_: dict[str, Any]
    best_score_: float
    selection_: Selection
    refit_: Refit | None  # None for an ensemble: `selection_.members` carry their refits
    heldout_y_: np.ndarray
    heldout_pred_: np.ndarray
    trials_: list[TrialRecord]

    def __init__(
        self,
        task: Task,
        n_classes: int,
        *,
        budget_s: float,
        seed: int,
        nthread: int | None = None,
        learners: tuple[str, ...] = LEARNER_NAMES,
        ensemble: bool = True,
        max_train_rows: int = TUNE_MAX_TRAIN_ROWS,
        max_valid_rows: int = TUNE_MAX_VALID_ROWS,
        refit_budget_share: float = REFIT_BUDGET_SHARE,
        max_trials: int | None = None,
        progress: Callable[[TuningProgress], None] | None = None,
    ) -> None:
        self.task, self.n_classes = task, n_classes
        self.budget_s, self.seed, self.nthread = budget_s, seed, nthread
        self.learners, self.ensemble = learners, ensemble
        self.max_train_rows, self.max_valid_rows = max_train_rows, max_valid_rows
        self.refit_budget_share = refit_budget_share
        self.max_trials = max_trials
        self.progress = progress

    def fit(self, train: Data, validation: Data) -> Tuner:
        """Runs the search on these splits and refits the choice; raises BudgetSpent when no
        trial completed."""
        start = time.monotonic()  # sampling the rows counts against the budget
        rows = SearchRowSet.of(
            self.task,
            train,
            validation,
            max_train_rows=self.max_train_rows,
            max_valid_rows=self.max_valid_rows,
            seed=self.seed,
        )
        families = {name: learner(name) for name in self.learners}
        nthread = self.nthread or (SMALL_DATA_THREADS if rows.use_cv else fit_threads())
        search = _Search(self, rows, families, start, nthread)
        study = _study(self, families, len(rows.all_y))
        study.optimize(
            search.objective,
            n_trials=self.max_trials,
            timeout=max(self.budget_s, 0.001),
            callbacks=[search.stop_when_spent],
            gc_after_trial=False,
        )
        if not search.pool:
            raise BudgetSpent("no trial completed within the time budget")
        members = search.pool.choose(search.held_score, search.affordable, search.ensemble)
        refitter = Refitter(
            self.task,
            self.n_classes,
            families,
            rows,
            search.cost,
            self.seed,
            nthread,
            search.deadline,
            REFIT_GRACE_SHARE * self.budget_s,
        )
        if len(members) == 1:
            final, score = refitter.single(search.pool.best), search.pool.best.score
        else:
            final = refitter.ensemble(members)
            score = search.held_score(final.heldout_pred)
        self._set_fitted(final, score, rows, search.records)
        return self

    def _set_fitted(
        self, final: FinalModel, score: float, rows: SearchRowSet, trials: list[TrialRecord]
    ) -> None:
        self.best_model_ = final.model
        self.best_learner_ = final.learner
        self.best_params_ = final.params
        self.best_score_ = score
        self.selection_ = Selection(
            data=rows.selection_data,
            folds=len(rows.folds) or None,
            sampled=rows.sampled,
            search_rows=rows.search_rows,
            metric=objective_name(self.task),
            score=score,
            members=final.members,
        )
        self.refit_ = final.refit
        self.heldout_y_ = rows.held_y
        self.heldout_pred_ = final.heldout_pred
        self.trials_ = trials
