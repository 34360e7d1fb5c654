"""Data drift: how far a new upload has moved from the data the serving model learned from.

Per column: the population stability index (PSI) over bins fixed on the training data
(deciles for numbers, the frequent categories for the rest, plus a bin for categories never
seen), the change of the missing-value rate, and new or vanished categories; per file: new and
vanished columns. Pure functions over polars frames: the stage decides where data comes from.

A column counts as drifted when its PSI is material (>= 0.25, the usual "significant shift"
rule of thumb) *and* the shift is not sampling noise (a chi-square test of the two bin counts at
p < 0.001): on small uploads PSI alone flags noise. A missing rate that moves by 10 points or
more, or a feature column absent from the upload, is drift too.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, Field
from scipy.stats import chi2_contingency

from automlops.ml.columns.values import (
    InvalidValueError,
    frame_decimal,
    json_number,
    parse_numeric,
)
from automlops.tabular.spelling import NumberSpelling, detect_spelling

PSI_THRESHOLD = 0.25
P_VALUE = 0.001
MISSING_CHANGE = 0.10
NUMERIC_BINS = 10
TOP_CATEGORIES = 20
_EPS = 1e-4  # share given to empty bins so the log ratio stays finite
_LISTED = 20  # new/vanished category names kept per column
OTHER, NEW = "(other)", "(new)"

Kind = Literal["numeric", "categorical"]


class ColumnDrift(BaseModel):
    """One column of the upload against the same column of the training data."""

    name: str
    role: Literal["feature", "target"] = "feature"
    kind: Kind
    psi: float
    p_value: float
    baseline_missing: float
    current_missing: float
    bins: list[str]
    baseline: list[float]  # share of present values per bin, training data
    current: list[float]  # same bins, new upload
    new_categories: list[str] = Field(default_factory=list)
    vanished_categories: list[str] = Field(default_factory=list)
    drifted: bool = False
    reasons: list[str] = Field(default_factory=list)


class BaselineRef(BaseModel):
    """The training data the upload is compared with: the champion's train split."""

    version: int
    run_id: str
    train_key: str
    rows: int


class DriftReport(BaseModel):
    """drift.json: what moved, by how much, and what the manifest says to do about it."""

    dataset: str
    run_id: str
    source_key: str
    created_at: str
    action: str  # the manifest's drift setting: warn | block
    baseline: BaselineRef | None = None
    rows: int = 0
    thresholds: dict[str, float] = Field(
        default_factory=lambda: {
            "psi": PSI_THRESHOLD,
            "p_value": P_VALUE,
            "missing_change": MISSING_CHANGE,
        }
    )
    columns: list[ColumnDrift] = Field(default_factory=list)  # most shifted first
    new_columns: list[str] = Field(default_factory=list)
    vanished_columns: list[str] = Field(default_factory=list)
    skipped: dict[str, str] = Field(default_factory=dict)  # column -> why it was not compared
    drifted: list[str] = Field(default_factory=list)  # feature columns that drifted
    notes: list[str] = Field(default_factory=list)

    def describe(self, limit: int = 8) -> str:
        """The drifted columns and why, in one line."""
        parts = []
        by_name = {c.name: c for c in self.columns}
        for name in self.drifted[:limit]:
            column = by_name.get(name)
            why = "column missing from the upload" if column is None else ", ".join(column.reasons)
            parts.append(f"{name!r} ({why})")
        more = len(self.drifted) - limit
        return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def psi(baseline: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    b = np.maximum(np.asarray(baseline, dtype=np.float64), _EPS)
    c = np.maximum(np.asarray(current, dtype=np.float64), _EPS)
    return float(np.sum((c - b) * np.log(c / b)))


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros(len(counts))


def _p_value(baseline: np.ndarray, current: np.ndarray) -> float:
    table = np.vstack([baseline, current])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(chi2_contingency(table, correction=False)[1])


def as_numbers(values: pl.Series, spelling: NumberSpelling | None = None) -> pl.Series:
    """Floats, read as training reads them (`values.parse_numeric`: the column's spelling,
    `1.234,5` or `$12` or `TRUE`, then plain numbers; the missing spellings as missing), with
    anything unreadable as missing (a column gone bad shows as missing)."""
    try:
        return parse_numeric(values, values.name, spelling)
    except InvalidValueError:
        pass
    # Some values are unreadable: each distinct value is read alone, as serving reads it.
    text = values.cast(pl.String).str.strip_chars()
    distinct = text.drop_nulls().unique().to_list()
    read = {value: _number_or_none(value, values.name, spelling) for value in distinct}
    return text.replace_strict(read, default=None, return_dtype=pl.Float64).alias(values.name)


def _number_or_none(value: str, name: str, spelling: NumberSpelling | None) -> float | None:
    try:
        number = json_number(value, 0, name, spelling)
    except InvalidValueError:
        return None
    return None if math.isnan(number) else number


def spellings_of(baseline: pl.DataFrame, columns: Iterable[str]) -> dict[str, NumberSpelling]:
    """How the training data wrote the numbers of its text `columns`, as training judged it
    (`tabular.spelling.detect_spelling` in the file's decimal mark); plain columns are left out."""
    decimal = frame_decimal(baseline)
    found = {}
    for name in columns:
        values = baseline.get_column(name)
        if values.dtype in (pl.String, pl.Categorical):
            spelling = detect_spelling(values, decimal)
            if spelling is not None and not spelling.plain:
                found[name] = spelling
    return found


def as_categories(values: pl.Series) -> pl.Series:
    """Strings; integral floats lose their '.0' so that 1 and 1.0 are one category."""
    if values.dtype.is_float():
        present = values.drop_nulls()
        if present.len() and bool((present % 1 == 0).all()):
            values = values.cast(pl.Int64)
    return values.cast(pl.String).str.strip_chars()


def _missing(values: pl.Series) -> float:
    return values.null_count() / values.len() if values.len() else 0.0


def _edge(value: float) -> str:
    return f"{value:.4g}"


def numeric_drift(
    name: str, baseline: pl.Series, current: pl.Series, spelling: NumberSpelling | None = None
) -> ColumnDrift:
    """PSI over the training deciles of a numeric column (both sides read in `spelling`)."""
    b_values, c_values = as_numbers(baseline, spelling), as_numbers(current, spelling)
    b = b_values.drop_nulls().to_numpy()
    c = c_values.drop_nulls().to_numpy()
    quantiles = np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1]
    edges = np.unique(np.quantile(b, quantiles)) if len(b) else np.empty(0)
    k = len(edges) + 1
    b_counts = np.bincount(np.searchsorted(edges, b, side="right"), minlength=k)
    c_counts = np.bincount(np.searchsorted(edges, c, side="right"), minlength=k)
    labels = (
        [f"< {_edge(edges[0])}"]
        + [f"[{_edge(lo)}, {_edge(hi)})" for lo, hi in itertools.pairwise(edges)]
        + [f">= {_edge(edges[-1])}"]
        if len(edges)
        else ["all values"]
    )
    return _finish(
        name,
        "numeric",
        b_counts,
        c_counts,
        labels,
        _missing(b_values),
        _missing(c_values),
    )


def categorical_drift(name: str, baseline: pl.Series, current: pl.Series) -> ColumnDrift:
    """PSI over the frequent training categories, the rest, and categories never seen."""
    b_values, c_values = as_categories(baseline), as_categories(current)
    b_counts = b_values.drop_nulls().value_counts(sort=True, name="n")
    c_counts = c_values.drop_nulls().value_counts(sort=True, name="n")
    b_map = {str(v): int(n) for v, n in b_counts.iter_rows()}
    c_map = {str(v): int(n) for v, n in c_counts.iter_rows()}
    top = list(b_map)[:TOP_CATEGORIES]
    rest = set(b_map) - set(top)
    new = [v for v in c_map if v not in b_map]
    labels = top + ([OTHER] if rest else []) + ([NEW] if new else [])
    b_vec = [b_map[v] for v in top] + ([sum(b_map[v] for v in rest)] if rest else [])
    c_vec = [c_map.get(v, 0) for v in top] + ([sum(c_map.get(v, 0) for v in rest)] if rest else [])
    if new:
        b_vec.append(0)
        c_vec.append(sum(c_map[v] for v in new))
    total = sum(b_map.values()) or 1
    # Only categories that mattered in training are worth naming as vanished.
    vanished = [v for v, n in b_map.items() if v not in c_map and n / total >= 0.01]
    drift = _finish(
        name,
        "categorical",
        np.array(b_vec, dtype=np.int64),
        np.array(c_vec, dtype=np.int64),
        labels,
        _missing(b_values),
        _missing(c_values),
    )
    drift.new_categories = new[:_LISTED]
    drift.vanished_categories = vanished[:_LISTED]
    return drift


def _finish(
    name: str,
    kind: Kind,
    b_counts: np.ndarray,
    c_counts: np.ndarray,
    labels: list[str],
    b_missing: float,
    c_missing: float,
) -> ColumnDrift:
    b_share, c_share = _shares(b_counts), _shares(c_counts)
    compared = b_counts.sum() > 0 and c_counts.sum() > 0
    value = psi(b_share, c_share) if compared else 0.0
    p = _p_value(b_counts, c_counts) if compared else 1.0
    reasons = []
    if value >= PSI_THRESHOLD and p < P_VALUE:
        reasons.append(f"PSI {value:.2f}")
    if abs(c_missing - b_missing) >= MISSING_CHANGE:
        reasons.append(f"missing {b_missing:.0%} -> {c_missing:.0%}")
    return ColumnDrift(
        name=name,
        kind=kind,
        psi=round(value, 6),
        p_value=p if math.isfinite(p) else 1.0,
        baseline_missing=round(b_missing, 6),
        current_missing=round(c_missing, 6),
        bins=labels,
        baseline=[round(float(v), 6) for v in b_share],
        current=[round(float(v), 6) for v in c_share],
        drifted=bool(reasons),
        reasons=reasons,
    )


def compare_frames(
    baseline: pl.DataFrame,
    current: pl.DataFrame,
    kinds: dict[str, str],
    *,
    known_columns: list[str] | None = None,
    target: str | None = None,
    target_kind: Kind = "categorical",
    spellings: Mapping[str, NumberSpelling] | None = None,
) -> tuple[list[ColumnDrift], list[str], list[str], dict[str, str]]:
    """Compare every feature column named in `kinds` (numeric | categorical | datetime).

    Returns (column drifts most shifted first, new columns, vanished feature columns, skipped
    columns with why). `known_columns` are all columns training saw (features or not), so only
    truly new columns are reported as new; the target is compared too but never counts as a
    drifted feature. Numeric columns are read in their `spellings` (a fitted transform's
    `NumericColumn.spelling`); without them, as the baseline's text writes them
    (`spellings_of`), so a column of `1.234,5` or `$12` is compared as numbers.
    """
    known = set(known_columns if known_columns is not None else baseline.columns)
    new_columns = [c for c in current.columns if c not in known and c != target]
    vanished = [c for c in kinds if c not in current.columns]
    skipped: dict[str, str] = {}
    drifts: list[ColumnDrift] = []
    if spellings is None:
        numeric = [c for c, k in kinds.items() if k == "numeric" and c in baseline.columns]
        spellings = spellings_of(baseline, numeric)
    for name, kind in kinds.items():
        if name not in current.columns:
            continue
        if name not in baseline.columns:
            skipped[name] = "not in the training data file"
        elif kind == "numeric":
            drifts.append(numeric_drift(name, baseline[name], current[name], spellings.get(name)))
        elif kind == "categorical":
            drifts.append(categorical_drift(name, baseline[name], current[name]))
        else:
            skipped[name] = f"{kind} column: its values move with time by nature"
    if target and target in baseline.columns and target in current.columns:
        compare = numeric_drift if target_kind == "numeric" else categorical_drift
        drift = compare(target, baseline[target], current[target])
        drift.role = "target"
        drifts.append(drift)
    drifts.sort(key=lambda d: (not d.drifted, -d.psi))
    return drifts, new_columns, vanished, skipped
