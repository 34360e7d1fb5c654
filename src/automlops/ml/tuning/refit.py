"""The final model: the chosen configuration (or each ensemble member) refitted on every
training and validation row, unless no time is left for it.

The budget covers the refit. Its cost is estimated from the trial's measured duration
(`RefitCost`) and kept back from the search; a trial is stopped early enough that its own
refit would still fit. A sampled search keeps a fixed share of the budget back instead, and
refits on as many of all rows as that time allows at the trial's measured seconds per row
(never fewer than the trial saw; when not even those fit, the trial's own model is kept).
Every refit stops adding boosting rounds (or logistic iterations) at the deadline, plus a
small grace for the estimate's error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from automlops.config import Task
from automlops.ml.learners.base import FitJob, Learner, Model
from automlops.ml.learners.ensemble import ENSEMBLE, EnsembleModel, Member
from automlops.ml.splits import sample_indices
from automlops.ml.tuning.candidates import Candidate, Weighted
from automlops.ml.tuning.outcome import EnsembleMember, Refit, RefitStatus
from automlops.ml.tuning.rows import CV_FOLDS, SearchRowSet

# One fit on all rows against CV_FOLDS fits on (CV_FOLDS - 1) / CV_FOLDS of them, with a
# margin for the extra rounds a refit on more rows is given.
_CV_REFIT_SHARE = 1.3 / CV_FOLDS


@dataclass(frozen=True)
class RefitCost:
    """What a refit on all rows costs, for one search: `share` seconds per second of its
    trial; `required` when there is no trial model to fall back on (cross-validation);
    `reserved_s`, a sampled search's fixed reserve (its refit is sized to fit it)."""

    share: float
    required: bool = False
    reserved_s: float = 0.0

    @classmethod
    def of(cls, rows: SearchRowSet, budget_s: float, sampled_share: float) -> RefitCost:
        ratio = len(rows.all_y) / max(len(rows.train[1]), 1)
        if rows.sampled:
            return cls(ratio, reserved_s=sampled_share * budget_s)
        if rows.use_cv:
            return cls(_CV_REFIT_SHARE, required=True)
        return cls(ratio)

    def seconds(self, candidates: list[Candidate]) -> float:
        """Estimated seconds to refit `candidates` on all rows."""
        return sum(c.duration_s for c in candidates) * self.share

    def reserve(self, candidates: list[Candidate]) -> float:
        """Seconds the search keeps back for refitting `candidates`."""
        return self.reserved_s or self.seconds(candidates)

    def trial_deadline(self, now: float, deadline: float, reserve: float) -> float:
        """When a trial starting `now` stops adding rounds: before the current reserve, and,
        when its refit is required and not sized to a fixed reserve, early enough that its
        own refit (`share` of its duration) still ends by `deadline`."""
        end = deadline - reserve
        if self.required and not self.reserved_s:
            end = min(end, now + (deadline - now) / (1.0 + self.share))
        return max(end, now)


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
    deadline: float  # the search's: refits stop adding rounds at it (plus `grace_s`)
    grace_s: float

    def no_time(self, c: Candidate) -> bool:
        """Holdout mode keeps each trial's model to fall back on when its refit would end
        late (a sampled search's, when even a refit on as many rows as the trial saw would);
        cross-validation always refits."""
        every = len(self.rows.all_y)
        least = len(self.rows.train[1]) if self.rows.sampled else every
        # The grace too: the search stops once the time left falls to the reserve, which is
        # this estimate, so without it a refit the search kept time for would never happen.
        late = (
            time.monotonic() + self.cost.seconds([c]) * least / every > self.deadline + self.grace_s
        )
        return not self.cost.required and c.model is not None and late

    def affordable_rows(self, c: Candidate) -> int:
        """Rows a refit of `c` can use: all of them, or, for a sampled search short of time,
        as many as the time left allows at its trial's seconds per row (at least as many as
        the trial itself fitted on)."""
        every = len(self.rows.all_y)
        if not self.rows.sampled:
            return every
        left = self.deadline + self.grace_s - time.monotonic()
        estimate = self.cost.seconds([c])
        if estimate <= left:
            return every
        return min(every, max(len(self.rows.train[1]), int(every * max(left, 0.0) / estimate)))

    def fit(self, c: Candidate, rows: int | None = None) -> Model:
        """`c`'s configuration fitted on every row (or a seeded sample of `rows` of them),
        stopping at the deadline."""
        x, y = self.rows.all_x, self.rows.all_y
        if rows is not None and rows < len(y):
            strata = None if self.task is Task.regression else y
            picked = sample_indices(len(y), rows, seed=self.seed, strata=strata)
            x, y = x[picked], y[picked]
        job = FitJob(
            self.task,
            self.n_classes,
            train=(x, y),
            validation=(x[:0], y[:0]),  # no early stopping: the selected round count is kept
            seed=self.seed,
            nthread=self.nthread,
            # A required refit (cross-validation: small data, under SMALL_DATA_ROWS rows) is
            # never cut: there is no trial model to fall back on, and the threshold is tuned on
            # the out-of-fold predictions of the whole configuration, which a model cut to a
            # few rounds (on a busy machine) would not match. Its cost is one fit of few rows.
            deadline=None if self.cost.required else self.deadline + self.grace_s,
        )
        return self.families[c.learner].fit(refit_params(c, self.rows), job)

    def _cut(self) -> bool:
        return time.monotonic() > self.deadline + self.grace_s

    def single(self, chosen: Candidate) -> FinalModel:
        """The chosen candidate refitted, or its trial model when no time is left."""
        params = refit_params(chosen, self.rows)
        if self.no_time(chosen):
            assert chosen.model is not None  # no_time holds only for holdout trial models
            refit = Refit(status=RefitStatus.no_time, rows=len(self.rows.train[1]))
            return FinalModel(chosen.model, chosen.learner, params, refit, chosen.pred, [])
        every = len(self.rows.all_y)
        rows = self.affordable_rows(chosen)
        model = self.fit(chosen, rows)
        refit = Refit(status=RefitStatus.all_rows, rows=rows)
        if rows < every:
            refit = Refit(status=RefitStatus.row_sample, rows=rows, of_rows=every)
        pred = chosen.pred
        wanted = params.get("rounds")
        if wanted is not None and model.rounds is not None and model.rounds < wanted:
            # LightGBM ends by itself once no leaf can be split: a whole model, whose
            # held-out predictions are still the selected trial's.
            status = RefitStatus.no_further_split
            if self._cut():
                status = RefitStatus.time_limit
                # A shorter model's probabilities differ: the threshold is tuned on its own
                # predictions of the validation rows (seen in the refit, but few rounds
                # overfit little) rather than on the selected trial's.
                if not self.rows.use_cv:
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
                wanted = refit_params(c, self.rows).get("rounds")
                short = wanted is not None and model.rounds is not None and model.rounds < wanted
                if short and self._cut():
                    update = {"rounds": model.rounds, "wanted_rounds": wanted}
                    refit = refit.model_copy(update={"status": RefitStatus.time_limit, **update})
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
