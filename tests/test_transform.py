"""The fitted preprocessing: learnt on training rows, applied identically to raw serving rows."""

from __future__ import annotations

from functools import partial

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from automlops.ml.columns.transform import (
    GROUPED_MAX_ROWS,
    CategoricalColumn,
    CategoricalEncoder,
    ColumnKind,
    DatetimeColumn,
    DatetimeEncoder,
    FittedTransform,
    InvalidValueError,
    NestedValueError,
    NumericColumn,
    NumericEncoder,
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


# No deadline: a test's outcome must not depend on the machine's speed or load.
UNTIMED = settings(deadline=None)


@UNTIMED
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


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from(["a", "b", " a ", "zz", "", "1", "2.5", "true", "NaN", "2021-02-03", "x y"]),
)


@UNTIMED
@given(st.lists(st.dictionaries(st.sampled_from(["num", "cat", "day"]), _VALUES), max_size=8))
def test_row_fast_path_matches_the_frame_path(rows: list[dict]) -> None:
    train = pl.DataFrame(
        {
            "num": [1.0, 2.0, None, 4.0],
            "cat": ["a", "b", "1", "true"],
            "day": ["2021-01-01", "2021-02-03", None, "2021-12-31"],
        }
    )
    t = FittedTransform(
        columns=[
            fit_column(train["num"], ColumnKind.numeric),
            fit_column(train["cat"], ColumnKind.categorical),
            fit_column(train["day"], ColumnKind.datetime),
        ]
    )
    encoder = t.compile()
    try:
        expected = t.apply(rows_to_frame(rows, t.input_columns))
    except InvalidValueError as exc:
        with pytest.raises(InvalidValueError) as info:
            encoder.encode_rows(rows)
        assert (info.value.row, info.value.column) == (exc.row, exc.column)
        return
    np.testing.assert_array_equal(encoder.encode_rows(rows), expected)


_MANY = [f"c{i}" for i in range(80)]  # over MAX_CATEGORIES: frequency-encoded too
_SERVED_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from(["a", "b", " a ", "1", "true", "c3", " c79", "c200", "x", ""]),
)


@UNTIMED
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["n1", "n2", "cat", "many", "other"]), _SERVED_VALUES),
        max_size=12,
    )
)
@example(rows=[{"cat": False}, {"n1": None, "cat": 1.0}])  # 1.0 beside a bool: the category "1"
def test_row_paths_agree_with_the_frame_path(rows: list[dict]) -> None:
    """The row path's kind-at-a-time reading (all numbers at once, one scatter for all
    categories) and its column-by-column reading both give the frame path's matrix, or its
    first error."""
    train = pl.DataFrame(
        {
            "n1": [1.0, 2.0, None, 4.0] * 40,
            "n2": [5, 6, 7, 8] * 40,
            "cat": ["a", "b", "1", "true"] * 40,
            "many": (_MANY * 2)[:160],
        }
    )
    t = FittedTransform(
        columns=[
            fit_column(train["n1"], ColumnKind.numeric),
            fit_column(train["cat"], ColumnKind.categorical),
            fit_column(train["n2"], ColumnKind.numeric),
            fit_column(train["many"], ColumnKind.categorical),
        ]
    )
    assert t.columns[3].frequencies is not None and t.columns[0].missing_indicator
    encoder = t.compile()
    try:
        expected = t.apply(rows_to_frame(rows, t.input_columns))
    except InvalidValueError as exc:
        for path in (encoder.encode_rows, partial(_by_column, t)):
            with pytest.raises(InvalidValueError) as info:
                path(rows)
            assert (info.value.row, info.value.column) == (exc.row, exc.column)
        return
    np.testing.assert_array_equal(encoder.encode_rows(rows), expected)
    np.testing.assert_array_equal(_by_column(t, rows), expected)


def _by_column(t: FittedTransform, rows: list[dict]) -> np.ndarray:
    """Each column through an encoder of its own, read exactly (encode_rows' fallback)."""
    encoders = {
        NumericColumn: NumericEncoder,
        CategoricalColumn: CategoricalEncoder,
        DatetimeColumn: DatetimeEncoder,
    }
    out = np.zeros((len(rows), len(t.feature_names)), dtype=np.float32)
    offset = 0
    for column in t.columns:
        encoder = encoders[type(column)]([column], [offset])
        encoder.write(encoder.read_rows(rows), out)
        offset += column.width()
    return out


# transform.json as written by the first version of the transform (format_version 1).
_STORED = """{
 "format_version": 1,
 "columns": [
  {"kind": "numeric", "name": "age", "fill": 45.0, "missing_indicator": true},
  {"kind": "categorical", "name": "job", "categories": ["a", "b"], "frequencies": null},
  {"kind": "categorical", "name": "city", "categories": ["x"],
   "frequencies": {"x": 0.5, "y": 0.3, "z": 0.2}},
  {"kind": "datetime", "name": "day", "format": "%Y-%m-%d", "parts": ["month", "day"],
   "fill": {"month": 6.0, "day": 15.0}},
  {"kind": "numeric", "name": "n", "fill": 1.5}
 ]
}"""


def test_a_stored_transform_loads_and_encodes_as_it_did() -> None:
    t = FittedTransform.model_validate_json(_STORED)
    assert t.feature_names == [
        "age", "age__missing", "job=a", "job=b", "city=x", "city__frequency",
        "day__month", "day__day", "n",
    ]  # fmt: skip
    rows = [
        {"age": 30, "job": "b", "city": "y", "day": "2021-02-03", "n": 2},
        {"age": None, "job": " a ", "city": "x", "n": "7"},
        {"job": "zzz", "city": "nowhere", "day": None, "n": True},
    ]
    expected = np.array(
        [
            [30, 0, 0, 1, 0, 0.3, 2, 3, 2],
            [45, 1, 1, 0, 1, 0.5, 6, 15, 7],
            [45, 1, 0, 0, 0, 0.0, 6, 15, 1],
        ],
        dtype=np.float32,
    )
    encoder = t.compile()
    np.testing.assert_array_equal(encoder.encode_rows(rows), expected)
    np.testing.assert_array_equal(
        encoder.encode_frame(rows_to_frame(rows, t.input_columns)), expected
    )
    assert FittedTransform.model_validate_json(t.model_dump_json()) == t


def test_the_first_bad_value_in_column_order_is_reported_across_kinds() -> None:
    """A bad date in an earlier column wins over a bad number in a later one, although the row
    path reads numbers before dates."""
    t = FittedTransform.model_validate_json(_STORED)
    rows = [{"day": "2021-02-03", "n": 1}, {"day": "not a date", "n": "many"}]
    with pytest.raises(InvalidValueError) as info:
        t.compile().encode_rows(rows)
    assert (info.value.row, info.value.column) == (1, "day")
    with pytest.raises(NestedValueError) as nested:
        t.compile().encode_rows([{"job": "a"}, {"job": ["a"], "n": "many"}])
    assert (nested.value.row, nested.value.column) == (1, "job")


def test_large_frames_read_a_column_at_a_time_give_the_same_matrix_and_error() -> None:
    """Beyond GROUPED_MAX_ROWS frames are read column by column (memory): the same matrix as
    small batches read a kind at a time, and the same first bad value."""
    t = FittedTransform.model_validate_json(_STORED)
    n = GROUPED_MAX_ROWS + 7
    frame = pl.DataFrame(
        {
            "age": [None if i % 5 == 0 else i % 90 for i in range(n)],
            "job": [["a", "b", " a", None, "q"][i % 5] for i in range(n)],
            "city": [["x", "y", "z", "w"][i % 4] for i in range(n)],
            "day": [f"2021-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(n)],
            "n": [str(i % 7) for i in range(n)],
        }
    )
    encoder = t.compile()
    whole = encoder.encode_frame(frame)
    parts = [encoder.encode_frame(frame.slice(start, 1000)) for start in range(0, n, 1000)]
    np.testing.assert_array_equal(whole, np.vstack(parts))
    # And the JSON rows' path, which looks each value up on its own (" a" is "a", "q" none).
    np.testing.assert_array_equal(whole, encoder.encode_rows(frame.to_dicts()))
    assert whole[:, 8].tolist() == [i % 7 for i in range(n)]

    bad = frame.with_columns(
        pl.when(pl.int_range(n) == n - 1).then(pl.lit("soon")).otherwise("day").alias("day"),
        pl.when(pl.int_range(n) == 3).then(pl.lit("many")).otherwise("n").alias("n"),
    )
    for part in (bad, bad.tail(GROUPED_MAX_ROWS)):
        with pytest.raises(InvalidValueError) as info:
            encoder.encode_frame(part)
        assert (info.value.column, info.value.value) == ("day", "soon")


def test_empty_batches_have_the_transform_width() -> None:
    encoder = FittedTransform.model_validate_json(_STORED).compile()
    assert encoder.encode_rows([]).shape == (0, 9)
    assert encoder.encode_frame(pl.DataFrame()).shape == (0, 9)


def test_an_encoder_reads_its_columns_in_order() -> None:
    """A kind's encoder over several columns reports the first bad column, whatever the error."""
    first, second = (
        DatetimeColumn(name=name, format="%Y-%m-%d", parts=["month"], fill={"month": 6.0})
        for name in ("d1", "d2")
    )
    encoder = DatetimeEncoder([first, second], [0, 1])
    with pytest.raises(InvalidValueError) as info:
        encoder.read_rows([{"d1": "2021-01-01", "d2": "2021-01-01"}, {"d1": "nope", "d2": ["x"]}])
    assert (info.value.row, info.value.column) == (1, "d1")
    assert not isinstance(info.value, NestedValueError)
