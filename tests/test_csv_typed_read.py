"""read_csv_file's typed path: types judged on a sample, the file read typed, and the columns whose
later values break the sample's types judged again on every value. The result must be what
read_csv_bytes (every cell read as text, every value judged) gives, without falling back to it."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from automlops.errors import DataError
from automlops.tabular import csv_reader
from automlops.tabular.csv_reader import read_csv_bytes, read_csv_file

SAMPLE = 5  # rows the types are judged on in these tests


@pytest.fixture(autouse=True)
def small_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_reader, "_SAMPLE_ROWS", SAMPLE)


def typed_only(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the fallback to read_csv_bytes fail the test; returns the typed reads' widths."""

    def refuse(data: bytes, source: str) -> pl.DataFrame:
        raise AssertionError("read_csv_file fell back to read_csv_bytes")

    monkeypatch.setattr(csv_reader, "read_csv_bytes", refuse)
    reads: list[int] = []
    real = csv_reader._read_breaking_columns_as_text

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        frame, pending = real(*args, **kwargs)
        reads.append(len(pending))
        return frame, pending

    monkeypatch.setattr(csv_reader, "_read_breaking_columns_as_text", counted)
    return reads


def body(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


# Columns: ints; ints then a float; ints then a word; empty in the sample then ints; ints then
# values with surrounding space; text with a padded value and a padded null token; ints then NA.
_HEADER = "int,float_later,word_later,empty_first,spaced,text,na_later,y"
_CLEAN = [f"{i},{i},{i},,{i},t{i % 3},{i},{'ab'[i % 2]}" for i in range(SAMPLE)]
_LATER = [
    "5,5.5,7,,8,t1,9,a",
    "6,6,word,3,9 ,  t2 ,NA,b",
    "7,7,8,4, 10, NA ,11,a",
]


def test_later_values_get_the_whole_files_types_without_the_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = body([_HEADER, *_CLEAN, *_LATER])
    expected = read_csv_bytes(data, "m.csv")
    path = tmp_path / "m.csv"
    path.write_bytes(data)
    typed_only(monkeypatch)
    frame = read_csv_file(path, "m.csv")

    assert frame.equals(expected)
    assert frame.schema == pl.Schema(
        {
            "int": pl.Int64,
            "float_later": pl.Float64,
            "word_later": pl.String,
            "empty_first": pl.Int64,
            "spaced": pl.Int64,
            "text": pl.String,
            "na_later": pl.Int64,
            "y": pl.String,
        }
    )
    assert frame.get_column("text").to_list()[-2:] == ["t2", None]
    assert frame.get_column("na_later").to_list()[-2:] == [None, 11]


def test_text_as_categorical_is_the_same_values(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = body([_HEADER, *_CLEAN, *_LATER])
    expected = read_csv_bytes(data, "m.csv").with_columns(pl.col(pl.String).cast(pl.Categorical))
    path = tmp_path / "m.csv"
    path.write_bytes(data)
    typed_only(monkeypatch)
    frame = read_csv_file(path, "m.csv", text_as_categorical=True)
    assert frame.schema == expected.schema
    assert frame.rows() == expected.rows()


def test_only_the_breaking_columns_are_read_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = typed_only(monkeypatch)
    clean = [f"{i},{i / 2},{'ab'[i % 2]}" for i in range(SAMPLE)]
    read_csv_file(body(["a,b,y", *clean, "9,0.5,a"]), "m.csv")
    assert reads == [0]  # nothing broke: one typed read, every column typed
    read_csv_file(body(["a,b,y", *clean, "9.5,0.5,a"]), "m.csv")
    assert reads[-1] == 1  # `a` broke: it alone was read as text


def test_many_breaking_columns_are_all_read_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    width = csv_reader._MAX_BREAKS + 3
    header = ",".join(f"c{j}" for j in range(width)) + ",y"
    clean = [",".join(str(i) for _ in range(width)) + ",a" for i in range(SAMPLE)]
    broken = ",".join(f"{j}.5" for j in range(width)) + ",b"
    data = body([header, *clean, broken])
    expected = read_csv_bytes(data, "m.csv")
    typed_only(monkeypatch)
    frame = read_csv_file(data, "m.csv")
    assert frame.equals(expected)
    assert all(frame.schema[f"c{j}"] == pl.Float64 for j in range(width))


def test_null_tokens_in_the_last_column_are_not_short_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    typed_only(monkeypatch)
    rows = [f"{i},{i}" for i in range(SAMPLE)] + ["7,NA", "8,-"]
    frame = read_csv_file(body(["a,b", *rows]), "m.csv")
    assert frame.get_column("b").to_list()[-2:] == [None, None]


def test_an_empty_last_field_is_not_a_short_row(monkeypatch: pytest.MonkeyPatch) -> None:
    typed_only(monkeypatch)
    rows = [f"{i},{i},x" for i in range(SAMPLE)] + ["7,8,", '9,"multi\nline",']
    frame = read_csv_file(body(["a,b,c", *rows]), "m.csv")
    assert frame.get_column("c").to_list()[-2:] == [None, None]
    assert frame.get_column("b").to_list()[-1] == "multi\nline"


def test_a_short_row_after_the_sample_is_named() -> None:
    rows = [f"{i},{i},x" for i in range(SAMPLE)] + ["7,8"]
    with pytest.raises(DataError) as info:
        read_csv_file(body(["a,b,c", *rows]), "m.csv")
    assert info.value.line == SAMPLE + 2
    assert "2 fields" in info.value.problem


def test_a_decimal_comma_file_keeps_its_numbers_as_text_however_sampled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = [f"{i};{i},5;x" for i in range(SAMPLE)] + ["1.234;2,5;y"]
    data = body(["a;b;c", *rows])
    expected = read_csv_bytes(data, "m.csv")
    typed_only(monkeypatch)
    frame = read_csv_file(data, "m.csv")
    assert frame.equals(expected)
    assert frame.schema["a"] == pl.String  # `1.234` is a thousand in this file: read later
