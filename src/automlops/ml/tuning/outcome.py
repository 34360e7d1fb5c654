"""What a search produced, as data: its trials, how the model was selected and what it was
fitted on. Reports turn these into sentences (`automlops.reports.tuning_text`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class TrialState(StrEnum):
    complete = "complete"
    pruned = "pruned"
    failed = "failed"


class TrialRecord(BaseModel):
    """One trial of the search: its learner, parameters and held-out score (None if it did
    not complete)."""

    number: int
    learner: str
    params: dict[str, Any]
    state: TrialState
    score: float | None
    duration_s: float
    rounds: int | None = None
    error: str | None = None
    # Stopped by the time budget (boosting rounds or linear iterations cut short): its score
    # is that of a shorter fit than its parameters asked for.
    cut: bool = False


class SelectionData(StrEnum):
    """The held-out predictions the configuration was chosen on."""

    cross_validation = "cross_validation"  # every row's out-of-fold prediction
    validation_split = "validation_split"  # the validation rows


class RefitStatus(StrEnum):
    """What became of the chosen configuration's refit on all rows."""

    all_rows = "all_rows"  # refitted on every training and validation row
    no_time = "no_time"  # no time left: the trial's own model, fitted on the training rows
    # Refitted on all rows but with fewer boosting rounds than selected:
    time_limit = "time_limit"  # stopped at the refit's time limit
    no_further_split = "no_further_split"  # the booster ended by itself (no leaf to split)
    # A sampled search's refit on as many of all rows as the time left allows (sized from its
    # trial's measured seconds per row), with the selected round count:
    row_sample = "row_sample"


class Refit(BaseModel):
    """What one final model was fitted on."""

    status: RefitStatus
    rows: int  # rows it was fitted on
    of_rows: int | None = None  # all training and validation rows, when `rows` is a sample
    rounds: int | None = None  # boosting rounds it has, when short of `wanted_rounds`
    wanted_rounds: int | None = None


class EnsembleMember(BaseModel):
    """One member of an ensemble: the trial it comes from, its weight and its refit."""

    trial: int
    learner: str
    weight: float
    params: dict[str, Any]
    rounds: int | None
    refit: Refit


class SearchRows(BaseModel):
    """Rows the trials were fitted and scored on (a big data set's samples: fewer)."""

    train: int
    validation: int


class Selection(BaseModel):
    """How the final model was chosen: on which held-out predictions, by which metric, and,
    for an ensemble, its members (empty for a single model)."""

    data: SelectionData
    folds: int | None = None  # cross-validation's k
    sampled: bool = False  # trials fitted on samples of the rows
    search_rows: SearchRows
    metric: str  # the search's score, negated ("-log_loss") when lower is better
    score: float  # of the chosen model (or ensemble) on the held-out predictions
    members: list[EnsembleMember] = Field(default_factory=list)

    @property
    def ensemble(self) -> bool:
        return bool(self.members)
