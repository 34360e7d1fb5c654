"""What preprocessing does with each column: a feature of some kind, or dropped and why.

Decided on the training rows only; every decision is recorded in the schema JSON.
"""

from __future__ import annotations

import re
from typing import cast

import numpy as np
import polars as pl

from automlops.ml.columns.target import TargetSpec
from automlops.ml.columns.transform import ColumnKind, FittedTransform, fit_column, infer_kind
from automlops.ml.columns.values import frame_decimal
from automlops.tabular.schema import ColumnProfile

_ID_WORDS = {"id", "uuid", "guid", "key", "number", "no", "nr", "index", "num"}
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_ID_UNIQUE_SHARE = 0.95  # share of distinct values above which a text or integer column is an ID
_TEXT_MIN_WORDS = 4.0  # mean words per value from which a many-valued text column is free text
_TEXT_UNIQUE_SHARE = 0.5


def _looks_like_id_name(name: str) -> bool:
    """customer_id, EmployeeNumber, ID, row-no: the name of a row identifier."""
    words = [w.lower() for w in _WORD.findall(name)]
    return bool(words) and (words[-1] in _ID_WORDS or words[0] == "id")


def _drop_reason(values: pl.Series, kind: ColumnKind) -> str | None:
    """Why a column should not be a feature, or None when it should."""
    n = values.len()
    present = values.drop_nulls()
    if present.len() == 0:
        return "no values in training data"
    distinct = present.n_unique()
    if distinct < 2:
        return "constant in training data"
    unique_share = distinct / present.len()
    if kind is ColumnKind.categorical and unique_share >= _TEXT_UNIQUE_SHARE:
        # Words are counted only for many-valued columns (counting costs a pass over the text).
        text = present.cast(pl.String)
        mean = text.str.count_matches(r"\S+").mean()  # of counts: a float, or None
        words = float(cast(float, mean) or 0.0)
        if words >= _TEXT_MIN_WORDS:
            return f"free text ({unique_share:.0%} distinct values, {words:.1f} words on average)"
    if kind is ColumnKind.categorical and unique_share >= _ID_UNIQUE_SHARE and n >= 20:
        return f"ID-like ({unique_share:.0%} of values distinct)"
    integral = kind is ColumnKind.numeric and values.dtype.is_integer()
    if integral and n >= 20 and unique_share >= _ID_UNIQUE_SHARE:
        # An integer column's max and min are ints (polars types them as any scalar).
        span = int(cast(int, present.max())) - int(cast(int, present.min())) + 1
        if _looks_like_id_name(values.name) or span == distinct:
            return "ID-like (a distinct integer per row)"
    return None


def fit_columns(
    train: pl.DataFrame, target: TargetSpec, *, rows: np.ndarray | None = None
) -> tuple[FittedTransform, list[ColumnProfile]]:
    """Decide and fit every column of the training rows.

    With `rows`, the training rows are those rows of `train`, taken one column at a time (a
    big upload is never copied whole for its training part). Categorical columns are text
    stored compactly and are profiled as String.
    """
    fitted = []
    profiles = []
    seen: dict[int, str] = {}  # hash of a column's values -> first column with them
    decimal = frame_decimal(train)  # judged once per file, never per column or cell

    def training_values(name: str) -> pl.Series:
        values = train.get_column(name)
        return values if rows is None else values.gather(rows)

    for name in train.columns:
        values = training_values(name)
        profile = ColumnProfile(
            name=name,
            # Categorical is how preprocess stores text compactly: to people it is text.
            dtype=str(pl.String if values.dtype == pl.Categorical else values.dtype),
            decision="feature",
            missing=values.null_count(),
            unique=values.n_unique(),
        )
        if name == target.name:
            profile.decision = "target"
            profiles.append(profile)
            continue
        present = values.null_count() < values.len()
        kind = infer_kind(values, decimal=decimal) if present else ColumnKind.numeric
        if kind is not ColumnKind.categorical and values.dtype == pl.Categorical:
            values = values.cast(pl.String)  # numbers or dates spelt out: parsed from text
        digest = hash((str(values.dtype), *values.head(5000).hash(seed=7).to_list()))
        reason = _drop_reason(values, kind)
        if reason is None and digest in seen and values.equals(training_values(seen[digest])):
            reason = f"duplicate of column {seen[digest]!r}"
        seen.setdefault(digest, name)
        if reason is not None:
            profile.decision = f"dropped: {reason}"
            profiles.append(profile)
            continue
        column = fit_column(values, kind, decimal=decimal)
        profile.kind = kind.value
        column.describe(values, profile)
        fitted.append(column)
        profiles.append(profile)
    return FittedTransform(columns=fitted), profiles
