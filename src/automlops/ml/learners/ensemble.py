"""A weighted average of fitted models, its weights chosen greedily on held-out predictions.

Ensemble selection (Caruana et al., 2004): start from the best single candidate, then keep
adding, with replacement, whichever candidate most improves the held-out score of the
average; the weights are how often each was picked. Averaging a linear model with boosted
trees, or two differently regularised boosters, often beats either alone on small data, where
no single family wins clearly.

The ensemble is stored as one JSON file holding each member in its own library's format
(base64), so it stays as pickle-free as its members.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import orjson

from automlops.config import Task
from automlops.ml.explain.records import FeatureContributions
from automlops.ml.learners.base import Model, normalise

ENSEMBLE = "ensemble"
MODEL_FILE = "model.ensemble.json"
SELECTION_STEPS = 20  # additions tried: weights come in steps of 1/20 at the finest
MIN_RELATIVE_GAIN = 0.002  # a bag replaces the best only when it scores this much better
FORMAT_VERSION = 1


# Given the members' models, one function giving every member's `predict` output at once, or
# None when they cannot be predicted together.
Fuser = Callable[[Sequence[Model]], Callable[[np.ndarray], list[np.ndarray]] | None]


class MemberLoader(Protocol):
    """Loads one member's saved model by its learner's name (the catalog's `load_model`)."""

    def __call__(
        self, name: str, data: bytes, task: Task, n_classes: int, *, nthread: int = 1
    ) -> Model: ...


@dataclass(frozen=True)
class Member:
    weight: float
    model: Model


class EnsembleModel:
    """Predicts the weighted average of its members' predictions (probabilities or values)."""

    learner = ENSEMBLE
    model_file = MODEL_FILE
    rounds = None

    def __init__(self, members: Sequence[Member], fuse: Fuser | None = None) -> None:
        """`fuse`, when given, may return one predictor of all the members' outputs (members
        whose library can predict them in one pass); else they predict one by one."""
        if not members:
            raise ValueError("an ensemble needs at least one member")
        total = sum(m.weight for m in members)
        self.members = [Member(m.weight / total, m.model) for m in members]
        self._fused = None if fuse is None else fuse([m.model for m in self.members])

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self._fused is not None:
            outputs = self._fused(features)
        else:
            outputs = [member.model.predict(features) for member in self.members]
        out = self.members[0].weight * outputs[0]
        for member, output in zip(self.members[1:], outputs[1:], strict=True):
            out = out + member.weight * output.reshape(out.shape)
        return out

    def contributions(self, features: np.ndarray, task: Task) -> FeatureContributions:
        """The members' contributions, weighted as their predictions are.

        Exact for regression (the ensemble averages values, which are the raw scores). A
        classifier ensemble averages probabilities: these contributions sum to the weighted
        mean of the members' log-odds (softmax logits), which approximates the log-odds of the
        mean probability (equal when the members agree; `explain.gap` measures the difference).
        """
        first = self.members[0]
        part = first.model.contributions(features, task)
        # Summed in place: each part is rows x outputs x features, several MB a chunk.
        values, base, exact = part.values * first.weight, part.base * first.weight, part.exact
        for member in self.members[1:]:
            part = member.model.contributions(features, task)
            values += member.weight * part.values
            base += member.weight * part.base
            exact = exact and part.exact
        return FeatureContributions(
            values=values, base=base, exact=exact and task is Task.regression
        )

    def save(self) -> bytes:
        return orjson.dumps(
            {
                "format_version": FORMAT_VERSION,
                "members": [
                    {
                        "learner": m.model.learner,
                        "weight": m.weight,
                        "model": base64.b64encode(m.model.save()).decode("ascii"),
                    }
                    for m in self.members
                ],
            }
        )

    def importances(self, feature_names: list[str]) -> dict[str, float]:
        # Each member's importances sum to 1, so the weighted sum is a share of the whole.
        total = dict.fromkeys(feature_names, 0.0)
        for member in self.members:
            for name, value in member.model.importances(feature_names).items():
                total[name] = total.get(name, 0.0) + member.weight * value
        return normalise(total)

    @classmethod
    def load(
        cls,
        data: bytes,
        task: Task,
        n_classes: int,
        *,
        load_member: MemberLoader,
        fuse: Fuser | None = None,
        nthread: int = 1,
    ) -> EnsembleModel:
        """An ensemble saved by `save`; `load_member` loads each member by its learner's name
        and `fuse` may join them (both passed in, so this module needs no catalog of
        learners)."""
        raw = orjson.loads(data)
        if raw.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported ensemble format {raw.get('format_version')!r}")
        return cls(
            [
                Member(
                    float(m["weight"]),
                    load_member(
                        m["learner"], base64.b64decode(m["model"]), task, n_classes, nthread=nthread
                    ),
                )
                for m in raw["members"]
            ],
            fuse,
        )


def select_weights(
    predictions: Sequence[np.ndarray],
    score: Callable[[np.ndarray], float],
    steps: int = SELECTION_STEPS,
    min_gain: float = MIN_RELATIVE_GAIN,
) -> list[float]:
    """Weights (summing to 1) over `predictions`, greedy with replacement on `score`.

    `predictions[i]` is candidate i's held-out prediction, all of one shape; `score` rates a
    prediction of that shape, higher is better. The first candidate that scores best alone
    starts the bag; of the bags seen along the way the best-scoring one is returned, so the
    result never scores below the best single candidate. A bag must beat the best before it
    by `min_gain` times that score's size: a gain smaller than that is more likely the
    held-out rows' noise than a better model, and one model serves faster than several.
    """
    if not predictions:
        raise ValueError("no candidates to select from")
    singles = [score(p) for p in predictions]
    first = int(np.argmax(singles))
    picks = Counter({first: 1})
    total = predictions[first].astype(np.float64)
    best_score, best_picks = singles[first], Counter(picks)
    for size in range(2, steps + 1):
        trial_scores = [score((total + p) / size) for p in predictions]
        pick = int(np.argmax(trial_scores))
        picks[pick] += 1
        total = total + predictions[pick]
        if trial_scores[pick] > best_score + min_gain * max(abs(best_score), 1e-12):
            best_score, best_picks = trial_scores[pick], Counter(picks)
    size = sum(best_picks.values())
    return [best_picks.get(i, 0) / size for i in range(len(predictions))]
