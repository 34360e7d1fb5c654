"""The completed trials kept for the final choice, and that choice: one model or a weighted
ensemble of several (see `automlops.ml.learners.ensemble`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from automlops.ml.learners.base import Model
from automlops.ml.learners.ensemble import select_weights

# Best trials kept for an ensemble, beside each family's best: the portfolio's diverse
# configurations often each add to the greedy selection.
ENSEMBLE_CANDIDATES = 6


@dataclass(eq=False)  # identity: `in` must not compare prediction arrays
class Candidate:
    """A completed trial and what the final choice needs of it."""

    number: int  # its trial
    score: float
    learner: str
    params: dict[str, Any]
    rounds: int | None
    pred: np.ndarray  # its held-out predictions
    model: Model | None  # holdout mode: the model itself
    duration_s: float  # of its trial: what a refit on all rows is estimated from


# (weight, candidate) pairs, heaviest first.
Weighted = list[tuple[float, Candidate]]


@dataclass
class CandidatePool:
    """The best ENSEMBLE_CANDIDATES trials plus each family's best, best first."""

    candidates: list[Candidate] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.candidates)

    @property
    def best(self) -> Candidate:
        return self.candidates[0]

    def keep(self, candidate: Candidate) -> None:
        """Adds a completed trial and drops those neither in the top few nor a family's best."""
        self.candidates.append(candidate)
        self.candidates.sort(key=lambda c: -c.score)
        bests = self.family_bests()
        self.candidates = [
            c for i, c in enumerate(self.candidates) if i < ENSEMBLE_CANDIDATES or c in bests
        ]

    def family_bests(self) -> list[Candidate]:
        """Each learner family's best candidate, best first."""
        bests: dict[str, Candidate] = {}
        for c in self.candidates:  # best first
            bests.setdefault(c.learner, c)
        return list(bests.values())

    def choose(
        self,
        held_score: Callable[[np.ndarray], float],
        affordable: Callable[[list[Candidate]], bool],
        ensemble: bool,
    ) -> Weighted:
        """The final model's members: the best candidate alone, or, when `ensemble` is set,
        the weighted ensemble of the pool (else of the family bests) that `select_weights`
        picks on the held-out predictions, if `affordable` says its refits fit in time."""
        members: Weighted = [(1.0, self.best)]
        if not ensemble or len(self.candidates) < 2:
            return members
        for candidates in (self.candidates, self.family_bests()):
            if len(candidates) < 2:
                continue
            weights = select_weights([c.pred for c in candidates], held_score)
            picked = sorted(
                ((w, c) for w, c in zip(weights, candidates, strict=True) if w > 0),
                key=lambda wc: -wc[0],
            )
            if affordable([c for _, c in picked]):
                return picked
        return members
