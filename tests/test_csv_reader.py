"""Tests for automlops.tabular.csv_reader: dialect, encoding and header detection, and errors."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automlops.errors import DataError
from automlops.tabular import csv_reader
from automlops.tabular.csv_reader import DELIMITERS, read_csv_bytes, read_csv_file
from support import shared_file

# Every test of this module runs four times: `read_csv_bytes`, and `read_csv_file` (the
# typed path) on the bytes, on a file, and on a file whose types are judged on a sample of two
# rows, so that later values break the sample's types as they do in big files. The frames and
# the errors must be the same.
READERS = ("bytes", "streamed-bytes", "streamed-file", "scanned-file")
_reader = {"name": "bytes", "dir": Path(".")}


@pytest.fixture(scope="module", params=READERS, autouse=True)
def reader(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    _reader["name"] = request.param
    _reader["dir"] = tmp_path_factory.mktemp("csv")
    return str(request.param)


def read(text: str | bytes, source: str = "data/test/test.csv") -> pl.DataFrame:
    data = text.encode("utf-8") if isinstance(text, str) else text
    if _reader["name"] == "bytes":
        return read_csv_bytes(data, source)
    if _reader["name"] == "streamed-bytes":
        return read_csv_file(data, source)
    path = Path(_reader["dir"]) / "upload.csv"  # type: ignore[arg-type]
    path.write_bytes(data)
    if _reader["name"] == "scanned-file":
        return scanned(path, source)
    return read_csv_file(path, source)


def scanned(path: Path, source: str, **options: bool) -> pl.DataFrame:
    """`read_csv_file` judging the types on the first two rows only, as if the file were big."""
    saved = csv_reader._SAMPLE_ROWS
    csv_reader._SAMPLE_ROWS = 2
    try:
        return read_csv_file(path, source, **options)
    finally:
        csv_reader._SAMPLE_ROWS = saved


def read_error(text: str | bytes, source: str = "data/test/test.csv") -> DataError:
    with pytest.raises(DataError) as info:
        read(text, source)
    assert info.value.source == source
    assert str(info.value).startswith(source)
    return info.value


# --- the real files ------------------------------------------------------------------------


def test_bank_full_semicolon_quoted() -> None:
    data = shared_file("bank-additional-full.csv").read_bytes()
    df = read_csv_bytes(data, "data/bank/bank-additional-full.csv")
    assert df.shape == (41188, 21)
    assert df.columns[0] == "age"
    assert df.columns[-1] == "y"
    assert df.schema["age"] == pl.Int64
    assert df.schema["job"] == pl.String
    assert df.schema["emp.var.rate"] == pl.Float64
    assert df.schema["nr.employed"] == pl.Float64  # 5191 first, 5228.1 after row 10,000
    assert df.row(0, named=True)["job"] == "housemaid"  # quotes removed
    assert set(df["y"].unique()) == {"yes", "no"}


def test_bank_full_streamed_from_the_file_equals_the_bytes_reader() -> None:
    path = shared_file("bank-additional-full.csv")
    expected = read_csv_bytes(path.read_bytes(), "bank.csv")
    assert read_csv_file(path, "bank.csv").equals(expected)
    assert scanned(path, "bank.csv").equals(expected)
    for compact in (
        read_csv_file(path, "bank.csv", text_as_categorical=True),
        scanned(path, "bank.csv", text_as_categorical=True),
    ):
        assert compact.schema["job"] == pl.Categorical and compact.schema["age"] == pl.Int64
        assert compact.with_columns(pl.col(pl.Categorical).cast(pl.String)).equals(expected)


def test_categorical_text_on_the_fallback_path() -> None:
    # cp1252 is not for the streaming path: read whole, then made compact all the same.
    frame = read_csv_file(
        "name,n\ncaf\xe9,1\nb\xe9,2\n".encode("cp1252"), "x.csv", text_as_categorical=True
    )
    assert frame.schema["name"] == pl.Categorical and frame.schema["n"] == pl.Int64
    assert frame.get_column("name").cast(pl.String).to_list() == ["café", "bé"]


def test_bank_sample_comma() -> None:
    df = read_csv_bytes(shared_file("bank-additional-sample.csv").read_bytes(), "bank.csv")
    assert df.shape == (4119, 21)
    assert df.schema["age"] == pl.Int64
    assert df.schema["job"] == pl.String
    assert df.schema["cons.price.idx"] == pl.Float64


def test_emp_attrition_bom() -> None:
    df = read_csv_bytes(shared_file("emp_attrition.csv").read_bytes(), "emp.csv")
    assert df.height == 1470
    assert df.columns[0] == "Age"
    assert df.schema["Age"] == pl.Int64
    assert df.schema["Attrition"] == pl.String
    assert not any("\ufeff" in name for name in df.columns)


# --- dialects ------------------------------------------------------------------------------


def test_tab_separated() -> None:
    df = read("a\tb\tc\n1\tx y\t2.5\n2\tz\t3\n")
    assert df.columns == ["a", "b", "c"]
    assert df.schema == pl.Schema({"a": pl.Int64, "b": pl.String, "c": pl.Float64})
    assert df.rows() == [(1, "x y", 2.5), (2, "z", 3.0)]


def test_pipe_separated() -> None:
    df = read("id|name|score\n1|ann|0.5\n2|bob|0.7\n")
    assert df.columns == ["id", "name", "score"]
    assert df["name"].to_list() == ["ann", "bob"]


def test_semicolon_with_decimal_commas_is_not_split_on_commas() -> None:
    df = read('a;b;c\n1;"x";2,5\n2;"y";3,5\n3;"z";4,5\n')
    assert df.columns == ["a", "b", "c"]
    assert df["c"].to_list() == ["2,5", "3,5", "4,5"]  # decimal commas stay text


def test_quoted_fields_with_delimiter_newline_and_quotes() -> None:
    df = read('id,text,n\n1,"a,b\nc",3\n2,"say ""hi""",4\n')
    assert df.rows() == [(1, "a,b\nc", 3), (2, 'say "hi"', 4)]


def test_single_quote_char() -> None:
    df = read("a,b\n1,'x,y'\n2,'z'\n")
    assert df["b"].to_list() == ["x,y", "z"]


def test_stray_quote_inside_unquoted_field() -> None:
    df = read('item,size\npizza,12" large\nsub,6"\n')
    assert df["size"].to_list() == ['12" large', '6"']


def test_crlf_line_endings() -> None:
    df = read('a;b\r\n1;"x"\r\n2;"y"\r\n')
    assert df.rows() == [(1, "x"), (2, "y")]


def test_blank_lines_are_ignored() -> None:
    df = read("\n\na,b\n1,2\n\n  \n3,4\n\n")
    assert df.rows() == [(1, 2), (3, 4)]


# --- encodings -----------------------------------------------------------------------------


def test_latin1_with_accents() -> None:
    text = "name,city,score\nJosé,Zürich,1\nFrançois,Málaga,2\nRenée,Köln,3\nCrème,Brûlée,4\n"
    df = read(text.encode("latin-1"))
    assert df["name"].to_list() == ["José", "François", "Renée", "Crème"]
    assert df["city"].to_list() == ["Zürich", "Málaga", "Köln", "Brûlée"]


def test_cp1252_with_euro_sign() -> None:
    df = read("item;price\nCafé crème;3 €\nPâté;5 €\n".encode("cp1252"))
    assert df.rows() == [("Café crème", "3 €"), ("Pâté", "5 €")]


def test_utf16_with_bom() -> None:
    df = read("a,b\n1,é\n2,ü\n".encode("utf-16"))
    assert df.rows() == [(1, "é"), (2, "ü")]


def test_utf8_with_bom() -> None:
    df = read(b"\xef\xbb\xbfAge,Name\n41,Ann\n")
    assert df.columns == ["Age", "Name"]


def test_damaged_utf8_is_an_error() -> None:
    error = read_error("a,b\nZürich,1\nKöln,2\n".encode() + b"\xff,3\n")
    assert error.line == 4
    assert "undecodable" in error.problem


# --- header and names ----------------------------------------------------------------------


def test_no_header_gets_generated_names() -> None:
    df = read("1,2.5,x\n2,3.5,y\n3,4.5,z\n")
    assert df.columns == ["column_1", "column_2", "column_3"]
    assert df.height == 3
    assert df.schema["column_1"] == pl.Int64


def test_all_string_columns_keep_their_header() -> None:
    df = read("name,city\nbob,paris\nann,rome\n")
    assert df.columns == ["name", "city"]
    assert df.height == 2


def test_header_over_numeric_columns() -> None:
    df = read("x1,x2,y\n1,2,3\n4,5,6\n")
    assert df.columns == ["x1", "x2", "y"]
    assert df.height == 2


def test_names_are_stripped_and_blank_names_generated() -> None:
    df = read(" a ,,c\n1,2,3\n")
    assert df.columns == ["a", "column_2", "c"]


def test_duplicate_names_are_an_error() -> None:
    error = read_error("a, a,b\n1,2,3\n")
    assert error.column == "a"
    assert "duplicate" in error.problem


# --- types and cells -----------------------------------------------------------------------


def test_null_tokens_and_whitespace() -> None:
    df = read("a,b,c\n1, x ,NA\n?,N/A,2.5\n3,null,\n")
    assert df.rows() == [(1, "x", None), (None, None, 2.5), (3, None, None)]
    assert df.schema == pl.Schema({"a": pl.Int64, "b": pl.String, "c": pl.Float64})


def test_types_are_judged_on_the_whole_file() -> None:
    lines = [f"{i},x" for i in range(20_000)] + ["1.5,y"]
    df = read("a,b\n" + "\n".join(lines) + "\n")
    assert df.schema["a"] == pl.Float64
    assert df.height == 20_001


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \n\n\t\n"], ids=["empty", "whitespace"])
def test_empty_file(data: bytes) -> None:
    assert "empty" in read_error(data).problem


@pytest.mark.parametrize(
    "data",
    [
        os.urandom(5000),
        os.urandom(5000).replace(b"\x00", b"\x01"),
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x01\x00\x08\x06",
    ],
    ids=["random", "random-without-nul", "png"],
)
def test_binary_garbage(data: bytes) -> None:
    read_error(data)


def test_prose_is_not_a_table() -> None:
    text = (
        "It was a bright cold day in April, and the clocks were striking thirteen.\n"
        "Winston Smith, his chin nuzzled into his breast, slipped quickly through\n"
        "the glass doors of Victory Mansions; though not quickly enough to prevent\n"
        "a swirl of gritty dust from entering along with him.\n"
        "The hallway smelt of boiled cabbage and old rag mats. At one end of it a\n"
        "coloured poster, too large for indoor display, had been tacked to the wall.\n"
    )
    read_error(text)


def test_row_with_too_many_fields() -> None:
    error = read_error("a,b\n1,2\n3,4\n5,6,7\n8,9\n")
    assert error.line == 4
    assert "line 4" in str(error)
    assert "3 fields" in error.problem


def test_row_with_too_few_fields() -> None:
    error = read_error("a,b,c\n1,2,3\n3,4,5\n5,6\n8,9,1\n")
    assert error.line == 4
    assert "line 4" in str(error)
    assert "2 fields" in error.problem


def test_ragged_line_counts_physical_lines() -> None:
    # Leading blank lines, a blank line and a quoted two-line field come before it.
    error = read_error('\na,b,c\n1,"two\nlines",3\n\n4,5\n')
    assert error.line == 6


def test_trailing_empty_value_is_not_ragged() -> None:
    df = read("a,b,c\n1,2,\n3,4,5\n")
    assert df.rows() == [(1, 2, None), (3, 4, 5)]


def test_one_column() -> None:
    assert "at least 2 columns" in read_error("a\n1\n2\n3\n").problem


def test_header_only() -> None:
    assert "no data rows" in read_error("a,b\n").problem


def test_unclosed_quote() -> None:
    assert "quoted field" in read_error('a,b\n1,"open\n2,z\n').problem


# --- round trip ----------------------------------------------------------------------------

# Strings that stay strings: a letter first (never numeric, never a null token), then any
# mix that needs quoting: delimiters, quotes, inner spaces and newlines.
_words = st.builds(
    lambda head, tail: "s" + head + tail.rstrip(),
    st.text(alphabet="abcXYZ", max_size=3),
    st.text(alphabet="ab ,;\t|\"'\n", max_size=8),
)
_ints = st.integers(min_value=-(2**53), max_value=2**53)
_floats = st.floats(allow_nan=False, allow_infinity=False, width=64).filter(
    lambda x: not x.is_integer()
)


@st.composite
def _frames(draw: st.DrawFn) -> tuple[list[str], list[list[object]], list[type]]:
    kinds = draw(st.lists(st.sampled_from([int, float, str]), min_size=1, max_size=5))
    kinds = [int, *kinds]  # an int column never null keeps every row non-blank
    n_rows = draw(st.integers(min_value=1, max_value=8))
    columns: list[list[object]] = []
    for i, kind in enumerate(kinds):
        values = {int: _ints, float: _floats, str: _words}[kind]
        if i > 0:
            values = st.one_of(st.none(), values)
        columns.append(draw(st.lists(values, min_size=n_rows, max_size=n_rows)))
    names = [f"col{i}" for i in range(len(kinds))]
    return names, [list(row) for row in zip(*columns, strict=True)], kinds


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=_frames(), delimiter=st.sampled_from(DELIMITERS))
def test_round_trip(
    frame: tuple[list[str], list[list[object]], list[type]], delimiter: str
) -> None:
    names, rows, kinds = frame
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(
        [["" if v is None else repr(v) if isinstance(v, float) else v for v in row] for row in rows]
    )
    df = read(out.getvalue())

    assert df.columns == names
    assert df.rows() == [tuple(row) for row in rows]
    for name, kind, values in zip(names, kinds, zip(*rows, strict=True), strict=True):
        if any(v is not None for v in values):
            expected = {int: pl.Int64, float: pl.Float64, str: pl.String}[kind]
            assert df.schema[name] == expected


def test_column_names_that_read_as_patterns_keep_their_own_values() -> None:
    """polars takes `^...$` in pl.col as a pattern: a column so named must still hold its
    own values, not those of the column the pattern matches."""
    frame = read("^x$,x,^.*$,y\n1,a,10,0\n2,b,20,1\n3,c,30,0\n")
    assert frame.columns == ["^x$", "x", "^.*$", "y"]
    assert frame.get_column("^x$").to_list() == [1, 2, 3]
    assert frame.get_column("x").to_list() == ["a", "b", "c"]
    assert frame.get_column("^.*$").to_list() == [10, 20, 30]


@pytest.mark.parametrize("block", [5, 1 << 20])  # characters cut between blocks, or one block
def test_file_encoding_streams_the_file_as_the_upload_reader_judges_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    from automlops.tabular import csv_reader

    monkeypatch.setattr(csv_reader, "_ENCODING_BLOCK", block)
    text = "name;city\n" + "".join(f"row {i};Zürich — Genève\n" for i in range(50))
    path = tmp_path / "f.csv"
    cases = {
        "utf-8": text.encode(),
        "utf-8 ": b"\xef\xbb\xbf" + text.encode(),  # BOM: left for the reader to skip
        "utf-16": text.encode("utf-16"),
        "cp1252": ("plain ascii;x\n" * 20 + text.replace("—", "-")).encode("cp1252"),
    }
    for expected, data in cases.items():
        path.write_bytes(data)
        assert csv_reader.file_encoding(path, "f.csv") == expected.strip()
    path.write_bytes(text.encode()[:-3] + b"\xc3")  # the last character cut in half
    with pytest.raises(DataError, match="cut short"):
        csv_reader.file_encoding(path, "f.csv")
    path.write_bytes(text.encode() + b"\x89PNG\x00\x00")
    with pytest.raises(DataError, match="binary"):
        csv_reader.file_encoding(path, "f.csv")
    damaged = text.encode().replace("Genève".encode(), b"Gen\xe8ve", 1)
    path.write_bytes(damaged)
    with pytest.raises(DataError, match="UTF-8 except") as raised:
        csv_reader.file_encoding(path, "f.csv")
    first_bad = damaged.index(b"\xe8")
    assert raised.value.line == 2 and f"at byte {first_bad}" in str(raised.value)
