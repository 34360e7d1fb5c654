"""The fitted preprocessing: raw columns in, a numeric feature matrix out.

Fitted on the training split only and stored as JSON, so training and serving apply exactly the
same steps and loading it runs no code.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel

from automlops.errors import PermanentError

MAX_CATEGORIES = 64  # most frequent categories kept per column; the rest count as unseen
_TRUE_FALSE = {"true": "1", "false": "0", "yes": "1", "no": "0"}


class ColumnKind(StrEnum):
    numeric = "numeric"
    categorical = "categorical"


class InvalidValueError(PermanentError):
    """A value that cannot be read as its column's type."""

    def __init__(self, row: int, column: str, value: Any) -> None:
        self.row = row
        self.column = column
        self.value = value
        super().__init__(f"row {row}, column {column!r}: cannot read {value!r} as a number")


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
    kind: Literal[ColumnKind.categorical] = ColumnKind.categorical
    name: str
    categories: list[str]

    def width(self) -> int:
        return len(self.categories)

    def feature_names(self) -> list[str]:
        return [f"{self.name}={c}" for c in self.categories]


Column = NumericColumn | CategoricalColumn


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
                missing = np.isnan(values)
                out[:, offset] = np.where(missing, column.fill, values)
                if column.missing_indicator:
                    out[:, offset + 1] = missing
            elif raw is not None and column.categories:
                index = {c: i for i, c in enumerate(column.categories)}
                codes = (
                    as_category(raw)
                    .replace_strict(index, default=-1, return_dtype=pl.Int32)
                    .to_numpy()
                )
                rows = np.flatnonzero(codes >= 0)
                out[rows, offset + codes[rows]] = 1.0
            offset += column.width()
        return out


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
    """Numeric when every present value reads as a number, else categorical."""
    if values.dtype.is_numeric() or values.dtype == pl.Boolean:
        return ColumnKind.numeric
    present = values.drop_nulls().cast(pl.String).str.strip_chars()
    present = present.filter(present != "")
    if present.len() and present.cast(pl.Float64, strict=False).null_count() == 0:
        return ColumnKind.numeric
    return ColumnKind.categorical


def fit_column(values: pl.Series, kind: ColumnKind) -> Column:
    """Learn one column's steps from training values."""
    if kind is ColumnKind.numeric:
        parsed = parse_numeric(values, values.name)
        median = parsed.median()
        return NumericColumn(
            name=values.name,
            fill=0.0 if median is None else float(median),  # type: ignore[arg-type]
            missing_indicator=parsed.null_count() > 0,
        )
    counts = (
        as_category(values)
        .drop_nulls()
        .value_counts(sort=True, name="n")
        .sort(["n", values.name], descending=[True, False])
    )
    return CategoricalColumn(
        name=values.name, categories=counts.get_column(values.name).head(MAX_CATEGORIES).to_list()
    )


def rows_to_frame(instances: list[dict[str, Any]], columns: list[str]) -> pl.DataFrame:
    """JSON instances to a frame of the given columns; each column keeps its values' own type."""
    data: dict[str, pl.Series] = {}
    for name in columns:
        values = [row.get(name) for row in instances]
        try:
            data[name] = pl.Series(name, values, strict=True)
        except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
            # Mixed types (e.g. 3 and "3"): compare as text, parsed per column later.
            data[name] = pl.Series(
                name, [None if v is None else str(v) for v in values], dtype=pl.String
            )
    return pl.DataFrame(data, height=len(instances))
