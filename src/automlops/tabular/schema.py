"""The schema/profile record written beside the processed splits."""

from __future__ import annotations

from pydantic import BaseModel, Field

from automlops.config import Manifest
from automlops.ml.columns.target import TargetSpec


class ColumnProfile(BaseModel):
    """What a column looked like in training data, and what preprocessing did with it."""

    name: str
    dtype: str
    kind: str | None = None  # numeric | categorical, None when not a feature
    decision: str  # "feature: <how>", "target", or "dropped: <reason>"
    missing: int = 0
    unique: int = 0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    top: list[tuple[str, int]] = Field(default_factory=list)


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
