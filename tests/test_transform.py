"""The fitted preprocessing: learnt on training rows, applied identically to raw serving rows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from automlops.ml.transform import (
    CategoricalColumn,
    ColumnKind,
    FittedTransform,
    InvalidValueError,
    NumericColumn,
    fit_column,
    infer_kind,
    rows_to_frame,
)

TRAIN = pl.DataFrame(
    {
        "age": [30, 40, None, 50, 60],
        "job": ["a", "b", "a", None, "a"],
        "score": ["1.5", "2.5", "3.5", "4.5", "x"],
    }
)


def fit(frame: pl.DataFrame) -> FittedTransform:
    return FittedTransform(
        columns=[fit_column(frame[c], infer_kind(frame[c])) for c in frame.columns]
    )


def test_kinds_and_fitted_values() -> None:
    t = fit(TRAIN)
    age, job, _score = t.columns
    assert isinstance(age, NumericColumn) and age.fill == 45.0 and age.missing_indicator
    assert isinstance(job, CategoricalColumn) and job.categories == ["a", "b"]
    # One non-numeric value makes the column categorical.
    assert infer_kind(TRAIN["score"]) is ColumnKind.categorical
    assert infer_kind(pl.Series(["1", " 2 ", None])) is ColumnKind.numeric
    assert t.feature_names[:4] == ["age", "age__missing", "job=a", "job=b"]


def test_apply_imputes_and_one_hot_encodes() -> None:
    t = fit(TRAIN.select("age", "job"))
    out = t.apply(TRAIN.select("age", "job"))
    expected = np.array(
        [[30, 0, 1, 0], [40, 0, 0, 1], [45, 1, 1, 0], [50, 0, 0, 0], [60, 0, 1, 0]],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(out, expected)


def test_serving_rows_match_training_rows() -> None:
    t = fit(TRAIN.select("age", "job"))
    rows = [{"age": "30", "job": "a"}, {"job": "zzz"}, {"age": None, "job": None}, {}]
    out = t.apply(rows_to_frame(rows, t.input_columns))
    np.testing.assert_array_equal(
        out, np.array([[30, 0, 1, 0], [45, 1, 0, 0], [45, 1, 0, 0], [45, 1, 0, 0]], np.float32)
    )


def test_unreadable_value_names_row_and_column() -> None:
    t = fit(TRAIN.select("age"))
    with pytest.raises(InvalidValueError) as info:
        t.apply(rows_to_frame([{"age": 1}, {"age": "old"}], t.input_columns))
    assert info.value.row == 1
    assert info.value.column == "age"
    assert "'old'" in str(info.value)


def test_round_trips_through_json() -> None:
    t = fit(TRAIN)
    assert FittedTransform.model_validate_json(t.model_dump_json()) == t


@given(
    st.lists(
        st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False), st.integers(-1000, 1000)),
        min_size=2,
        max_size=30,
    )
)
def test_numeric_json_and_csv_text_agree(values: list[float | int | None]) -> None:
    frame = pl.DataFrame({"x": [None if v is None else float(v) for v in values]})
    t = FittedTransform(columns=[fit_column(frame["x"], ColumnKind.numeric)])
    from_numbers = t.apply(rows_to_frame([{"x": v} for v in values], ["x"]))
    from_text = t.apply(pl.DataFrame({"x": [None if v is None else repr(v) for v in values]}))
    np.testing.assert_allclose(from_numbers, from_text)
