"""The schema/profile record written beside the processed splits."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, computed_field

from automlops.config import Manifest
from automlops.ml.columns.target import TargetSpec
from automlops.tabular.spelling import MISSING_VALUES


class ColumnDecision(BaseModel):
    """One column's decision as a typed record, for the report's column table."""

    action: Literal["feature", "target", "dropped"]
    kind: str | None = Field(description="numeric | categorical | datetime; None if not a feature")
    parse: str = Field(
        description="How the file's values were read: 'plain numbers', 'decimal comma, "
        "'.' thousands separator, currency €', 'percent (12% -> 12)', 'booleans (yes/no in "
        "any case -> 1/0)', 'dates (%d.%m.%Y)', 'text'; empty when not a feature"
    )
    reason: str = Field(description="A feature's encoding, or why the column was dropped")


class ColumnProfile(BaseModel):
    """What a column looked like in training data, and what preprocessing did with it.

    Missing values are the empty cell and the spellings of `tabular.spelling.MISSING_VALUES`
    (`NA`, `N/A`, `null`, `-`, `?`, ...), in training and serving alike.
    """

    name: str
    dtype: str
    kind: str | None = None  # numeric | categorical | datetime, None when not a feature
    decision: str  # "feature: <how>", "target", or "dropped: <reason>"
    parse: str = ""  # how a feature's values were read (NumberSpelling.describe, dates, text)
    missing: int = 0
    unique: int = 0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    top: list[tuple[str, int]] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented computed_field use
    @property
    def record(self) -> ColumnDecision:
        """The decision as a typed record (action, kind, parse, reason), from `decision`."""
        head, _, detail = self.decision.partition(":")
        action = head.strip()
        if action == "target":
            return ColumnDecision(action="target", kind=None, parse="", reason="the target")
        if action == "dropped":
            return ColumnDecision(action="dropped", kind=None, parse="", reason=detail.strip())
        return ColumnDecision(
            action="feature", kind=self.kind, parse=self.parse, reason=detail.strip()
        )


class SplitRows(BaseModel):
    total: int
    train: int
    validation: int
    test: int
    dropped_missing_target: int = 0


class DatasetSchema(BaseModel):
    """Written last by preprocess; its arrival triggers training."""

    dataset: str
    run_id: str
    source_bucket: str
    source_key: str
    source_sha256: str
    created_at: str
    manifest: Manifest
    target: TargetSpec
    columns: list[ColumnProfile]
    rows: SplitRows
    split_keys: dict[str, str]
    transform_key: str
    notes: list[str] = Field(default_factory=list)
    missing_values: list[str] = Field(
        default_factory=lambda: list(MISSING_VALUES),
        description="Cell spellings read as missing (stripped; the empty cell included), in "
        "training and serving alike.",
    )
