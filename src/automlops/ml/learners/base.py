"""The interface every learner family implements, and helpers they share.

A learner turns a search trial into parameters, fits on (train, validation) with early
stopping, and saves to / loads from its library's own format: never pickle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from automlops.config import Task
from automlops.ml.explain.records import FeatureContributions

# Below this many rows data is "small": selected by cross-validation, where regularised
# settings are the better first guess.
SMALL_DATA_ROWS = 10_000

# Boosting: rounds when the parameters name none (early stopping or a deadline ends sooner),
# and how often (in rounds) progress goes to a RoundCallback.
MAX_ROUNDS = 2000
REPORT_EVERY = 5
PATIENCE = 30  # early stopping: rounds without a better validation score before it stops

# Called every few boosting rounds with (round, validation score, higher is better);
# returning True stops training early (pruned trial or budget spent).
RoundCallback = Callable[[int, float], bool]
Data = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class FitJob:
    """What one fit gets besides its parameters: the task, the rows and how to run."""

    task: Task
    n_classes: int
    train: Data
    validation: Data  # no rows: fit without early stopping (a refit on all rows)
    seed: int
    nthread: int
    on_round: RoundCallback | None = None
    deadline: float | None = None  # time.monotonic() after which boosting adds no rounds

    @property
    def has_validation(self) -> bool:
        return len(self.validation[1]) > 0


class Model(Protocol):
    """A fitted model of any family."""

    learner: str
    model_file: str

    def predict(self, features: np.ndarray) -> np.ndarray:
        """binary: P(positive) (n,); multiclass: (n, k) probabilities; regression: (n,)."""
        ...

    def save(self) -> bytes: ...

    def contributions(self, features: np.ndarray, task: Task) -> FeatureContributions:
        """Each row's additive contributions per feature to the raw score (see
        `automlops.ml.explain.records`): base + sum = log-odds (binary), softmax logits
        (multiclass) or the value (regression)."""
        ...

    def importances(self, feature_names: list[str]) -> dict[str, float]:
        """Relative importance per feature name (sums to 1 when any is non-zero)."""
        ...

    @property
    def rounds(self) -> int | None:
        """Boosting rounds kept (None for non-iterative models)."""
        ...


class Learner(Protocol):
    name: str
    model_file: str

    def suggest(self, trial: Any, task: Task, n_rows: int) -> dict[str, Any]:
        """Parameters for one trial from an Optuna trial (names prefixed by the learner)."""
        ...

    def portfolio(self, task: Task, n_rows: int) -> list[dict[str, Any]]:
        """Proven configurations for `n_rows` rows, tried before the search and in this
        order, as Optuna trial parameters; the first is the family's sound default."""
        ...

    def fit(self, params: dict[str, Any], job: FitJob) -> Model:
        """Fit `params` on `job.train`, with early stopping on `job.validation` (when it has
        rows). Iterative learners stop adding rounds once `time.monotonic()` passes
        `job.deadline` (a time-bounded refit)."""
        ...

    def load(self, data: bytes, task: Task, n_classes: int, *, nthread: int = 1) -> Model: ...


def normalise(scores: dict[str, float]) -> dict[str, float]:
    """Scale importances to sum to 1 (kept as is when all are zero)."""
    total = float(sum(scores.values()))
    return {k: v / total for k, v in scores.items()} if total > 0 else scores


def positive_weight(y: np.ndarray) -> float:
    """negatives / positives: the weight that balances a binary training set."""
    positives = float(np.sum(y == 1))
    return float(np.sum(y == 0)) / positives if positives else 1.0


def objective(table: dict[Task, dict[str, Any]], task: Task, n_classes: int) -> dict[str, Any]:
    """A boosting library's objective settings for `task` from its table; multiclass adds the
    class count. The tables stop early on log loss, not AUC: AUC plateaus at once on small or
    easy data (ties keep the first best), which stopped boosting after a round or two."""
    settings = dict(table[task])
    if task is Task.multiclass:
        settings["num_class"] = n_classes
    return settings


def boosting_params(params: dict[str, Any], job: FitJob) -> tuple[int, dict[str, Any]]:
    """A boosting learner's round count and library parameters from trial parameters: `rounds`
    (default MAX_ROUNDS) comes out, and `balanced` becomes the positive class weight."""
    params = dict(params)
    rounds = int(params.pop("rounds", MAX_ROUNDS))
    if params.pop("balanced", False) and job.task is Task.binary:
        params["scale_pos_weight"] = positive_weight(job.train[1])
    return rounds, params
