"""The final model: the chosen configuration (or each ensemble member) refitted on every
training and validation row, unless no time is left for it.

The budget is the search's: a refit on all rows is estimated from the trial's duration and
kept back from the search (`RefitCost`). A sampled search keeps nothing back: its refit on
all rows comes after the budget, bounded by `refit_budget_share` times the budget (boosting
stops adding rounds there), and always happens (its trials saw a sample only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from automlops.config import Task
from automlops.ml.learners.base import FitJob, Learner, Model
from automlops.ml.learners.ensemble import ENSEMBLE, EnsembleModel, Member
from automlops.ml.tuning.candidates import Candidate, Weighted
from automlops.ml.tuning.outcome import EnsembleMember, Refit, RefitStatus
from automlops.ml.tuning.rows import CV_FOLDS, SearchRowSet


@dataclass(frozen=True)
class RefitCost:
    """Time a refit on all rows takes, as a share of its trial's time."""

    share: float

    @classmethod
    def of(cls, rows: SearchRowSet) -> RefitCost:
        if rows.sampled:
            return cls(0.0)  # refitted after the budget, bounded separately
        if rows.use_cv:
            return cls(1.0 / CV_FOLDS * 1.3)  # one fit on all rows vs CV_FOLDS on 4/5 of them
        return cls(len(rows.all_y) / max(len(rows.train[1]), 1))

    def seconds(self, candidates: list[Candidate]) -> float:
        return sum(c.duration_s for c in candidates) * self.share


def refit_params(candidate: Candidate, rows: SearchRowSet) -> dict[str, Any]:
    """The candidate's parameters for a refit on all rows: boosting keeps the selected round
    count, scaled for the extra rows as the validation split's share of all rows (a sample's
    early stop says nothing about a further factor of rows)."""
    params = dict(candidate.params)
    if candidate.rounds is not None:
        all_rows = len(rows.all_y)
        fitted_on = all_rows * (CV_FOLDS - 1) / CV_FOLDS if rows.use_cv else rows.full_train_rows
        params["rounds"] = max(1, round(candidate.rounds * all_rows / fitted_on))
    return params


@dataclass(frozen=True)
class FinalModel:
    """The refitted model, what it was fitted on, and the held-out predictions its
    threshold is tuned on."""

    model: Model
    learner: str  # its family, or "ensemble"
    params: dict[str, Any]
    refit: Refit | None  # None for an ensemble: each member carries its own
    heldout_pred: np.ndarray
    members: list[EnsembleMember]


@dataclass(frozen=True)
class Refitter:
    """Refits candidates on all rows for one search (its task, rows, families and clock)."""

    task: Task
    n_classes: int
    families: dict[str, Learner]
    rows: SearchRowSet
    cost: RefitCost
    seed: int
    nthread: int
    deadline: float  # the search's
    budget_s: float
    refit_budget_share: float

    def no_time(self, c: Candidate) -> bool:
        """Holdout mode keeps each trial's model to fall back on; a sampled search always
        refits (after the budget, bounded separately)."""
        late = time.monotonic() + self.cost.seconds([c]) > self.deadline
        return not self.rows.sampled and c.model is not None and late

    def fit(self, c: Candidate, deadline: float | None = None) -> Model:
        """`c`'s configuration fitted on every row (boosting stops at `deadline` if given)."""
        x, y = self.rows.all_x, self.rows.all_y
        job = FitJob(
            self.task,
            self.n_classes,
            train=(x, y),
            validation=(x[:0], y[:0]),  # no early stopping: the selected round count is kept
            seed=self.seed,
            nthread=self.nthread,
            deadline=deadline,
        )
        return self.families[c.learner].fit(refit_params(c, self.rows), job)

    def single(self, chosen: Candidate) -> FinalModel:
        """The chosen candidate refitted, or its trial model when no time is left."""
        params = refit_params(chosen, self.rows)
        if self.no_time(chosen):
            assert chosen.model is not None  # no_time holds only for holdout trial models
            refit = Refit(status=RefitStatus.no_time, rows=len(self.rows.train[1]))
            return FinalModel(chosen.model, chosen.learner, params, refit, chosen.pred, [])
        # The refit of a sampled search comes after the budget and may take
        # refit_budget_share of it again; boosting stops adding rounds there.
        deadline = None
        if self.rows.sampled:
            deadline = time.monotonic() + self.refit_budget_share * self.budget_s
        model = self.fit(chosen, deadline)
        refit = Refit(status=RefitStatus.all_rows, rows=len(self.rows.all_y))
        pred = chosen.pred
        wanted = params.get("rounds")
        if wanted is not None and model.rounds is not None and model.rounds < wanted:
            # LightGBM ends by itself once no leaf can be split: a whole model, whose
            # held-out predictions are still the selected trial's.
            status = RefitStatus.no_further_split
            if deadline is not None:
                status = RefitStatus.time_limit
                # A shorter model's probabilities differ: the threshold is tuned on its own
                # predictions of the validation rows (seen in the refit, but few rounds
                # overfit little) rather than on the selected trial's.
                pred = model.predict(self.rows.validation[0])
            refit = refit.model_copy(
                update={"status": status, "rounds": model.rounds, "wanted_rounds": wanted}
            )
        return FinalModel(model, chosen.learner, params, refit, pred, [])

    def ensemble(self, members: Weighted) -> FinalModel:
        """Each member refitted (or its trial model when no time is left), averaged."""
        fitted: list[Member] = []
        described: list[EnsembleMember] = []
        for weight, c in members:
            if self.no_time(c):
                assert c.model is not None
                model = c.model  # the trial's own model
                refit = Refit(status=RefitStatus.no_time, rows=len(self.rows.train[1]))
            else:
                model = self.fit(c)
                refit = Refit(status=RefitStatus.all_rows, rows=len(self.rows.all_y))
            fitted.append(Member(weight, model))
            described.append(
                EnsembleMember(
                    trial=c.number,
                    learner=c.learner,
                    weight=weight,
                    params=c.params,
                    rounds=c.rounds,
                    refit=refit,
                )
            )
        blend = sum(weight * c.pred for weight, c in members)
        params = {"members": [m.model_dump(exclude={"refit"}) for m in described]}
        return FinalModel(
            EnsembleModel(fitted), ENSEMBLE, params, None, np.asarray(blend), described
        )
