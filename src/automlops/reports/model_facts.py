"""What a reader needs to judge a model beyond its metrics: the trivial baseline on the same
test rows, why the decision threshold is where it is, how many trials the search ran, and
what preprocessing decided for each column.

`model_facts` builds them from the model's metadata, the run's schema document and the test
rows' truth and predictions; `report.py` and `html.py` render them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from automlops.config import Task
from automlops.ml.artifact import ModelMetadata
from automlops.ml.evaluation import metrics
from automlops.ml.tuning.outcome import Selection, SelectionData, TrialRecord, TrialState
from automlops.tabular.schema import ColumnProfile, DatasetSchema

_THRESHOLD_GOALS = {
    "f1": "F1 (the balance of precision and recall on the positive class)",
    "balanced_accuracy": "balanced accuracy (the mean of both classes' recall)",
    "accuracy": "accuracy",
}


class ThresholdChoice(BaseModel):
    """A binary model's decision threshold, what it maximises, and what it costs in accuracy
    on the test rows against 0.5 and against always answering the majority class."""

    threshold: float
    metric: str | None  # what it maximises (the manifest's threshold_metric); None: unknown
    chosen_on: str | None  # the held-out predictions it was tuned on
    accuracy: float  # on the test rows, at `threshold`
    accuracy_at_half: float
    majority_accuracy: float

    @property
    def below_majority(self) -> bool:
        return self.accuracy < self.majority_accuracy

    def reason(self) -> str:
        """One paragraph: the threshold, why, and its accuracy beside 0.5 and the majority."""
        goal = _THRESHOLD_GOALS.get(self.metric or "", self.metric or "a metric")
        text = f"{self.threshold:.4f}, chosen to maximise {goal}"
        text += f" on {self.chosen_on}" if self.chosen_on else ""
        text += (
            f". Accuracy on the test rows: {self.accuracy:.4f} at this threshold, "
            f"{self.accuracy_at_half:.4f} at 0.5; always answering the majority class scores "
            f"{self.majority_accuracy:.4f}."
        )
        if self.below_majority:
            text += (
                " This threshold puts accuracy below the majority class's: it trades accuracy "
                "for finding more of the positive class (set threshold_metric to accuracy in "
                "the manifest to favour accuracy)."
            )
        return text


class TrialCounts(BaseModel):
    """How many trials the search ran, by outcome, and how many the time budget cut short."""

    total: int
    complete: int
    pruned: int
    failed: int
    cut: int

    def text(self) -> str:
        """E.g. "12 trials: 9 complete, 2 pruned, 1 failed; 3 cut short by the time budget"."""
        parts = [f"{self.complete} complete"]
        parts += [f"{self.pruned} pruned"] if self.pruned else []
        parts += [f"{self.failed} failed"] if self.failed else []
        text = f"{self.total} trials: " + ", ".join(parts)
        return text + (f"; {self.cut} cut short by the time budget" if self.cut else "")


class ColumnRow(BaseModel):
    """One column of the upload and what preprocessing decided for it."""

    name: str
    dtype: str
    kind: str | None  # how the model reads it (None: not a feature)
    action: str  # feature | target | dropped | ...
    reason: str  # the decision's detail ("" when it has none)
    missing: int
    unique: int


class ModelFacts(BaseModel):
    """The sections of a report that let a reader judge the model."""

    baseline: dict[str, float] = Field(default_factory=dict)  # same metric names as the model's
    threshold: ThresholdChoice | None = None
    trials: TrialCounts | None = None
    columns: list[ColumnRow] = Field(default_factory=list)


def model_facts(
    meta: ModelMetadata, schema: DatasetSchema | None, y: np.ndarray, pred: np.ndarray
) -> ModelFacts:
    """The facts for a model whose test rows have truth `y` (encoded) and outputs `pred`
    (P(positive), class probabilities or values); `schema` is its run's schema document
    (None when it cannot be read: no column table, no threshold goal)."""
    task, n_classes = meta.task, len(meta.target.labels)
    baseline = metrics.baseline_metrics(task, y, n_classes) if len(y) else {}
    return ModelFacts(
        baseline=baseline,
        threshold=_threshold(meta, schema, y, pred, baseline),
        trials=trial_counts(meta.trials) if meta.trials else None,
        columns=column_rows(schema.columns) if schema is not None else [],
    )


def trial_counts(trials: list[dict[str, Any]]) -> TrialCounts:
    """Counts of the trials recorded in a model's metadata."""
    records = [TrialRecord.model_validate(t) for t in trials]
    return TrialCounts(
        total=len(records),
        complete=sum(r.state is TrialState.complete for r in records),
        pruned=sum(r.state is TrialState.pruned for r in records),
        failed=sum(r.state is TrialState.failed for r in records),
        cut=sum(r.cut for r in records),
    )


def column_rows(columns: list[ColumnProfile]) -> list[ColumnRow]:
    """The column decisions table. A profile's `decision` reads "<action>: <reason>" (or just
    "<action>"); fields the schema document gains later extend this one mapping."""
    rows = []
    for c in columns:
        action, _, reason = c.decision.partition(":")
        rows.append(
            ColumnRow(
                name=c.name,
                dtype=c.dtype,
                kind=c.kind,
                action=action.strip(),
                reason=reason.strip(),
                missing=c.missing,
                unique=c.unique,
            )
        )
    return rows


def _threshold(
    meta: ModelMetadata,
    schema: DatasetSchema | None,
    y: np.ndarray,
    pred: np.ndarray,
    baseline: dict[str, float],
) -> ThresholdChoice | None:
    if meta.task is not Task.binary or meta.threshold is None or not len(y):
        return None
    at_threshold = metrics.binary_metrics(y, pred, meta.threshold)["accuracy"]
    at_half = metrics.binary_metrics(y, pred, 0.5)["accuracy"]
    return ThresholdChoice(
        threshold=meta.threshold,
        metric=schema.manifest.threshold_metric if schema is not None else None,
        chosen_on=_held_out(meta.selection),
        accuracy=at_threshold,
        accuracy_at_half=at_half,
        majority_accuracy=baseline["accuracy"],
    )


def _held_out(selection: Selection | str | None) -> str | None:
    if not isinstance(selection, Selection):
        return None
    if selection.data is SelectionData.cross_validation:
        return f"the out-of-fold predictions of {selection.folds}-fold cross-validation"
    return "the validation split's predictions"
