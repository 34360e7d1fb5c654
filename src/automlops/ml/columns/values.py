"""Reading raw values as numbers, categories and dates: from polars columns (CSV, training) and
from JSON values (serving), with the same result for the same value.

Numbers are read in their column's `NumberSpelling` (decimal comma, thousands, currency,
percent, spelt-out booleans in any case; see `tabular.spelling`) and as plain numbers; the
file's missing spellings (`NA`, `N/A`, `-`, ...) are missing everywhere.

The error for a value that cannot be read names its row and column.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import polars as pl

from automlops.errors import PermanentError
from automlops.tabular.spelling import (
    MISSING_SET,
    MISSING_VALUES,
    NumberSpelling,
    SpellingReader,
    boolean_pair,
    judge_decimal,
)

FLOAT32_MAX = float(np.finfo(np.float32).max)  # models read float32 features
PLAIN = NumberSpelling()
_DECIMAL_SAMPLE = 5000  # rows of each text column looked at to judge a frame's decimal mark

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
_DATE_SAMPLE = 2000


class InvalidValueError(PermanentError):
    """A value that cannot be read as its column's type."""

    def __init__(self, row: int, column: str, value: Any, expected: str = "a number") -> None:
        self.row = row
        self.column = column
        self.value = value
        super().__init__(f"row {row}, column {column!r}: cannot read {value!r} as {expected}")


class NestedValueError(InvalidValueError):
    """A JSON object or array where a column's single value belongs."""

    def __init__(self, row: int, column: str, value: Any) -> None:
        super().__init__(row, column, value)
        self.args = (f"row {row}, column {column!r}: nested values are not allowed",)


def check_range(values: np.ndarray, name: str, raw: Any) -> None:
    """Refuse numbers beyond float32: the model would see infinities and answer NaN."""
    out_of_range = np.abs(values) > FLOAT32_MAX  # NaN compares False: missing is fine
    if out_of_range.any():
        row = int(np.flatnonzero(out_of_range)[0])
        value = raw[row]
        raise InvalidValueError(
            row, name, value, f"a number: {value!r} is out of range (within ±{FLOAT32_MAX:.4g})"
        )


_NESTED = (dict, list)


def first_nested(raw: list[Any], name: str) -> None:
    """Raise NestedValueError for the first object or array among a column's JSON values."""
    for i, value in enumerate(raw):
        if isinstance(value, _NESTED):
            raise NestedValueError(i, name, value)


# --- numbers


def parse_numeric(
    values: pl.Series, name: str, spelling: NumberSpelling | None = None
) -> pl.Series:
    """A column as Float64 with nulls for missing; text is read strictly in `spelling` (plain
    numbers when None), then as plain numbers; missing spellings are missing."""
    if values.dtype.is_numeric() or values.dtype == pl.Boolean or values.dtype == pl.Null:
        return values.cast(pl.Float64).fill_nan(None)
    text = values.cast(pl.String).str.strip_chars()
    spelling = spelling or PLAIN
    if spelling.decimal == ".":
        # The common case first, a few vectorised calls: plain numbers and blanks only.
        parsed = text.cast(pl.Float64, strict=False)
        if not (parsed.is_null() & text.is_not_null() & (text != "")).any():
            return parsed.fill_nan(None)
    reader = SpellingReader.of(spelling)
    text = text.replace(list(MISSING_VALUES), None)
    booleans = text.str.to_lowercase().replace_strict(
        reader.booleans, default=None, return_dtype=pl.Float64
    )
    parsed = pl.select(
        pl.coalesce(booleans, reader.read(text), text.cast(pl.Float64, strict=False))
    ).to_series()
    bad = parsed.is_null() & text.is_not_null()
    if bad.any():
        row = int(bad.arg_true()[0])
        raise InvalidValueError(row, name, values[row])
    return parsed.fill_nan(None).alias(name)


def json_number(value: Any, row: int, name: str, spelling: NumberSpelling | None = None) -> float:
    """One JSON value as `parse_numeric` reads it (NaN for missing)."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if text in MISSING_SET:
        return math.nan
    reader = SpellingReader.of(spelling or PLAIN)
    mapped = reader.booleans.get(text.lower())
    if mapped is not None:
        return mapped
    spelled = reader.read_text(text)
    if spelled is not None:
        return spelled
    if "_" not in text:  # Python reads 1_000; CSV parsers (and polars) do not
        try:
            return float(text)
        except ValueError:
            pass
    raise InvalidValueError(row, name, value)


def frame_decimal(frame: pl.DataFrame) -> Literal[".", ","]:
    """The decimal mark of the file a frame was read from (`tabular.spelling.judge_decimal`),
    judged on the first distinct values of its text columns.

    The CSV reader makes a column Float64 only in a file of decimal points, so a Float64
    column is evidence for the point.
    """
    cells: list[str] = []
    for column in frame.iter_columns():
        if column.dtype.is_float():
            cells.append("0.5")
        elif column.dtype in (pl.String, pl.Categorical):
            head = column.head(_DECIMAL_SAMPLE).drop_nulls().cast(pl.String).unique()
            cells.extend(head.head(200).to_list())
    return judge_decimal(cells)


def looks_boolean(text: pl.Series) -> bool:
    """Every value (stripped, present) is a spelt-out boolean, in any case."""
    return bool(text.len()) and boolean_pair(text.unique().to_list()) is not None


# --- categories


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


def category_key(value: Any) -> str | None:
    """A JSON value as the category string `as_category` would make of it."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- dates


def parse_datetime(values: pl.Series, fmt: str, name: str) -> pl.Series:
    """Text to Datetime with one format; a non-empty value that does not parse is an error."""
    if values.dtype in (pl.Datetime, pl.Date):
        return values.cast(pl.Datetime)
    text = values.cast(pl.String).str.strip_chars().replace(list(MISSING_VALUES), None)
    parsed = text.str.to_datetime(fmt, strict=False)
    bad = parsed.is_null() & text.is_not_null()
    if bad.any():
        row = int(bad.arg_true()[0])
        raise InvalidValueError(row, name, values[row], f"a date ({fmt})")
    return parsed


def date_parts(moments: pl.Series, parts: list[str]) -> dict[str, np.ndarray]:
    """The calendar parts of a Datetime column as float arrays (NaN where missing)."""
    exprs = {
        "year": moments.dt.year,
        "month": moments.dt.month,
        "day": moments.dt.day,
        "weekday": moments.dt.weekday,
        "hour": moments.dt.hour,
        "days": lambda: moments.dt.epoch("s") / 86400.0,
    }
    return {p: exprs[p]().cast(pl.Float64).fill_null(np.nan).to_numpy() for p in parts}


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
