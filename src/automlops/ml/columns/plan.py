"""What preprocessing does with each column: a feature of some kind, or dropped and why.

Row identifiers are judged on the whole file (a row number is only recognisable with every row
in view: on a shuffled training part it is neither contiguous nor in order); everything else is
decided on the training rows only. Every decision is recorded in the schema JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Literal, cast

import numpy as np
import polars as pl

from automlops.ml.columns.leaks import DROP_SCORE, LeakProbe
from automlops.ml.columns.target import TargetSpec
from automlops.ml.columns.transform import (
    Column,
    ColumnKind,
    FittedTransform,
    fit_column,
    infer_kind,
    value_counts,
)
from automlops.ml.columns.values import frame_decimal
from automlops.tabular.schema import ColumnProfile

_ID_WORDS = {"id", "uuid", "guid", "key", "number", "no", "nr", "index", "num", "rownames", "seqn"}
# Whole names of row identifiers as exports write them: R's write.csv and pandas' to_csv give
# the row names a blank header, which the CSV reader names column_1 (or pandas "Unnamed: 0").
_ID_NAMES = {"column_1", "rownames", "row.names", "unnamed: 0", "seqn", "row", "rowid", "#"}
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
MIN_ID_ROWS = 20  # fewer rows say too little to call a column an identifier
_ID_UNIQUE_SHARE = 0.95  # share of distinct values above which a text or integer column is an ID
_TEXT_MIN_WORDS = 4.0  # mean words per value from which a many-valued text column is free text
_TEXT_UNIQUE_SHARE = 0.5


def _looks_like_id_name(name: str) -> bool:
    """customer_id, EmployeeNumber, ID, row-no, rownames, Unnamed: 0: a row identifier's name."""
    if name.strip().lower() in _ID_NAMES:
        return True
    words = [w.lower() for w in _WORD.findall(name)]
    return bool(words) and (words[-1] in _ID_WORDS or words[0] == "id")


_ID_SPAN_RATIO = 1.5  # a row number's range is close to the row count (gaps: rows left out)


def row_identifier_reason(values: pl.Series) -> str | None:
    """Why a column of the whole file is a row identifier, or None.

    A row identifier has a distinct value on every row, and either an identifier's name, or
    integers in file order, or integers whose range is close to the row count (row numbers of
    a file sorted by something else). Judged before any split: the training part of a row
    number is a scattered sample, neither contiguous nor in order. The cheap tests come
    first, so that most columns of a big file cost no pass over distinct values.
    """
    n = values.len()
    if n < MIN_ID_ROWS or values.null_count():
        return None
    named = _looks_like_id_name(values.name)
    if values.dtype == pl.Categorical or values.dtype == pl.String:
        if named and values.n_unique() == n:
            return "ID-like (a distinct value on every row, named as an identifier)"
        return None
    if not values.dtype.is_integer():
        return None
    # An integer column's max and min are ints (polars types them as any scalar).
    span = int(cast(int, values.max())) - int(cast(int, values.min())) + 1
    if span < n:
        return None  # fewer possible values than rows: some repeat
    ordered = values.is_sorted() or values.is_sorted(descending=True)
    close = span <= _ID_SPAN_RATIO * n
    if not (named or ordered or close) or values.n_unique() != n:
        return None
    if named:
        return "ID-like (a distinct integer on every row, named as an identifier)"
    if ordered:
        return "ID-like (a distinct integer on every row, in file order)"
    return f"ID-like (a distinct integer on every row, range {span:,} for {n:,} rows)"


@dataclass(frozen=True)
class _Counts:
    """One column's training values counted once, for every judgement that needs them (a
    distinct count is a pass over millions of rows on a big upload)."""

    present: int  # values that are not missing
    distinct: int  # distinct present values

    @classmethod
    def of(cls, values: pl.Series, table: pl.DataFrame | None = None) -> _Counts:
        """Counted on `values`, or read off their `transform.value_counts` table."""
        missing = values.null_count()
        distinct = values.n_unique() if table is None else table.height
        return cls(values.len() - missing, distinct - (missing > 0))

    @property
    def unique_share(self) -> float:
        return self.distinct / self.present if self.present else 0.0


def _drop_reason(values: pl.Series, kind: ColumnKind, counts: _Counts) -> str | None:
    """Why a column should not be a feature (empty, constant, free text), or None."""
    if counts.present == 0:
        return "no values in training data"
    if counts.distinct < 2:
        return "constant in training data"
    unique_share = counts.unique_share
    if kind is ColumnKind.categorical and unique_share >= _TEXT_UNIQUE_SHARE:
        # Words are counted only for many-valued columns (counting costs a pass over the text).
        text = values.drop_nulls().cast(pl.String)
        mean = text.str.count_matches(r"\S+").mean()  # of counts: a float, or None
        words = float(cast(float, mean) or 0.0)
        if words >= _TEXT_MIN_WORDS:
            return f"free text ({unique_share:.0%} distinct values, {words:.1f} words on average)"
    return None


def _training_id_reason(values: pl.Series, kind: ColumnKind, counts: _Counts) -> str | None:
    """Why a column of the training rows is an identifier (nearly every value distinct), or
    None. Whole-file row numbers are caught before (`row_identifier_reason`)."""
    if values.len() < MIN_ID_ROWS or counts.present == 0:
        return None
    unique_share = counts.unique_share
    if kind is ColumnKind.categorical and unique_share >= _ID_UNIQUE_SHARE:
        return f"ID-like ({unique_share:.0%} of values distinct)"
    integral = kind is ColumnKind.numeric and values.dtype.is_integer()
    if integral and unique_share >= _ID_UNIQUE_SHARE:
        # max and min skip missing values; an integer column's are ints.
        span = int(cast(int, values.max())) - int(cast(int, values.min())) + 1
        if _looks_like_id_name(values.name) or span == counts.distinct:
            return "ID-like (a distinct integer per row)"
    return None


@dataclass
class ColumnPlan:
    """What preprocessing does with the columns: the fitted features, one profile per column
    (its `decision` says feature/target/dropped and why) and notes for the schema."""

    transform: FittedTransform
    profiles: list[ColumnProfile]
    notes: list[str] = field(default_factory=list)


def _identifier_or_leak(
    whole: pl.Series,
    values: pl.Series,
    kind: ColumnKind,
    counts: _Counts,
    probe: LeakProbe | None,
    notes: list[str],
) -> str | None:
    """Why a column is dropped as a row identifier (judged on every row of the file, `whole`,
    before the split: see `row_identifier_reason`) or as a leak of the target (judged on the
    training `values`); None to keep it. A leak below the drop score is noted, not dropped."""
    reason = row_identifier_reason(whole) or _training_id_reason(values, kind, counts)
    if reason is not None or probe is None:
        return reason
    leak = probe.score(values, numeric=kind is ColumnKind.numeric)
    if leak is not None and leak.drop:
        return f"target leak: {leak.describe()}"
    if leak is not None and leak.flagged:
        notes.append(
            f"column {whole.name!r} {leak.describe()}: kept (below the {DROP_SCORE} at which a "
            "leak is dropped); check it is known when predicting"
        )
    return None


def fit_columns(
    train: pl.DataFrame,
    target: TargetSpec,
    *,
    rows: np.ndarray | None = None,
    y: np.ndarray | None = None,
    keep: Collection[str] = (),
    decimal: Literal[".", ","] | None = None,
) -> ColumnPlan:
    """Decide and fit every column of the training rows.

    `decimal` is the file's decimal mark as the reader judged it (with the delimiter in view:
    `93,994` in a `;` file is a decimal comma); None judges it from the frame alone.

    With `rows`, the training rows are those rows of `train`, taken one column at a time (a
    big upload is never copied whole for its training part). Categorical columns are text
    stored compactly and are profiled as String. With `y` (the training rows' encoded
    target), features that alone predict it are flagged, and above `leaks.DROP_SCORE`
    dropped. Columns in `keep` stay features when they look like identifiers or leaks (the
    note says so); nothing keeps an empty, constant or duplicate column.
    """
    planner = _Planner(
        train=train,
        target=target,
        pick=_row_picker(train.height, rows),
        keep=keep,
        # Judged once per file, never per column or cell.
        decimal=frame_decimal(train) if decimal is None else decimal,
        probe=None if y is None else LeakProbe(y, target.task),
    )
    fitted, profiles = [], []
    for name in train.columns:
        profile, column = planner.plan(name)
        profiles.append(profile)
        if column is not None:
            fitted.append(column)
    return ColumnPlan(FittedTransform(columns=fitted), profiles, planner.notes)


@dataclass
class _Planner:
    """Judges and fits the columns of one training frame, one after another (a column can
    be a duplicate of an earlier one, and every judgement may add a note)."""

    train: pl.DataFrame
    target: TargetSpec
    pick: Callable[[pl.Series], pl.Series]  # a column's training rows
    keep: Collection[str]
    decimal: Literal[".", ","]
    probe: LeakProbe | None
    notes: list[str] = field(default_factory=list)
    seen: dict[int, str] = field(default_factory=dict)  # values' hash -> first such column

    def training_values(self, name: str) -> pl.Series:
        return self.pick(self.train.get_column(name))

    def plan(self, name: str) -> tuple[ColumnProfile, Column | None]:
        """A column's profile and, when it is a feature, its fitted steps."""
        values = self.training_values(name)
        # Text is counted value by value once, for its profile, its judgement and its fit.
        text = values.dtype in (pl.String, pl.Categorical)
        table = value_counts(values) if text and name != self.target.name else None
        counts = _Counts.of(values, table)
        profile = ColumnProfile(
            name=name,
            # Categorical is how preprocess stores text compactly: to people it is text.
            dtype=str(pl.String if values.dtype == pl.Categorical else values.dtype),
            decision="feature",
            missing=values.len() - counts.present,
            unique=counts.distinct + (counts.present < values.len()),
        )
        if name == self.target.name:
            profile.decision = "target"
            return profile, None
        present = values.null_count() < values.len()
        kind = infer_kind(values, decimal=self.decimal) if present else ColumnKind.numeric
        if kind is not ColumnKind.categorical and values.dtype == pl.Categorical:
            values = values.cast(pl.String)  # numbers or dates spelt out: parsed from text
        reason = self._drop_reason(name, values, kind, counts)
        if reason is not None:
            profile.decision = f"dropped: {reason}"
            return profile, None
        column = fit_column(values, kind, decimal=self.decimal, counts=table)
        profile.kind = kind.value
        column.describe(values, profile, table)
        return profile, column

    def _drop_reason(
        self, name: str, values: pl.Series, kind: ColumnKind, counts: _Counts
    ) -> str | None:
        """Why a column is no feature (empty, constant, a duplicate, an identifier or a leak
        not kept by the manifest), None when it is one."""
        digest = hash((str(values.dtype), *values.head(5000).hash(seed=7).to_list()))
        reason = _drop_reason(values, kind, counts)
        first = self.seen.setdefault(digest, name)
        if reason is None and first != name and values.equals(self.training_values(first)):
            reason = f"duplicate of column {first!r}"
        if reason is None:
            whole = self.train.get_column(name)
            reason = _identifier_or_leak(whole, values, kind, counts, self.probe, self.notes)
            if reason is not None and name in self.keep:
                self.notes.append(f"column {name!r} kept as the manifest asks, though {reason}")
                reason = None
        return reason


def _row_picker(height: int, rows: np.ndarray | None) -> Callable[[pl.Series], pl.Series]:
    """How a column's training rows are taken: all of them, or `rows` of them.

    Rows in file order (as `ml.splits` gives them) are taken by a mask, a filter that reads
    the column once in order, three times cheaper than gathering them by index on a big
    upload; any other order is gathered as given (the rows match `y` one to one)."""
    if rows is None:
        return lambda values: values
    if len(rows) and not bool((np.diff(rows) > 0).all()):
        return lambda values: values.gather(rows)
    mask = np.zeros(height, dtype=bool)
    mask[rows] = True
    kept = pl.Series(mask)
    return lambda values: values.filter(kept)
