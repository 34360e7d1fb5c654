"""The fitted preprocessing: raw columns in, a numeric feature matrix out.

Fitted on the training split only and stored as JSON, so training and serving apply exactly the
same steps and loading it runs no code.
"""

from __future__ import annotations

import math
from enum import StrEnum
from itertools import chain, repeat
from typing import Annotated, Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from automlops.errors import PermanentError

MAX_CATEGORIES = 64  # most frequent categories kept per column; the rest count as unseen
_TRUE_FALSE = {"true": "1", "false": "0", "yes": "1", "no": "0"}


class ColumnKind(StrEnum):
    numeric = "numeric"
    categorical = "categorical"
    datetime = "datetime"


# Formats tried, in order, when a text column may hold dates; the first that reads (nearly)
# every training value is stored, so serving parses exactly as training did.
DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y/%m/%d",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d.%m.%Y",
    "%d-%m-%Y",
    "%Y%m%d",
)
_DATE_PARTS = ("year", "month", "day", "weekday", "hour", "days")


class InvalidValueError(PermanentError):
    """A value that cannot be read as its column's type."""

    def __init__(self, row: int, column: str, value: Any, expected: str = "a number") -> None:
        self.row = row
        self.column = column
        self.value = value
        super().__init__(f"row {row}, column {column!r}: cannot read {value!r} as {expected}")


FLOAT32_MAX = float(np.finfo(np.float32).max)  # models read float32 features


def check_range(values: np.ndarray, name: str, raw: Any) -> None:
    """Refuse numbers beyond float32: the model would see infinities and answer NaN."""
    out_of_range = np.abs(values) > FLOAT32_MAX  # NaN compares False: missing is fine
    if out_of_range.any():
        row = int(np.flatnonzero(out_of_range)[0])
        value = raw[row]
        raise InvalidValueError(
            row, name, value, f"a number: {value!r} is out of range (within ±{FLOAT32_MAX:.4g})"
        )


class NumericColumn(BaseModel):
    kind: Literal[ColumnKind.numeric] = ColumnKind.numeric
    name: str
    fill: float
    missing_indicator: bool = False

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

    def width(self) -> int:
        return len(self.categories) + (1 if self.frequencies is not None else 0)

    def index(self) -> dict[str, int]:
        """Category -> one-hot position (built once: it is on the serving hot path)."""
        cached = self.__dict__.get("_index")
        if cached is None:
            cached = {c: i for i, c in enumerate(self.categories)}
            self.__dict__["_index"] = cached
        return cached

    def feature_names(self) -> list[str]:
        names = [f"{self.name}={c}" for c in self.categories]
        return [*names, f"{self.name}__frequency"] if self.frequencies is not None else names


class DatetimeColumn(BaseModel):
    """A date or timestamp split into calendar parts and days since 1970."""

    kind: Literal[ColumnKind.datetime] = ColumnKind.datetime
    name: str
    format: str
    parts: list[str]
    fill: dict[str, float]

    def width(self) -> int:
        return len(self.parts)

    def feature_names(self) -> list[str]:
        return [f"{self.name}__{p}" for p in self.parts]


Column = Annotated[NumericColumn | CategoricalColumn | DatetimeColumn, Field(discriminator="kind")]


class FittedTransform(BaseModel):
    """Per-column steps in input order; `apply` turns raw rows into the model's matrix."""

    format_version: int = 1
    columns: list[Column]

    @property
    def input_columns(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def feature_names(self) -> list[str]:
        return [name for column in self.columns for name in column.feature_names()]

    def apply(self, frame: pl.DataFrame) -> np.ndarray:
        """Raw columns (any dtype, strings included; absent columns = all missing) -> float32.

        Raises InvalidValueError naming the first unreadable value.
        """
        n = frame.height
        width = sum(c.width() for c in self.columns)
        out = np.zeros((n, width), dtype=np.float32)
        offset = 0
        for column in self.columns:
            raw = frame.get_column(column.name) if column.name in frame.columns else None
            if isinstance(column, NumericColumn):
                values = (
                    np.full(n, np.nan)
                    if raw is None
                    else parse_numeric(raw, column.name).to_numpy()
                )
                if raw is not None:
                    check_range(values, column.name, raw)
                missing = np.isnan(values)
                out[:, offset] = np.where(missing, column.fill, values)
                if column.missing_indicator:
                    out[:, offset + 1] = missing
            elif isinstance(column, DatetimeColumn):
                parts = date_parts(raw, column, n)
                for i, part in enumerate(column.parts):
                    values = parts[part]
                    out[:, offset + i] = np.where(np.isnan(values), column.fill[part], values)
            elif raw is not None:
                text = as_category(raw)
                if column.categories:
                    codes = text.replace_strict(
                        column.index(), default=-1, return_dtype=pl.Int32
                    ).to_numpy()
                    rows = np.flatnonzero(codes >= 0)
                    out[rows, offset + codes[rows]] = 1.0
                if column.frequencies is not None:
                    out[:, offset + len(column.categories)] = text.replace_strict(
                        column.frequencies, default=0.0, return_dtype=pl.Float64
                    ).to_numpy()
            offset += column.width()
        return out


def _category_key(value: Any) -> str | None:
    """A JSON value as the category string the polars path would make of it."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _python_number(value: Any, row: int, name: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if text == "":
        return math.nan
    mapped = _TRUE_FALSE_CASED.get(text)
    if mapped is not None:
        return float(mapped)
    if "_" not in text:  # Python reads 1_000; CSV parsers (and polars) do not
        try:
            return float(text)
        except ValueError:
            pass
    raise InvalidValueError(row, name, value)


class NestedValueError(InvalidValueError):
    """A JSON object or array where a column's single value belongs."""

    def __init__(self, row: int, column: str, value: Any) -> None:
        super().__init__(row, column, value)
        self.args = (f"row {row}, column {column!r}: nested values are not allowed",)


_NUMBERS = frozenset({int, float, type(None)})
_NESTED = (dict, list)


def _first_nested(raw: list[Any], name: str) -> None:
    """Raise NestedValueError for the first object or array among a column's values."""
    for i, value in enumerate(raw):
        if isinstance(value, _NESTED):
            raise NestedValueError(i, name, value)


class _OffFastPath(Exception):
    """Values apply_rows' grouped path does not handle: the column-by-column path decides."""


class _RowPlan:
    """Where each kind of column goes in the feature matrix (built once per transform)."""

    def __init__(self, transform: FittedTransform) -> None:
        numeric: list[NumericColumn] = []
        categorical: list[CategoricalColumn] = []
        offsets: dict[str, int] = {}
        offset = 0
        for column in transform.columns:
            offsets[column.name] = offset
            offset += column.width()
            if isinstance(column, NumericColumn):
                numeric.append(column)
            elif isinstance(column, CategoricalColumn):
                categorical.append(column)
        self.width = offset
        self.numeric_names = [c.name for c in numeric]
        self.numeric_offsets = np.array([offsets[c.name] for c in numeric], dtype=np.intp)
        self.fills = np.array([[c.fill] for c in numeric], dtype=np.float64).reshape(-1, 1)
        flagged = [i for i, c in enumerate(numeric) if c.missing_indicator]
        self.indicator_rows = np.array(flagged, dtype=np.intp)
        self.indicator_offsets = self.numeric_offsets[self.indicator_rows] + 1
        self.categorical = categorical
        self.categorical_offsets = np.array(
            [[offsets[c.name]] for c in categorical], dtype=np.intp
        ).reshape(-1, 1)
        self.datetime = [
            (c, offsets[c.name]) for c in transform.columns if isinstance(c, DatetimeColumn)
        ]


def _row_plan(transform: FittedTransform) -> _RowPlan:
    cached = transform.__dict__.get("_row_plan")
    if cached is None:
        cached = transform.__dict__["_row_plan"] = _RowPlan(transform)
    return cached


def apply_rows(transform: FittedTransform, rows: list[dict[str, Any]]) -> np.ndarray:
    """`transform.apply` for JSON rows, without building a polars frame.

    Same result as `transform.apply(rows_to_frame(rows, ...))` (a test holds the two paths
    together); polars costs a fixed ~0.1 ms per column operation, which dominates small
    serving batches. Each column's values are gathered by C-level iteration (`map` over the
    rows), then all numeric columns are converted and imputed as one matrix and all
    categorical columns one-hot encoded with one scatter: a fixed number of numpy calls
    whatever the number of columns. Python code runs per value only off the common path
    (a category spelt differently from training, a date); rows with text in a numeric column
    or out-of-range numbers go column by column, so the first bad value of the first bad
    column is the one reported. Raises InvalidValueError (NestedValueError for objects and
    arrays).
    """
    try:
        return _apply_rows_grouped(transform, rows)
    except _OffFastPath:
        return _apply_rows_by_column(transform, rows)


def _apply_rows_grouped(transform: FittedTransform, rows: list[dict[str, Any]]) -> np.ndarray:
    plan = _row_plan(transform)
    n = len(rows)
    out = np.zeros((n, plan.width), dtype=np.float32)
    get = dict.get
    if plan.numeric_names:
        raw = [list(map(get, rows, repeat(name, n))) for name in plan.numeric_names]
        if not _NUMBERS.issuperset(chain.from_iterable(map(map, repeat(type), raw))):
            raise _OffFastPath
        values = np.array(raw, dtype=np.float64).reshape(len(raw), n)
        if (np.abs(values) > FLOAT32_MAX).any():
            raise _OffFastPath
        missing = np.isnan(values)
        out[:, plan.numeric_offsets] = np.where(missing, plan.fills, values).T
        if len(plan.indicator_rows):
            out[:, plan.indicator_offsets] = missing[plan.indicator_rows].T
    if plan.categorical:
        texts = [list(map(get, rows, repeat(c.name, n))) for c in plan.categorical]
        try:
            # Text as in training hits the index directly (None where it misses).
            found = [
                list(map(c.index().get, t)) for c, t in zip(plan.categorical, texts, strict=True)
            ]
        except TypeError:  # unhashable: an object or an array
            raise _OffFastPath from None
        codes = np.array(found, dtype=np.float64).reshape(len(found), n)
        missed = np.isnan(codes)
        if missed.any():
            # Unseen, missing, padded with spaces, a number or a boolean: by category key.
            for j, i in zip(*np.nonzero(missed), strict=True):
                key = _category_key(texts[j][i])
                code = None if key is None else plan.categorical[j].index().get(key)
                if code is not None:
                    codes[j, i] = code
            missed = np.isnan(codes)
        hit = ~missed
        columns = (plan.categorical_offsets + np.where(missed, 0, codes).astype(np.intp))[hit]
        out[np.broadcast_to(np.arange(n), codes.shape)[hit], columns] = 1.0
        for j, (column, text) in enumerate(zip(plan.categorical, texts, strict=True)):
            if column.frequencies is not None:
                _frequencies(column, text, out, int(plan.categorical_offsets[j, 0]))
    for column, offset in plan.datetime:
        _dates(column, list(map(get, rows, repeat(column.name, n))), out, offset)
    return out


def _apply_rows_by_column(transform: FittedTransform, rows: list[dict[str, Any]]) -> np.ndarray:
    """apply_rows one column at a time, in order: the first bad value raises."""
    n = len(rows)
    out = np.zeros((n, sum(c.width() for c in transform.columns)), dtype=np.float32)
    offset = 0
    for column in transform.columns:
        name = column.name
        raw = list(map(dict.get, rows, repeat(name, n)))
        if isinstance(column, NumericColumn):
            if _NUMBERS.issuperset(map(type, raw)):
                values = np.array(raw, dtype=np.float64)
            else:
                _first_nested(raw, name)
                values = np.array([_python_number(v, i, name) for i, v in enumerate(raw)])
            check_range(values, name, raw)
            missing = np.isnan(values)
            out[:, offset] = np.where(missing, column.fill, values)
            if column.missing_indicator:
                out[:, offset + 1] = missing
        elif isinstance(column, DatetimeColumn):
            _dates(column, raw, out, offset)
        else:
            _one_hot(column, raw, out, offset)
        offset += column.width()
    return out


def _dates(column: DatetimeColumn, raw: list[Any], out: np.ndarray, offset: int) -> None:
    """A date column's features for JSON values, written into `out` in place."""
    _first_nested(raw, column.name)
    text = [None if v is None else str(v) for v in raw]
    parts = date_parts(pl.Series(column.name, text, dtype=pl.String), column, len(raw))
    for i, part in enumerate(column.parts):
        out[:, offset + i] = np.where(np.isnan(parts[part]), column.fill[part], parts[part])


def _one_hot(column: CategoricalColumn, raw: list[Any], out: np.ndarray, offset: int) -> None:
    """A categorical column's features for JSON values, written into `out` in place."""
    n = len(raw)
    index = column.index()
    try:
        # Text as in training hits the index directly; anything else (unseen, padded with
        # spaces, a number or a boolean) misses and is looked up again by its category key.
        codes = np.fromiter(map(index.get, raw, repeat(-1, n)), dtype=np.int64, count=n)
    except TypeError:  # unhashable: an object or an array
        _first_nested(raw, column.name)
        raise
    for i in np.flatnonzero(codes < 0).tolist():
        key = _category_key(raw[i])
        if key is not None:
            codes[i] = index.get(key, -1)
    rows = np.flatnonzero(codes >= 0)
    out[rows, offset + codes[rows]] = 1.0
    if column.frequencies is not None:
        _frequencies(column, raw, out, offset)


def _frequencies(column: CategoricalColumn, raw: list[Any], out: np.ndarray, offset: int) -> None:
    """The training share of each value's category (0 for unseen and missing), in place."""
    assert column.frequencies is not None
    shares = [column.frequencies.get(_category_key(v), 0.0) if v is not None else 0.0 for v in raw]
    out[:, offset + len(column.categories)] = shares


def parse_numeric(values: pl.Series, name: str) -> pl.Series:
    """A column as Float64 with nulls for missing; strings are parsed strictly."""
    if values.dtype.is_numeric() or values.dtype == pl.Boolean or values.dtype == pl.Null:
        return values.cast(pl.Float64).fill_nan(None)
    text = values.cast(pl.String).str.strip_chars()
    text = pl.Series(name, text).replace(_TRUE_FALSE_CASED)
    parsed = text.cast(pl.Float64, strict=False)
    bad = parsed.is_null() & text.is_not_null() & (text != "")
    if bad.any():
        row = int(bad.arg_true()[0])
        raise InvalidValueError(row, name, values[row])
    return parsed.fill_nan(None)


# Both spellings: lower case from CSVs and Python's str(True) from JSON bodies.
_TRUE_FALSE_CASED = {**_TRUE_FALSE, **{k.capitalize(): v for k, v in _TRUE_FALSE.items()}}


def parse_datetime(values: pl.Series, fmt: str, name: str) -> pl.Series:
    """Text to Datetime with one format; a non-empty value that does not parse is an error."""
    if values.dtype in (pl.Datetime, pl.Date):
        return values.cast(pl.Datetime)
    text = values.cast(pl.String).str.strip_chars()
    parsed = text.str.to_datetime(fmt, strict=False)
    bad = parsed.is_null() & text.is_not_null() & (text != "")
    if bad.any():
        row = int(bad.arg_true()[0])
        raise InvalidValueError(row, name, values[row], f"a date ({fmt})")
    return parsed


def date_parts(raw: pl.Series | None, column: DatetimeColumn, n: int) -> dict[str, np.ndarray]:
    """The calendar parts of a column as float arrays (NaN where missing)."""
    if raw is None:
        return {p: np.full(n, np.nan) for p in column.parts}
    moments = parse_datetime(raw, column.format, column.name)
    exprs = {
        "year": moments.dt.year(),
        "month": moments.dt.month(),
        "day": moments.dt.day(),
        "weekday": moments.dt.weekday(),
        "hour": moments.dt.hour(),
        "days": moments.dt.epoch("s") / 86400.0,
    }
    return {p: exprs[p].cast(pl.Float64).fill_null(np.nan).to_numpy() for p in column.parts}


_DATE_SAMPLE = 2000


def _first_present_text(values: pl.Series, count: int) -> pl.Series:
    """The first `count` present values as stripped, non-empty text, in order.

    Taken a slice at a time: a column of millions of rows is not copied whole for a sample.
    """
    present = values.drop_nulls()
    parts: list[pl.Series] = []
    found, start, step = 0, 0, max(2 * count, 4096)
    while found < count and start < present.len():
        part = present.slice(start, step).cast(pl.String).str.strip_chars()
        part = part.filter(part != "")
        parts.append(part)
        found += part.len()
        start += step
    if not parts:
        return pl.Series(values.name, [], dtype=pl.String)
    return pl.concat(parts).head(count)


def detect_date_format(values: pl.Series, min_share: float = 0.95) -> str | None:
    """The first of DATE_FORMATS that reads at least `min_share` of the present values
    (judged on the first 2,000 present values of a String or Categorical column)."""
    if values.dtype not in (pl.String, pl.Categorical):
        return None
    sample = _first_present_text(values, _DATE_SAMPLE)
    if sample.len() == 0 or not sample.str.contains(r"\d").all():
        return None
    for fmt in DATE_FORMATS:
        parsed = sample.str.to_datetime(fmt, strict=False)
        if parsed.null_count() <= (1 - min_share) * sample.len():
            return fmt
    return None


def as_category(values: pl.Series) -> pl.Series:
    """A column as strings; integral floats lose their '.0' so 1 and 1.0 are one category."""
    if values.dtype.is_float():
        values = pl.Series(
            values.name,
            [
                None if v is None else (str(int(v)) if float(v).is_integer() else str(v))
                for v in values.to_list()
            ],
            dtype=pl.String,
        )
    return values.cast(pl.String).str.strip_chars()


def infer_kind(values: pl.Series) -> ColumnKind:
    """Numeric when every present value reads as a number, datetime when (nearly) every one
    reads as a date in one format, else categorical."""
    if values.dtype.is_numeric() or values.dtype == pl.Boolean:
        return ColumnKind.numeric
    if values.dtype in (pl.Datetime, pl.Date):
        return ColumnKind.datetime
    # Both tests hold for every value or not: judged on the distinct values, a few.
    present = values.drop_nulls().unique(maintain_order=True).cast(pl.String).str.strip_chars()
    present = present.filter(present != "")
    lowered = present.str.to_lowercase()
    if present.len() and lowered.is_in(list(_TRUE_FALSE)).all():
        return ColumnKind.numeric  # booleans spelt out
    if present.len() and present.cast(pl.Float64, strict=False).null_count() == 0:
        return ColumnKind.numeric
    text = values if values.dtype in (pl.String, pl.Categorical) else values.cast(pl.String)
    if present.len() and detect_date_format(text) is not None:
        return ColumnKind.datetime
    return ColumnKind.categorical


# Categories seen fewer times are treated like unseen ones (too rare to learn from), once
# the data is large enough for such a floor to mean anything.
MIN_CATEGORY_COUNT = 3
_RARE_SHARE = 0.001


def fit_column(values: pl.Series, kind: ColumnKind) -> Column:
    """Learn one column's steps from training values."""
    if kind is ColumnKind.datetime:
        fmt = detect_date_format(values) or "%Y-%m-%d"
        probe = DatetimeColumn(name=values.name, format=fmt, parts=list(_DATE_PARTS), fill={})
        parts = date_parts(values, probe, values.len())
        has_time = fmt.count("%H") > 0
        kept = [p for p in _DATE_PARTS if (p != "hour" or has_time) and np.nanstd(parts[p]) > 0]
        fill = {p: float(np.nanmedian(parts[p])) for p in kept}
        return DatetimeColumn(name=values.name, format=fmt, parts=kept, fill=fill)
    if kind is ColumnKind.numeric:
        parsed = parse_numeric(values, values.name)
        median = parsed.median()
        return NumericColumn(
            name=values.name,
            fill=0.0 if median is None else float(median),  # type: ignore[arg-type]
            missing_indicator=parsed.null_count() > 0,
        )
    if values.dtype in (pl.String, pl.Categorical):
        # Counted first, stripped after: the same counts as stripping every row, but the
        # strings handled are the distinct values (a big upload has millions of rows).
        counts = (
            values.drop_nulls()
            .value_counts(name="n")
            .with_columns(pl.col(values.name).cast(pl.String).str.strip_chars())
            .group_by(values.name)
            .agg(pl.col("n").sum())
            .sort(["n", values.name], descending=[True, False])
        )
    else:
        counts = (
            as_category(values)
            .drop_nulls()
            .value_counts(sort=True, name="n")
            .sort(["n", values.name], descending=[True, False])
        )
    floor = max(1.0, min(MIN_CATEGORY_COUNT, _RARE_SHARE * values.len()))
    frequent = counts.filter(pl.col("n") >= floor)
    categories = frequent.get_column(values.name).head(MAX_CATEGORIES).to_list()
    frequencies = None
    if counts.height > MAX_CATEGORIES:
        total = float(counts["n"].sum())
        frequencies = {
            str(k): round(v / total, 6) for k, v in counts.select(values.name, "n").iter_rows()
        }
    return CategoricalColumn(name=values.name, categories=categories, frequencies=frequencies)


def rows_to_frame(instances: list[dict[str, Any]], columns: list[str]) -> pl.DataFrame:
    """JSON instances to a frame of the given columns; each column keeps its values' own type."""
    data: dict[str, pl.Series] = {}
    for name in columns:
        values = [row.get(name) for row in instances]
        kinds = {type(v) for v in values if v is not None}
        try:
            if bool in kinds and len(kinds) > 1:
                # polars would read true as 1 beside integers; the row fast path reads "true".
                raise TypeError("booleans mixed with other types")
            data[name] = pl.Series(name, values, strict=True)
        except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
            # Mixed types (e.g. 3 and "3"): compare as text, parsed per column later.
            data[name] = pl.Series(
                name,
                [
                    _category_key(v) if isinstance(v, bool) else None if v is None else str(v)
                    for v in values
                ],
                dtype=pl.String,
            )
    return pl.DataFrame(data, height=len(instances))
