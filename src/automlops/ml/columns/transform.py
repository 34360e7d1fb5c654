"""The fitted preprocessing: raw columns in, a numeric feature matrix out.

Fitted on the training split only and stored as JSON, so training and serving apply exactly the
same steps and loading it runs no code.

Each column kind is a pair: what was learnt (`NumericColumn`, `CategoricalColumn`,
`DatetimeColumn`: data, stored) and how it encodes (`NumericEncoder`, ...: the behaviour, over
one or several columns of the kind). An encoder reads its columns' raw values, from a polars
frame or from JSON rows, into one array, and writes that array into its slots of the feature
matrix; the writing, where the kind's semantics live, is one method used by every path.
`FittedTransform.compile()` builds the encoders once; a `CompiledTransform` is what training
and serving call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from enum import StrEnum
from itertools import chain, repeat
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, NamedTuple, TypeVar, cast

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from automlops.ml.columns.values import (
    FLOAT32_MAX,
    PLAIN,
    InvalidValueError,
    NestedValueError,
    as_category,
    category_key,
    check_range,
    date_parts,
    detect_date_format,
    first_nested,
    json_number,
    looks_boolean,
    parse_datetime,
    parse_numeric,
)
from automlops.tabular.spelling import NumberSpelling, detect_spelling

if TYPE_CHECKING:
    from automlops.tabular.schema import ColumnProfile

__all__ = [
    "FLOAT32_MAX",
    "GROUPED_MAX_ROWS",
    "MAX_CATEGORIES",
    "CategoricalColumn",
    "CategoricalEncoder",
    "Column",
    "ColumnKind",
    "CompiledTransform",
    "DatetimeColumn",
    "DatetimeEncoder",
    "FittedTransform",
    "InvalidValueError",
    "NestedValueError",
    "NumericColumn",
    "NumericEncoder",
    "fit_column",
    "infer_kind",
    "rows_to_frame",
]

MAX_CATEGORIES = 64  # most frequent categories kept per column; the rest count as unseen
# Categories seen fewer times are treated like unseen ones (too rare to learn from), once
# the data is large enough for such a floor to mean anything.
MIN_CATEGORY_COUNT = 3
_RARE_SHARE = 0.001
_DATE_PARTS = ("year", "month", "day", "weekday", "hour", "days")


class ColumnKind(StrEnum):
    numeric = "numeric"
    categorical = "categorical"
    datetime = "datetime"


# --- What each kind learns (stored as JSON)


class NumericColumn(BaseModel):
    """A number; missing values take the training median, plus a 0/1 feature saying so when
    training had missing values.

    `spelling` is how the file wrote the numbers when not plain (`1.234,5`, `$12`, `12%`,
    `TRUE`): serving reads that spelling and plain numbers alike.
    """

    kind: Literal[ColumnKind.numeric] = ColumnKind.numeric
    name: str
    fill: float
    missing_indicator: bool = False
    spelling: NumberSpelling | None = None

    @classmethod
    def fit(cls, values: pl.Series, decimal: Literal[".", ","] = ".") -> NumericColumn:
        spelling = None
        if values.dtype in (pl.String, pl.Categorical):
            spelling = detect_spelling(values, decimal)
            if spelling is not None and spelling.plain:
                spelling = None
        parsed = parse_numeric(values, values.name, spelling)
        median = parsed.median()  # typed as any scalar; a float for a Float64 column
        return cls(
            name=values.name,
            fill=0.0 if median is None else float(cast(float, median)),
            missing_indicator=parsed.null_count() > 0,
            spelling=spelling,
        )

    def describe(
        self, values: pl.Series, profile: ColumnProfile, counts: pl.DataFrame | None = None
    ) -> None:
        """Fill the schema's profile of this feature from its training values."""
        numbers = parse_numeric(values, self.name, self.spelling)
        profile.min, profile.max = _float(numbers.min()), _float(numbers.max())
        profile.mean = _float(numbers.mean())
        profile.parse = (self.spelling or PLAIN).describe()
        profile.decision = "feature: numeric"
        if self.spelling is not None:
            profile.decision += f" (read as {profile.parse})"
        if profile.missing:
            profile.decision += f", missing -> median {self.fill:g} + indicator"

    def width(self) -> int:
        return 2 if self.missing_indicator else 1

    def feature_names(self) -> list[str]:
        return [self.name, f"{self.name}__missing"] if self.missing_indicator else [self.name]


class CategoricalColumn(BaseModel):
    """One-hot over the kept categories; unseen, rare and missing values set none of them.

    With `frequencies` (many categories) one more feature carries each category's share of
    training rows, so the long tail is not lost.
    """

    kind: Literal[ColumnKind.categorical] = ColumnKind.categorical
    name: str
    categories: list[str]
    frequencies: dict[str, float] | None = None

    @classmethod
    def fit(cls, values: pl.Series, counts: pl.DataFrame | None = None) -> CategoricalColumn:
        """`counts`: `value_counts(values)` when the caller has it (a pass over every row)."""
        if values.dtype in (pl.String, pl.Categorical):
            # Counted first, stripped after: the same counts as stripping every row, but the
            # strings handled are the distinct values (a big upload has millions of rows).
            table = (
                (value_counts(values) if counts is None else counts)
                .drop_nulls()
                .with_columns(pl.col("value").cast(pl.String).str.strip_chars())
                .group_by("value")
                .agg(pl.col("count").sum())
            )
        else:
            table = value_counts(as_category(values)).drop_nulls()
        table = table.sort(["count", "value"], descending=[True, False])
        floor = max(1.0, min(MIN_CATEGORY_COUNT, _RARE_SHARE * values.len()))
        frequent = table.filter(pl.col("count") >= floor)
        categories = frequent.get_column("value").head(MAX_CATEGORIES).to_list()
        frequencies = None
        if table.height > MAX_CATEGORIES:
            total = float(table["count"].sum())
            frequencies = {str(k): round(v / total, 6) for k, v in table.iter_rows()}
        return cls(name=values.name, categories=categories, frequencies=frequencies)

    def describe(
        self, values: pl.Series, profile: ColumnProfile, counts: pl.DataFrame | None = None
    ) -> None:
        """Fill the schema's profile of this feature from its training values (`counts`:
        their `value_counts`, when the caller has it)."""
        table = (value_counts(values) if counts is None else counts).drop_nulls()
        profile.top = [(str(v), int(c)) for v, c in table.head(10).iter_rows()]
        profile.parse = "text"
        kept = len(self.categories)
        profile.decision = f"feature: one-hot of {kept} categories"
        if profile.unique - (profile.missing > 0) > kept:
            profile.decision += " (rarer ones count as unseen"
            profile.decision += "; plus a frequency feature)" if self.frequencies else ")"

    def width(self) -> int:
        return len(self.categories) + (1 if self.frequencies is not None else 0)

    def feature_names(self) -> list[str]:
        names = [f"{self.name}={c}" for c in self.categories]
        return [*names, f"{self.name}__frequency"] if self.frequencies is not None else names


class DatetimeColumn(BaseModel):
    """A date or timestamp split into calendar parts and days since 1970; a missing part takes
    its training median."""

    kind: Literal[ColumnKind.datetime] = ColumnKind.datetime
    name: str
    format: str
    parts: list[str]
    fill: dict[str, float]

    @classmethod
    def fit(cls, values: pl.Series) -> DatetimeColumn:
        fmt = detect_date_format(values) or "%Y-%m-%d"
        parts = date_parts(parse_datetime(values, fmt, values.name), list(_DATE_PARTS))
        has_time = fmt.count("%H") > 0
        kept = [p for p in _DATE_PARTS if (p != "hour" or has_time) and np.nanstd(parts[p]) > 0]
        fill = {p: float(np.nanmedian(parts[p])) for p in kept}
        return cls(name=values.name, format=fmt, parts=kept, fill=fill)

    def describe(
        self, values: pl.Series, profile: ColumnProfile, counts: pl.DataFrame | None = None
    ) -> None:
        """Fill the schema's profile of this feature from its training values."""
        profile.parse = f"dates ({self.format})"
        profile.decision = f"feature: date ({self.format}) -> {', '.join(self.parts)}"

    def width(self) -> int:
        return len(self.parts)

    def feature_names(self) -> list[str]:
        return [f"{self.name}__{p}" for p in self.parts]


def _float(value: object) -> float | None:
    return None if value is None else float(cast(float, value))  # a number here


Column = Annotated[NumericColumn | CategoricalColumn | DatetimeColumn, Field(discriminator="kind")]


def fit_column(
    values: pl.Series,
    kind: ColumnKind,
    *,
    decimal: Literal[".", ","] = ".",
    counts: pl.DataFrame | None = None,
) -> Column:
    """Learn one column's steps from training values (`decimal`: the file's decimal mark,
    `values.frame_decimal`; `counts`: their `value_counts`, when the caller has it)."""
    if kind is ColumnKind.numeric:
        return NumericColumn.fit(values, decimal)
    if kind is ColumnKind.categorical:
        return CategoricalColumn.fit(values, counts)
    return DatetimeColumn.fit(values)


def value_counts(values: pl.Series) -> pl.DataFrame:
    """Each distinct value ("value", missing included) and its rows ("count"), most frequent
    first; named so that no column's own name can clash."""
    return values.rename("value").value_counts(sort=True, name="count")


def infer_kind(values: pl.Series, *, decimal: Literal[".", ","] = ".") -> ColumnKind:
    """Numeric when every present value reads as a number (plain, or as people write them in a
    file of this decimal mark: `1.234,5`, `$1,234.50`, `12%`, `TRUE`), datetime when (nearly)
    every one reads as a date in one format, else categorical."""
    if values.dtype.is_numeric() or values.dtype == pl.Boolean:
        return ColumnKind.numeric
    if values.dtype in (pl.Datetime, pl.Date):
        return ColumnKind.datetime
    # Both tests hold for every value or not: judged on the distinct values, a few.
    present = values.drop_nulls().unique(maintain_order=True).cast(pl.String).str.strip_chars()
    present = present.filter(present != "")
    if looks_boolean(present):
        return ColumnKind.numeric  # booleans spelt out
    if present.len() and present.cast(pl.Float64, strict=False).null_count() == 0:
        return ColumnKind.numeric
    if present.len() and detect_spelling(present, decimal) is not None:
        return ColumnKind.numeric  # numbers written for people
    text = values if values.dtype in (pl.String, pl.Categorical) else values.cast(pl.String)
    if present.len() and detect_date_format(text) is not None:
        return ColumnKind.datetime
    return ColumnKind.categorical


# --- How each kind encodes (compiled from what it learnt)

V = TypeVar("V")
_NUMBERS = frozenset({int, float, type(None)})


def _gather(rows: list[dict[str, Any]], name: str) -> list[Any]:
    """One column of JSON rows (None where a row lacks it), by C-level iteration."""
    return list(map(dict.get, rows, repeat(name, len(rows))))


def _frame_column(frame: pl.DataFrame, name: str) -> pl.Series | None:
    """One column of a frame, None when the frame lacks it."""
    column: pl.Series | None = frame.get_column(name, default=None)
    return column


class KindEncoder(ABC, Generic[V]):
    """Encodes columns of one kind into their slots of the feature matrix.

    `read_frame` and `read_rows` turn raw values into the kind's array of values (`V`), raising
    InvalidValueError for the first value that cannot be read, column by column in order;
    `write` puts such an array into the matrix: the kind's encoding, whichever path read it.
    """

    names: list[str]  # of the columns it encodes, in input order

    @abstractmethod
    def read_frame(self, frame: pl.DataFrame) -> V:
        """The values of a polars frame (any dtype; an absent column is all missing)."""

    @abstractmethod
    def read_rows(self, rows: list[dict[str, Any]]) -> V:
        """The values of JSON rows (an absent key is missing)."""

    def read_frame_fast(self, frame: pl.DataFrame) -> V | None:
        """`read_frame`, or None where it would raise (the caller decides which error is
        first, in column order across kinds)."""
        try:
            return self.read_frame(frame)
        except InvalidValueError:
            return None

    def read_rows_fast(self, rows: list[dict[str, Any]]) -> V | None:
        """`read_rows` for the common case, or None when some value needs `read_rows` (the
        caller decides which error is first, in column order across kinds)."""
        try:
            return self.read_rows(rows)
        except InvalidValueError:
            return None

    @abstractmethod
    def write(self, values: V, out: np.ndarray) -> None:
        """Write the encoded values into `out` (rows x all features), in place."""


class _FilledEncoder(KindEncoder[np.ndarray]):
    """Kinds whose features are numbers (one row of values per feature, NaN for missing) that
    take a fitted fill where missing, and for some features a 0/1 missing indicator."""

    def __init__(
        self, targets: list[int], fills: list[float], flagged: list[int], indicators: list[int]
    ) -> None:
        self._targets = np.array(targets, dtype=np.intp)
        self._fills = np.array(fills, dtype=np.float64).reshape(-1, 1)
        self._flagged = np.array(flagged, dtype=np.intp)  # features with an indicator...
        self._indicators = np.array(indicators, dtype=np.intp)  # ...and its position

    def write(self, values: np.ndarray, out: np.ndarray) -> None:
        missing = np.isnan(values)
        out[:, self._targets] = np.where(missing, self._fills, values).T
        if len(self._flagged):
            out[:, self._indicators] = missing[self._flagged].T


class NumericEncoder(_FilledEncoder):
    """Numeric columns: values (columns x rows) as float64, NaN for missing."""

    def __init__(self, columns: list[NumericColumn], offsets: list[int]) -> None:
        self.names = [c.name for c in columns]
        self._spellings = [c.spelling for c in columns]
        flagged = [j for j, c in enumerate(columns) if c.missing_indicator]
        super().__init__(
            targets=offsets,
            fills=[c.fill for c in columns],
            flagged=flagged,
            indicators=[offsets[j] + 1 for j in flagged],
        )

    def read_frame(self, frame: pl.DataFrame) -> np.ndarray:
        values = np.full((len(self.names), frame.height), np.nan)
        for j, (name, spelling) in enumerate(zip(self.names, self._spellings, strict=True)):
            raw = _frame_column(frame, name)
            if raw is not None:
                values[j] = parse_numeric(raw, name, spelling).to_numpy()
                check_range(values[j], name, raw)
        return values

    def read_rows_fast(self, rows: list[dict[str, Any]]) -> np.ndarray | None:
        # All columns at once: one type check, one conversion, one range check.
        n, get = len(rows), dict.get
        raw = [list(map(get, rows, repeat(name, n))) for name in self.names]  # _gather, inlined
        if not _NUMBERS.issuperset(chain.from_iterable(map(map, repeat(type), raw))):
            return None  # text, booleans or nested values: read column by column
        values = np.array(raw, dtype=np.float64).reshape(len(raw), n)
        if (np.abs(values) > FLOAT32_MAX).any():
            return None
        return values

    def read_rows(self, rows: list[dict[str, Any]]) -> np.ndarray:
        values = self.read_rows_fast(rows)
        if values is not None:
            return values
        values = np.empty((len(self.names), len(rows)))
        for j, (name, spelling) in enumerate(zip(self.names, self._spellings, strict=True)):
            raw = _gather(rows, name)
            if _NUMBERS.issuperset(map(type, raw)):
                values[j] = np.array(raw, dtype=np.float64)
            else:
                first_nested(raw, name)
                values[j] = [json_number(v, i, name, spelling) for i, v in enumerate(raw)]
            check_range(values[j], name, raw)
        return values


class DatetimeEncoder(_FilledEncoder):
    """Date columns: values (parts of every column x rows) as float64, NaN for missing."""

    def __init__(self, columns: list[DatetimeColumn], offsets: list[int]) -> None:
        self.names = [c.name for c in columns]
        self._columns = columns
        super().__init__(
            targets=[
                o + i for c, o in zip(columns, offsets, strict=True) for i in range(c.width())
            ],
            fills=[c.fill[p] for c in columns for p in c.parts],
            flagged=[],
            indicators=[],
        )

    def _parts(self, texts: Iterable[pl.Series | None], n: int) -> np.ndarray:
        """Parse each column in turn (`texts` may be lazy: the first bad column raises)."""
        values = np.full((len(self._targets), n), np.nan)
        row = 0
        for column, raw in zip(self._columns, texts, strict=True):
            if raw is not None:
                parts = date_parts(parse_datetime(raw, column.format, column.name), column.parts)
                for i, part in enumerate(column.parts):
                    values[row + i] = parts[part]
            row += column.width()
        return values

    def read_frame(self, frame: pl.DataFrame) -> np.ndarray:
        return self._parts((_frame_column(frame, name) for name in self.names), frame.height)

    def read_rows(self, rows: list[dict[str, Any]]) -> np.ndarray:
        return self._parts((self._text(rows, name) for name in self.names), len(rows))

    @staticmethod
    def _text(rows: list[dict[str, Any]], name: str) -> pl.Series:
        raw = _gather(rows, name)
        first_nested(raw, name)
        return pl.Series(name, [None if v is None else str(v) for v in raw], dtype=pl.String)


class Codes(NamedTuple):
    """A categorical encoder's values."""

    codes: np.ndarray  # columns x rows: one-hot position of each value, NaN for none
    shares: np.ndarray  # columns with frequencies x rows: each value's training share


def _in_enum(raw: pl.Series, enum: pl.Enum) -> pl.Series:
    """Raw values as `enum` values, read as `as_category` reads them (null: no category).

    Text is looked up as it is first: a category has no surrounding space, so only the values
    that miss can differ once stripped, and only those are stripped (stripping every value
    copies every string)."""
    if raw.dtype != pl.String:
        return as_category(raw).cast(enum, strict=False)
    found = raw.cast(enum, strict=False)
    missed = found.is_null() & raw.is_not_null()
    if not missed.any():
        return found
    again = raw.filter(missed).str.strip_chars().cast(enum, strict=False)
    return found.scatter(missed.arg_true(), again)


class CategoricalEncoder(KindEncoder[Codes]):
    """Categorical columns: each value's position among its column's categories."""

    def __init__(self, columns: list[CategoricalColumn], offsets: list[int]) -> None:
        self.names = [c.name for c in columns]
        # Keyed by any JSON value: a value that is not a training category string misses.
        self._indexes: list[dict[Any, int]] = [
            {c: i for i, c in enumerate(col.categories)} for col in columns
        ]
        self._offsets = np.array(offsets, dtype=np.intp)
        self._frequencies = [
            (j, c.frequencies) for j, c in enumerate(columns) if c.frequencies is not None
        ]
        self._frequency_targets = np.array(
            [offsets[j] + len(columns[j].categories) for j, _ in self._frequencies],
            dtype=np.intp,
        )
        # The frame path looks values up through polars enums (a category's position is its
        # physical code): a cast and a take, not a hash lookup per row.
        self._enums = [pl.Enum(c.categories) for c in columns]
        self._share_enums = [pl.Enum(list(f)) for _, f in self._frequencies]
        # Each share by its position in the enum, then 0 for a value outside it.
        self._share_tables = [np.array([*f.values(), 0.0]) for _, f in self._frequencies]

    def read_frame(self, frame: pl.DataFrame) -> Codes:
        n = frame.height
        texts = [_frame_column(frame, name) for name in self.names]
        codes = np.full((len(self.names), n), np.nan)
        for j, (enum, text) in enumerate(zip(self._enums, texts, strict=True)):
            if text is not None:  # a value that is no category: null, so NaN
                found = _in_enum(text, enum).to_physical().cast(pl.Float64)
                codes[j] = found.to_numpy()
        shares = np.zeros((len(self._frequencies), n))
        for k, ((j, _), enum) in enumerate(zip(self._frequencies, self._share_enums, strict=True)):
            text = texts[j]
            if text is not None:
                table = self._share_tables[k]
                position = _in_enum(text, enum).to_physical().fill_null(len(table) - 1)
                shares[k] = table[position.to_numpy()]
        return Codes(codes, shares)

    def read_rows(self, rows: list[dict[str, Any]]) -> Codes:
        n, get = len(rows), dict.get
        raw = [list(map(get, rows, repeat(name, n))) for name in self.names]  # _gather, inlined
        try:
            # Text as in training hits the index directly (None where it misses).
            found = [list(map(index.get, r)) for index, r in zip(self._indexes, raw, strict=True)]
        except TypeError:  # unhashable: an object or an array
            for name, r in zip(self.names, raw, strict=True):
                first_nested(r, name)
            raise
        codes = np.array(found, dtype=np.float64).reshape(len(found), n)
        missed = np.isnan(codes)
        if missed.any():
            # Unseen, missing, padded with spaces, a number or a boolean: by category key.
            for j, i in zip(*np.nonzero(missed), strict=True):
                key = category_key(raw[j][i])
                code = None if key is None else self._indexes[j].get(key)
                if code is not None:
                    codes[j, i] = code
        shares = np.zeros((len(self._frequencies), n))
        for k, (j, frequencies) in enumerate(self._frequencies):
            keys = map(category_key, raw[j])
            shares[k] = [0.0 if key is None else frequencies.get(key, 0.0) for key in keys]
        return Codes(codes, shares)

    def write(self, values: Codes, out: np.ndarray) -> None:
        codes, shares = values
        width = out.shape[1]
        if not out.flags.c_contiguous:
            raise ValueError("the feature matrix must be C-contiguous")
        for j, column in enumerate(codes):
            # One column at a time, by flat position: a 1-D scatter, without the index arrays
            # of every column at once that a 2-D fancy assignment builds.
            (rows,) = np.nonzero(~np.isnan(column))
            flat = rows * width + self._offsets[j] + column[rows].astype(np.intp)
            out.ravel()[flat] = 1.0  # a view: `out` is C-contiguous
        if len(self._frequencies):
            out[:, self._frequency_targets] = shares.T


_ENCODERS: dict[ColumnKind, Callable[[list[Any], list[int]], KindEncoder[Any]]] = {
    ColumnKind.numeric: NumericEncoder,
    ColumnKind.categorical: CategoricalEncoder,
    ColumnKind.datetime: DatetimeEncoder,
}


# Frames up to this many rows are read a kind at a time (one array per kind); larger ones a
# column at a time, so memory stays that of one column beyond the matrix.
GROUPED_MAX_ROWS = 8192


class CompiledTransform:
    """A FittedTransform ready to encode, built once (by `FittedTransform.compile`).

    Batches are encoded a kind at a time: all numeric columns as one array, all categorical
    ones by one scatter, a fixed number of numpy calls whatever the number of columns (which
    dominates small serving batches). A kind holding a value its fast reading does not take
    (text in a numeric column, a number out of range, an object, an unreadable date) is read
    again column by column, in input order, so the error reported is the first bad value of
    the first bad column, whichever path.
    """

    def __init__(self, transform: FittedTransform) -> None:
        columns = transform.columns
        offsets = np.cumsum([0, *(c.width() for c in columns)]).tolist()
        self.width: int = offsets[-1]
        grouped: dict[ColumnKind, tuple[list[Any], list[int]]] = {}
        for column, offset in zip(columns, offsets, strict=False):
            members, places = grouped.setdefault(column.kind, ([], []))
            members.append(column)
            places.append(offset)
        kinds = list(grouped)
        self._by_kind = [_ENCODERS[kind](*grouped[kind]) for kind in kinds]
        self._by_column = [
            (kinds.index(c.kind), _ENCODERS[c.kind]([c], [o]))
            for c, o in zip(columns, offsets, strict=False)
        ]

    def encode_frame(self, frame: pl.DataFrame) -> np.ndarray:
        """Raw columns (any dtype, strings included; absent columns = all missing) -> float32.

        Raises InvalidValueError naming the first unreadable value.
        """
        return self._encode(
            frame.height,
            (lambda e: e.read_frame_fast(frame)) if frame.height <= GROUPED_MAX_ROWS else None,
            lambda e: e.read_frame(frame),
        )

    def encode_rows(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """JSON rows -> float32, the same matrix as `encode_frame(rows_to_frame(rows, ...))`
        (a test holds the paths together). Raises InvalidValueError (NestedValueError for
        objects and arrays) naming the first unreadable value."""
        return self._encode(
            len(rows), lambda e: e.read_rows_fast(rows), lambda e: e.read_rows(rows)
        )

    def _encode(
        self,
        n: int,
        fast: Callable[[KindEncoder[Any]], Any] | None,
        exact: Callable[[KindEncoder[Any]], Any],
    ) -> np.ndarray:
        """Read each kind with `fast` (None: that kind needs `exact`), then the kinds left
        column by column with `exact`; without `fast`, every column with `exact`."""
        out = np.zeros((n, self.width), dtype=np.float32)
        slow: set[int] = set()
        for kind, encoder in enumerate(self._by_kind):
            values = None if fast is None else fast(encoder)
            if values is None:
                slow.add(kind)
            else:
                encoder.write(values, out)
        if slow:
            for kind, encoder in self._by_column:
                if kind in slow:
                    encoder.write(exact(encoder), out)
        return out


class FittedTransform(BaseModel):
    """Per-column steps in input order; `compile()` makes the encoder that applies them."""

    format_version: int = 1
    columns: list[Column]

    @property
    def input_columns(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def feature_names(self) -> list[str]:
        return [name for column in self.columns for name in column.feature_names()]

    @property
    def feature_columns(self) -> list[str]:
        """The input column each feature is encoded from, in feature order."""
        return [column.name for column in self.columns for _ in range(column.width())]

    def compile(self) -> CompiledTransform:
        """The encoder of these steps (build it once and keep it to encode many batches)."""
        return CompiledTransform(self)

    def apply(self, frame: pl.DataFrame) -> np.ndarray:
        """Encode one frame (`compile().encode_frame(frame)`)."""
        return self.compile().encode_frame(frame)


def rows_to_frame(instances: list[dict[str, Any]], columns: list[str]) -> pl.DataFrame:
    """JSON instances to a frame of the given columns; each column keeps its values' own type."""
    data: dict[str, pl.Series] = {}
    for name in columns:
        values = [row.get(name) for row in instances]
        kinds = {type(v) for v in values if v is not None}
        try:
            if bool in kinds and len(kinds) > 1:
                # polars would read true as 1 beside integers; the row path reads "true".
                raise TypeError("booleans mixed with other types")
            data[name] = pl.Series(name, values, strict=True)
        except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
            # Mixed types (e.g. 3 and "3"): compare as text, parsed per column later; each
            # value as the row path reads it (1.0 is the category "1", as 1 is).
            data[name] = pl.Series(name, [category_key(v) for v in values], dtype=pl.String)
    return pl.DataFrame(data, height=len(instances))
