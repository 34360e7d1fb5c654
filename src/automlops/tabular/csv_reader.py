"""Read an uploaded tabular CSV of unknown dialect into a polars DataFrame.

Uploads come from people, not from one exporter: the encoding (UTF-8, UTF-8 with BOM,
cp1252, ...), the delimiter, the quote character and whether there is a header all vary.
`read_csv_bytes` works these out from a sample of the text, parses the whole file with
polars and turns every problem into a `DataError` that names the file and, where known,
the line.

Types are inferred over the whole file, not over the first rows only: polars reads every
cell as a string (fast) and each column then becomes Int64, else Float64, else stays
String, with vectorised casts. This is quicker than polars' own inference with null values
and cannot fail on a stray float after row 10,000.

`read_csv_file` gives the same frame for big files without ever holding all of it as
strings: the types of a clean UTF-8 file are judged on its first 10,000 rows, polars reads it
typed (numbers parsed as they are read, text as it is), and only a column whose later values
break the sample's type is read again as text and judged on every value, so the types are the
whole file's. Any file that path cannot take as it is (another encoding, ragged rows, odd
quoting, ...) goes through `read_csv_bytes`, which explains the problem.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Literal

import charset_normalizer
import polars as pl

from automlops.errors import DataError
from automlops.tabular.spelling import MISSING_VALUES, judge_decimal

__all__ = [
    "DELIMITERS",
    "NULL_VALUES",
    "file_decimal",
    "file_encoding",
    "read_csv_bytes",
    "read_csv_file",
]

NULL_VALUES = list(MISSING_VALUES)  # the spellings of a missing value, here and in serving
DELIMITERS = (",", ";", "\t", "|")

# Enough rows to sniff the dialect and the header, small enough to parse in pure Python.
_SAMPLE_CHARS = 64 * 1024
# Below this share of sample rows with the usual field count the text is not a table.
_MIN_CONSISTENCY = 0.6
_MIN_ROWS_FOR_CONSISTENCY = 5
# More than this share of control characters in the sample means binary data.
_MAX_CONTROL_SHARE = 0.01
# Widest table accepted. Parsing cost and memory grow with the column count (10,000 columns of
# 30 rows: ~2 s, ~300 MB); a line of a million fields would exhaust the worker's memory.
MAX_COLUMNS = 10_000

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_LEADING_BLANK_LINES = re.compile(r"(?:[ \t]*\r?\n)+")
# Single-byte code pages for Latin script. charset_normalizer often picks cp1250 or cp1257
# for short Western European text; cp1252 is by far the likelier source of such a CSV.
_LATIN_SINGLE_BYTE = frozenset(
    ["cp1250", "cp1254", "cp1257", "cp437", "cp775", "cp850", "cp852", "cp857", "cp858"]
    + ["latin_1", "mac_iceland", "mac_latin2", "mac_roman", "mac_turkish"]
    + [f"iso8859_{n}" for n in (2, 3, 4, 9, 10, 13, 14, 15, 16)]
)
_NULL_SET = frozenset(NULL_VALUES)
# Characters for the line markers of _find_ragged_row; one that does not occur is used.
_MARKS = ("\x01", "\x02", "\x03", "\x1e", "\x1f")
# polars raises its own errors, and panics surface as PanicException (a BaseException).
_POLARS_ERRORS = (Exception, pl.exceptions.PanicException)


def read_csv_bytes(data: bytes, source: str) -> pl.DataFrame:
    """Parse an uploaded CSV file into a DataFrame with typed columns.

    `source` (the object key) only appears in error messages. The encoding, delimiter
    (one of `, ; tab |`), quote character and header are detected. Column names are
    stripped; blank ones become `column_<i>` (1-based); without a header all columns are
    named that way. Cells are stripped of surrounding whitespace, the tokens in
    `NULL_VALUES` become null, blank lines are dropped, and each column becomes Int64,
    Float64 or String (whichever fits every value in the file).

    Raises `DataError` for an empty, binary or undecodable file, text that is not a
    table, rows with a different number of fields from the first row (naming the line),
    duplicate column names, fewer than 2 columns, or no data rows.
    """
    text = _decode(data, source)
    text, skipped_lines = _trim_leading_blank_lines(text)
    if not text.strip():
        raise DataError(source, "the file is empty")

    sample = _sample(text)
    delimiter, quote = _sniff(sample, source)
    _check_width(text, delimiter, quote, source)
    rows = _sample_rows(sample, delimiter, quote, truncated=len(sample) < len(text))
    has_header = not _looks_headerless(sample, rows, delimiter, quote)
    decimal = _decimal_mark(rows, delimiter)

    layout = _Layout(source, text, delimiter, quote, has_header, skipped_lines)
    raw, layout = _read_strings(layout, sample)
    _check_short_rows(raw, layout)

    if has_header:
        names = _column_names(raw.row(0), source)
        body = raw.slice(1)
    else:
        names = [f"column_{i}" for i in range(1, raw.width + 1)]
        body = raw
    if len(names) < 2:
        raise DataError(source, "needs at least 2 columns (features and a target)")
    body.columns = names

    frame = _clean_cells(body)
    if frame.height == 0:
        raise DataError(source, "has no data rows")
    return _infer_types(frame, decimal)


def _check_width(text: str, delimiter: str, quote: str, source: str) -> None:
    """Refuse a first record wider than MAX_COLUMNS before polars materialises its columns."""
    end = text.find("\n")
    first = text if end < 0 else text[:end]
    if first.count(delimiter) < MAX_COLUMNS:
        return  # cannot have more fields than delimiters + 1: the common, cheap case
    fields = next(csv.reader([first], delimiter=delimiter, quotechar=quote), [])
    if len(fields) > MAX_COLUMNS:
        raise DataError(
            source, f"has {len(fields):,} columns; at most {MAX_COLUMNS:,} are supported", line=1
        )


def _decode(data: bytes, source: str) -> str:
    """The file as text: UTF-8 (BOM stripped), UTF-16 with BOM, else a detected encoding."""
    if not data.strip():
        raise DataError(source, "the file is empty")
    if data.startswith(codecs.BOM_UTF8):
        text = _strict_decode(data[len(codecs.BOM_UTF8) :], "utf-8", source)
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = _strict_decode(data, "utf-16", source)
    elif b"\x00" in data:
        # Text files other than UTF-16/32 never contain NUL; images, archives etc. do.
        raise DataError(source, "is a binary file, not CSV text (it contains NUL bytes)")
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            _reject_damaged_utf8(data, exc, source)
            text = _strict_decode(data, _detect_encoding(data, source), source)

    head = text[:_SAMPLE_CHARS]
    if len(_CONTROL.findall(head)) > _MAX_CONTROL_SHARE * len(head):
        raise DataError(source, "is a binary file, not CSV text (too many control characters)")
    return text


_ENCODING_BLOCK = 8 << 20
_ENCODING_SAMPLE = 1 << 20


def file_encoding(path: Path, source: str) -> str:
    """The text encoding of a CSV file, judged as `read_csv_bytes` judges an upload's, without
    holding the file: "utf-8" (a UTF-8 BOM is left for the reader to skip), "utf-16" (with its
    BOM), else the encoding detected from the first block that is not UTF-8 (a spreadsheet's
    cp1252 export). Streamed in blocks; ASCII blocks, most of a typical file, are only scanned.
    DataError for binary data and for UTF-8 damaged by a few bad bytes."""
    with open(path, "rb") as handle:
        first = handle.read(4)
        if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        handle.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        pending = False  # the decoder holds the start of a character cut by the block's end
        start = 0
        while block := handle.read(_ENCODING_BLOCK):
            if b"\x00" in block:
                raise DataError(source, "is a binary file, not CSV text (it contains NUL bytes)")
            if pending or not block.isascii():
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    # Judged on the megabyte around the first byte that is not UTF-8.
                    handle.seek(max(start + exc.start - _ENCODING_SAMPLE // 2, 0))
                    sample = handle.read(_ENCODING_SAMPLE)
                    if _mostly_utf8(sample):
                        at = start + exc.start
                        raise DataError(
                            source,
                            f"is UTF-8 except for undecodable bytes (the first at byte {at})",
                            line=_line_of(handle, at),
                        ) from None
                    return _detect_encoding(sample, source)
                pending = bool(decoder.getstate()[0])
            start += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise DataError(
                source, "ends inside a UTF-8 character: the file is cut short"
            ) from None
    return "utf-8"


def _line_of(handle: BinaryIO, offset: int) -> int:
    """The 1-based line holding byte `offset` of a file (counted only when an error needs it)."""
    handle.seek(0)
    lines = 1
    while offset > 0 and (block := handle.read(min(_ENCODING_BLOCK, offset))):
        lines += block.count(b"\n")
        offset -= len(block)
    return lines


def _strict_decode(data: bytes, encoding: str, source: str) -> str:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        where = f" at byte {exc.start}" if isinstance(exc, UnicodeDecodeError) else ""
        raise DataError(source, f"cannot be decoded as {encoding}{where}") from exc


def _reject_damaged_utf8(data: bytes, error: UnicodeDecodeError, source: str) -> None:
    """Raise if the bytes are UTF-8 apart from a few bad bytes.

    Such a file is damaged, and decoding it all as cp1252 would silently garble every
    accented letter; in a real cp1252 file valid UTF-8 sequences are rare accidents.
    """
    if _mostly_utf8(data):
        line = data.count(b"\n", 0, error.start) + 1
        raise DataError(
            source,
            f"is UTF-8 except for undecodable bytes (the first at byte {error.start})",
            line=line,
        )


def _mostly_utf8(data: bytes) -> bool:
    """More valid non-ASCII UTF-8 characters than undecodable bytes."""
    decoded = data.decode("utf-8", errors="replace")
    bad = decoded.count("\ufffd")
    return len(decoded) - len(decoded.encode("ascii", "ignore")) - bad > bad


def _detect_encoding(data: bytes, source: str) -> str:
    """Guess the encoding of bytes that are not UTF-8."""
    try:
        best = charset_normalizer.from_bytes(data).best()
    except Exception as exc:  # a detector bug must not escape as a crash
        raise DataError(source, "cannot determine the text encoding") from exc
    if best is None:
        raise DataError(source, "is not text in any known encoding (not UTF-8, not cp1252, ...)")
    encoding = best.encoding
    if encoding in _LATIN_SINGLE_BYTE:
        try:
            data.decode("cp1252")
        except UnicodeDecodeError:
            return encoding
        return "cp1252"
    return encoding


def _trim_leading_blank_lines(text: str) -> tuple[str, int]:
    """Drop blank lines before the first row (polars would take its width from them)."""
    if "\n" not in text and "\r" in text:
        text = text.replace("\r", "\n")  # old Mac line endings; polars splits on \n only
    match = _LEADING_BLANK_LINES.match(text)
    if match is None:
        return text, 0
    return text[match.end() :], match.group().count("\n")


def _sample(text: str) -> str:
    """The first ~64 KB, cut after the last complete line."""
    if len(text) <= _SAMPLE_CHARS:
        return text
    sample = text[:_SAMPLE_CHARS]
    cut = sample.rfind("\n")
    return sample[:cut] if cut > 0 else sample


def _field_counts(sample: str, delimiter: str, quote: str) -> list[int]:
    """Fields per non-blank record of the sample, parsed with the given dialect."""
    counts: list[int] = []
    reader = csv.reader(io.StringIO(sample), delimiter=delimiter, quotechar=quote)
    try:
        for row in reader:
            if any(field.strip() for field in row):
                counts.append(len(row))
    except csv.Error:
        pass  # a sample cut inside a quoted field; the rows so far are enough
    return counts


def _consistency(counts: list[int]) -> tuple[float, int]:
    """Share of records with the most common field count, and that count."""
    if not counts:
        return 0.0, 0
    usual, freq = Counter(counts).most_common(1)[0]
    return freq / len(counts), usual


def _quoted_fields(sample: str, delimiter: str, quote: str) -> int:
    """How many fields of the sample start with the quote character."""
    pattern = f"(?:^|{re.escape(delimiter)})[ \t]*{re.escape(quote)}"
    return len(re.findall(pattern, sample, flags=re.MULTILINE))


def _parses_strictly(sample: str, delimiter: str, quote: str) -> bool:
    """Whether every quoted field in the sample is closed and followed by a delimiter.

    The lenient reader accepts a quote that opens and never closes, which makes a wrong
    quote character look as consistent as the right one.
    """
    reader = csv.reader(io.StringIO(sample), delimiter=delimiter, quotechar=quote, strict=True)
    try:
        for _ in reader:
            pass
    except csv.Error:
        return False
    return True


def _sniff(sample: str, source: str) -> tuple[str, str]:
    """Delimiter and quote character of the sample.

    `csv.Sniffer` guesses well on clean files but is fooled by decimals, prose, stray
    apostrophes and few lines. So each candidate delimiter is scored by how consistently it
    splits the records (parsed with quotes): most consistent first, then most fields, and
    only then the Sniffer's choice. The quote is `"` unless more fields start with `'` and
    the sample parses cleanly, and as consistently, with `'`.
    """
    sniffed: type[csv.Dialect] | None
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS))
    except csv.Error:
        sniffed = None

    counts = {d: _field_counts(sample, d, '"') for d in DELIMITERS}
    scores = {d: _consistency(c) for d, c in counts.items()}
    splitting = [d for d, (_, usual) in scores.items() if usual >= 2]
    if not splitting:
        return ",", '"'  # one column; rejected later with a clear message
    best = max(
        splitting, key=lambda d: (*scores[d], sniffed is not None and sniffed.delimiter == d)
    )

    quote = '"'
    if _quoted_fields(sample, best, "'") > _quoted_fields(sample, best, '"') and _parses_strictly(
        sample, best, "'"
    ):
        single = _field_counts(sample, best, "'")
        if _consistency(single) >= scores[best]:
            quote, counts[best], scores[best] = "'", single, _consistency(single)

    consistency, _ = scores[best]
    if consistency < _MIN_CONSISTENCY and len(counts[best]) >= _MIN_ROWS_FOR_CONSISTENCY:
        raise DataError(
            source,
            "does not look like a table: no delimiter among , ; tab | splits the lines "
            "into a consistent number of fields",
        )
    return best, quote


def _sample_rows(sample: str, delimiter: str, quote: str, *, truncated: bool) -> list[list[str]]:
    rows: list[list[str]] = []
    reader = csv.reader(io.StringIO(sample), delimiter=delimiter, quotechar=quote)
    try:
        rows.extend(row for row in reader if any(field.strip() for field in row))
    except csv.Error:
        truncated = True
    if truncated and len(rows) > 2:
        rows.pop()  # may be cut short by the end of the sample
    return rows


def _is_number(value: str) -> bool:
    return _NUMBER.fullmatch(value.strip()) is not None


def _looks_headerless(sample: str, rows: list[list[str]], delimiter: str, quote: str) -> bool:
    """True when the first row is data: numeric wherever the column below it is numeric.

    A header of names over string columns cannot be told from data, so it is taken as a
    header (the common case); only numbers in numeric columns, confirmed by
    `csv.Sniffer.has_header`, make the first row data.
    """
    if len(rows) < 2:
        return False
    first, body = rows[0], rows[1:]
    if not any(_is_number(value) for value in first):
        return False  # the usual case: a header of names
    numeric_columns = []
    for j in range(len(first)):
        values = [row[j].strip() for row in body if len(row) > j]
        values = [v for v in values if v not in _NULL_SET]
        if values and all(_NUMBER.fullmatch(v) for v in values):
            numeric_columns.append(j)
    if not numeric_columns or not all(_is_number(first[j]) for j in numeric_columns):
        return False

    dialect = type("_Sniffed", (csv.excel,), {"delimiter": delimiter, "quotechar": quote})

    class _KnownDialectSniffer(csv.Sniffer):
        # has_header() re-sniffs the dialect internally; give it the one already found.
        def sniff(self, sample: str, delimiters: str | None = None) -> type[csv.Dialect]:
            return dialect

    try:
        return not _KnownDialectSniffer().has_header(sample)
    except csv.Error:
        return True


@dataclass(frozen=True)
class _Layout:
    """What is known about the file when polars parses it."""

    source: str
    text: str
    delimiter: str
    quote: str | None
    has_header: bool
    skipped_lines: int  # blank lines trimmed before the first row, for line numbers


def _read_strings(layout: _Layout, sample: str) -> tuple[pl.DataFrame, _Layout]:
    """Every cell as a string (null if empty or missing), the first row included.

    polars rejects a quote character inside an unquoted field (`12" pizza`); when no field
    of the sample starts with a quote, the file is read again with quoting turned off.
    Returns the frame and the layout it was actually read with.
    """
    try:
        return _polars_strings(layout), layout
    except _POLARS_ERRORS as exc:
        error = exc
    if layout.quote is not None and not _quoted_fields(sample, layout.delimiter, layout.quote):
        unquoted = replace(layout, quote=None)
        try:
            return _polars_strings(unquoted), unquoted
        except _POLARS_ERRORS:
            pass  # report the first failure, which is about the file as sniffed

    ragged = _find_ragged_row(layout)
    if ragged is not None:
        raise _ragged_error(layout, *ragged) from error
    raise DataError(layout.source, f"cannot be parsed as CSV ({_describe(error)})") from error


def _polars_strings(layout: _Layout, text: str | None = None) -> pl.DataFrame:
    return pl.read_csv(
        io.BytesIO((layout.text if text is None else text).encode("utf-8")),
        separator=layout.delimiter,
        quote_char=layout.quote,
        has_header=False,
        infer_schema=False,
        try_parse_dates=False,
        # Reading the check copy in _find_ragged_row keeps over-long rows to find them.
        truncate_ragged_lines=text is not None,
    )


def _describe(error: BaseException) -> str:
    """The gist of a polars error, in words for the person who uploaded the file."""
    message = str(error).strip()
    if "not properly escaped" in message:
        return "a quoted field is not closed, or a quote inside it is not doubled"
    if "more fields" in message:
        return "some rows have more fields than the first row"
    return message.splitlines()[0] if message else type(error).__name__


def _check_short_rows(raw: pl.DataFrame, layout: _Layout) -> None:
    """Reject rows with fewer fields than the first one.

    polars pads short rows with nulls instead of failing, so a short row is one that is
    null in the last column without being blank. Only then is the file scanned for the
    offending line, so clean files pay one null count.
    """
    last = pl.col(raw.columns[-1])
    padded = raw.select((last.is_null() & ~pl.all_horizontal(pl.all().is_null())).any()).item()
    if not padded:
        return
    ragged = _find_ragged_row(layout)
    if ragged is not None:
        raise _ragged_error(layout, *ragged)


def _ragged_error(layout: _Layout, line: int, found: int | None, expected: int) -> DataError:
    first = "the header" if layout.has_header else "the first row"
    count = f"more than {expected}" if found is None else str(found)
    fields = "field" if found == 1 else "fields"
    return DataError(
        layout.source, f"row has {count} {fields} but {first} has {expected}", line=line
    )


def _find_ragged_row(layout: _Layout) -> tuple[int, int | None, int] | None:
    """The first non-blank record whose field count differs from the first record's.

    Returns (1-based line in the uploaded file where the record starts, fields found or
    None if unknown, fields expected). So that the answer follows polars' own parsing,
    polars reads a copy of the text in which every line ends with an extra field, a
    marker plus the line number: a complete record has the marker in its last column, a
    short one has it further left, an over-long one is truncated before it. Markers that
    land inside multi-line quoted fields are part of a value, never a whole one.
    """
    mark = next((c for c in _MARKS if c not in layout.text), None)
    if mark is None:
        return None
    first_line = 1 + layout.skipped_lines
    lines = pl.Series([layout.text]).str.split("\n").explode().str.strip_suffix("\r")
    numbers = pl.int_range(first_line, first_line + len(lines), eager=True).cast(pl.String)
    tagged = (lines + layout.delimiter + mark + numbers).str.join("\n").item()
    try:
        frame = _polars_strings(layout, tagged)
    except _POLARS_ERRORS:
        return None

    def is_mark(column: str) -> pl.Expr:
        return pl.col(column).str.starts_with(mark).fill_null(False)

    columns = frame.columns
    rows = frame.select(
        end=pl.coalesce(
            pl.when(is_mark(c)).then(pl.col(c).str.slice(1).cast(pl.Int64, strict=False))
            for c in columns
        ),
        found=pl.coalesce(pl.when(is_mark(c)).then(pl.lit(i)) for i, c in enumerate(columns)),
        complete=is_mark(columns[-1]),
        blank=pl.all_horizontal(
            is_mark(c) | (pl.col(c).str.strip_chars().fill_null("") == "") for c in columns
        ),
    ).with_columns(start=pl.col("end").shift(1).fill_null(first_line - 1) + 1)
    bad = rows.filter(~pl.col("complete") & ~pl.col("blank"))
    if bad.height == 0:
        return None
    start, found = int(bad.item(0, "start")), bad.item(0, "found")
    if found is None:  # over-long, truncated by polars: count that one record in Python
        found = _count_fields(lines.slice(start - first_line, 1000).to_list(), layout)
    return start, found, len(columns) - 1


def _count_fields(lines: list[str], layout: _Layout) -> int | None:
    """Fields of the record starting at the first of `lines`, with the stdlib parser."""
    if layout.quote is None:
        reader = csv.reader(lines, delimiter=layout.delimiter, quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(lines, delimiter=layout.delimiter, quotechar=layout.quote)
    try:
        return len(next(reader))
    except (csv.Error, StopIteration):
        return None


def _column_names(header: tuple[str | None, ...], source: str) -> list[str]:
    """Stripped header names; blanks become column_<i>; duplicates are an error."""
    names = [(value or "").strip() or f"column_{i}" for i, value in enumerate(header, start=1)]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(source, "duplicate column name in the header", line=1, column=name)
        seen.add(name)
    return names


def _clean_cells(frame: pl.DataFrame) -> pl.DataFrame:
    """Strip cells, turn null tokens into null and drop blank rows."""
    # Eager on purpose: polars' lazy optimiser takes time quadratic in the number of columns
    # for this query (24 s at 1,000 columns), which let one wide upload stall the worker.
    cleaned = frame.with_columns(pl.all().str.strip_chars().replace(NULL_VALUES, None))
    return cleaned.filter(~pl.all_horizontal(pl.all().is_null()))


def _decimal_mark(rows: list[list[str]], delimiter: str) -> Literal[".", ","]:
    """The file's decimal mark, judged once from the sample's cells and the delimiter."""
    return judge_decimal((cell for row in rows for cell in row), delimiter=delimiter)


def _infer_types(frame: pl.DataFrame, decimal: str = ".") -> pl.DataFrame:
    """Each column becomes Int64, else Float64, else stays String, judged on every value."""
    types = _judged_types(frame, decimal)
    return frame.select(_typed(i, judged) for i, judged in enumerate(types))


def _judged_types(frame: pl.DataFrame, decimal: str) -> list[pl.DataType | None]:
    """The type of each column of cleaned text cells: Int64 when every present value reads as
    one, else Float64, else String; None for a column with no values (nothing to judge).

    In a file of decimal commas nothing is Float64 (`1.234` is a thousand there): such columns
    stay text, and the columns step reads them in the file's spelling. Columns are taken by
    position: a name such as `^a.*$` would be a pattern."""
    width = frame.width
    stats = frame.select(
        *(pl.nth(i).null_count().alias(f"n{i}") for i in range(width)),
        *(pl.nth(i).cast(pl.Int64, strict=False).null_count().alias(f"i{i}") for i in range(width)),
        *(
            pl.nth(i).cast(pl.Float64, strict=False).null_count().alias(f"f{i}")
            for i in range(width)
        ),
    ).row(0, named=True)
    types: list[pl.DataType | None] = []
    for i in range(width):
        nulls = stats[f"n{i}"]
        if nulls == frame.height:
            types.append(None)
        elif stats[f"i{i}"] == nulls:
            types.append(pl.Int64())
        elif stats[f"f{i}"] == nulls and decimal == ".":
            types.append(pl.Float64())
        else:
            types.append(pl.String())
    return types


def _typed(position: int, judged: pl.DataType | None, text: pl.DataType | None = None) -> pl.Expr:
    """The column at `position` cast to its judged type (text to `text` when given); a column
    with no values stays as it is."""
    column = pl.nth(position)
    if judged is None or (judged == pl.String and text is None):
        return column
    return column.cast(text if judged == pl.String and text is not None else judged)


# -- the typed path ------------------------------------------------------------------------------

# Data rows read as text to judge the types of the typed read (polars' own sample size). Parsing
# numbers where they are read costs a fraction of keeping every cell as a string first.
_SAMPLE_ROWS = 10_000
# Columns whose later values may break the sample's types, one read each, before every numeric
# column is read as text at once.
_MAX_BREAKS = 3
# polars' error for a value its typed parser refuses; the column number is 1-based.
_BREAK = re.compile(r"could not parse .*? \(column number (\d+)\)", re.DOTALL)


def read_csv_file(
    data: Path | bytes, source: str, *, text_as_categorical: bool = False
) -> pl.DataFrame:
    """`read_csv_bytes` for a file of any size: the same frame, in a fraction of the time and
    memory.

    `data` is a path (read by polars in pieces, never whole into Python) or the bytes. The types
    are judged on a sample of rows, the file is read typed (numbers parsed as they are read), and
    a column whose later values the sample's type does not fit is read again as text and judged
    on every value: the types are those a judgement of the whole file gives. With
    `text_as_categorical` the String columns come back as Categorical (4 bytes a cell instead of
    16 and more): the same values, a fraction of the memory. Files this path cannot read as they
    are (another encoding, ragged rows, odd quoting, ...) go through `read_csv_bytes`, which
    explains the problem.
    """
    try:
        frame = _read_typed(data, source, text_as_categorical)
    except (DataError, *_POLARS_ERRORS):
        frame = None
    if frame is not None:
        return frame
    raw = data.read_bytes() if isinstance(data, Path) else data
    frame = read_csv_bytes(raw, source)
    if not text_as_categorical:
        return frame
    return frame.with_columns(pl.col(pl.String).cast(pl.Categorical))


def _head(data: Path | bytes) -> tuple[bytes, bool]:
    """The first bytes of the file and whether that is all of it."""
    limit = _SAMPLE_CHARS + 4
    if isinstance(data, Path):
        with open(data, "rb") as handle:
            head = handle.read(limit + 1)
    else:
        head = data[: limit + 1]
    return head[:limit], len(head) <= limit


@dataclass(frozen=True)
class _Dialect:
    """How a clean UTF-8 file is written, judged from its first bytes."""

    delimiter: str
    quote: str
    has_header: bool
    decimal: Literal[".", ","]


def _head_dialect(data: Path | bytes, source: str) -> _Dialect | None:
    """The dialect of a clean UTF-8 file, or None when the file needs `read_csv_bytes`."""
    return _dialect_of_head(*_head(data), source)


# The stage asks twice per upload (`read_csv_file`, then `file_decimal`): sniffing the first
# 64 KiB costs a fifth of a second, reading them again nothing.
@functools.lru_cache(maxsize=4)
def _dialect_of_head(head: bytes, whole: bool, source: str) -> _Dialect | None:
    """The dialect judged from a file's first bytes (`_head`), or None (see `_head_dialect`)."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head:
        return None
    head = head.removeprefix(codecs.BOM_UTF8)  # polars skips a UTF-8 BOM itself
    if not whole:
        cut = head.rfind(b"\n")
        if cut <= 0:
            return None  # a first line longer than the sample
        head = head[:cut]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if (
        not text.strip()
        or ("\n" not in text and "\r" in text)
        or _LEADING_BLANK_LINES.match(text)
        or len(_CONTROL.findall(text)) > _MAX_CONTROL_SHARE * len(text)
    ):
        return None
    if not whole and "\n" not in text:
        return None
    delimiter, quote = _sniff(text, source)
    _check_width(text, delimiter, quote, source)
    rows = _sample_rows(text, delimiter, quote, truncated=not whole)
    has_header = not _looks_headerless(text, rows, delimiter, quote)
    return _Dialect(delimiter, quote, has_header, _decimal_mark(rows, delimiter))


def file_decimal(data: Path | bytes, source: str) -> Literal[".", ","] | None:
    """The decimal mark of a file as `read_csv_file` judges it (from the first rows' cells and
    the delimiter: `93,994` in a `;` file is a decimal comma), or None for a file only
    `read_csv_bytes` reads. Later steps see only the frame, where such a cell is ambiguous."""
    dialect = _head_dialect(data, source)
    return None if dialect is None else dialect.decimal


def _read_typed(data: Path | bytes, source: str, text_as_categorical: bool) -> pl.DataFrame | None:
    """The typed frame of a clean UTF-8 file, or None when the file needs `read_csv_bytes`."""
    dialect = _head_dialect(data, source)
    if dialect is None:
        return None

    def read(types: list[pl.DataType], **more: Any) -> pl.DataFrame:
        # Columns named by position (c0, c1, ...): the file's names could read as patterns.
        # The schema fixes the width at the first row's: a longer row is an error, a shorter
        # one is padded with nulls (found by `_short_rows`).
        return pl.read_csv(
            data,
            separator=dialect.delimiter,
            quote_char=dialect.quote,
            has_header=False,
            skip_rows=int(dialect.has_header),
            schema={f"c{i}": t for i, t in enumerate(types)},
            **more,
        )

    first = pl.read_csv(
        data,
        separator=dialect.delimiter,
        quote_char=dialect.quote,
        has_header=False,
        infer_schema=False,
        n_rows=1,
    )
    if dialect.has_header:
        names = _column_names(first.row(0), source)
    else:
        names = [f"column_{i}" for i in range(1, first.width + 1)]
    if len(names) < 2:
        return None

    text: pl.DataType = pl.Categorical() if text_as_categorical else pl.String()
    sample = read([pl.String()] * len(names), n_rows=_SAMPLE_ROWS)
    tokens = _null_tokens(sample)
    sample = sample.select(_clean_expr(name) for name in sample.columns)
    judged = _judged_types(sample, dialect.decimal)
    frame, pending = _read_breaking_columns_as_text(read, judged, text, tokens)

    # Text cells are stripped, with the null tokens as null: polars only knows the exact tokens.
    repairs = [
        _clean_expr(name, cast_from=frame.schema[name])
        for i, name in enumerate(frame.columns)
        if i in pending or (judged[i] == pl.String and _needs_cleaning(frame.get_column(name)))
    ]
    if repairs:
        frame = frame.with_columns(repairs)
    if pending:
        order = sorted(pending)
        rejudged = _judged_types(frame.select(pl.nth(order)), dialect.decimal)
        frame = frame.with_columns(
            _typed(i, kind, None if kind is None else text).alias(frame.columns[i])
            for i, kind in zip(order, rejudged, strict=True)
        )

    blank = pl.all_horizontal(pl.all().is_null())
    if _short_rows(read, frame, blank, data, dialect):
        return None  # read_csv_bytes names the line
    if frame.select(blank.any()).item():
        frame = frame.filter(~blank)
    if frame.height == 0:
        raise DataError(source, "has no data rows")
    return frame.rename(dict(zip(frame.columns, names, strict=True)))


def _read_breaking_columns_as_text(
    read: Callable[..., pl.DataFrame],
    judged: list[pl.DataType | None],
    text: pl.DataType,
    tokens: list[str],
) -> tuple[pl.DataFrame, set[int]]:
    """The file read with the judged types, and the columns read as (raw) text instead: those
    without values in the sample and those whose later values polars' typed parser refused.

    polars stops at the first value it cannot parse and names its column: that column is read as
    text from then on. After `_MAX_BREAKS` such columns, every numeric column is read as text.
    polars reads `tokens` (the null tokens the sample holds) as null; any other is a value that
    breaks a numeric column or a text cell `_needs_cleaning` finds (each token polars is given
    costs a comparison per cell)."""
    pending = {i for i, kind in enumerate(judged) if kind is None}
    numeric = {i for i, kind in enumerate(judged) if kind is not None and kind.is_numeric()}
    while True:
        types = [
            pl.String() if i in pending or kind is None else text if kind == pl.String else kind
            for i, kind in enumerate(judged)
        ]
        try:
            return read(types, null_values=tokens or None), pending
        except pl.exceptions.ComputeError as exc:
            found = _BREAK.search(str(exc))
            left = numeric - pending
            if found is None or not left:
                raise
            broken = int(found.group(1)) - 1
            if broken in left and len(pending & numeric) < _MAX_BREAKS:
                pending.add(broken)
            else:
                pending |= left


def _null_tokens(raw: pl.DataFrame) -> list[str]:
    """The null tokens (but the empty cell, null already) among raw text cells, as written."""
    seen: set[str] = set()
    for column in raw.iter_columns():
        seen.update(column.filter(column.is_in(NULL_VALUES)).unique().to_list())
    return [token for token in NULL_VALUES if token and token in seen]


def _needs_cleaning(column: pl.Series) -> bool:
    """Whether a text column holds a value with surrounding space or a null token (polars knows
    only the tokens it was given)."""
    distinct = column.unique().cast(pl.String).drop_nulls()  # few strings for a Categorical
    stripped = distinct.str.strip_chars()
    return bool(((stripped != distinct) | stripped.is_in(NULL_VALUES)).any())


def _short_rows(
    read: Callable[..., pl.DataFrame],
    frame: pl.DataFrame,
    blank: pl.Expr,
    data: Path | bytes,
    dialect: _Dialect,
) -> bool:
    """Whether some row has fewer fields than the first (polars pads it with nulls).

    A row is suspect when its last cell is missing and not every cell is. The last column is
    then read again as raw text, where only an empty or absent field is null (a missing-value
    token such as `NA` clears the suspicion), and if an empty last field remains, the stdlib
    parser counts the fields of every record, streaming."""
    last = frame.columns[-1]
    suspect = frame.select(pl.col(last).is_null() & ~blank).to_series()
    if not suspect.any():
        return False
    raw = read([pl.String()] * frame.width, columns=[frame.width - 1])
    if raw.height != frame.height:
        return True
    if not (raw.get_column(last).is_null() & suspect).any():
        return False
    return _has_short_record(data, dialect, frame.width)


def _has_short_record(data: Path | bytes, dialect: _Dialect, width: int) -> bool:
    """Whether a non-blank record has fewer than `width` fields, by the stdlib parser."""
    handle = (
        open(data, encoding="utf-8-sig", newline="")  # noqa: SIM115 (closed below)
        if isinstance(data, Path)
        else io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    )
    with handle:
        reader = csv.reader(handle, delimiter=dialect.delimiter, quotechar=dialect.quote)
        try:
            return any(len(row) < width and any(f.strip() for f in row) for row in reader)
        except csv.Error:
            return True


def _clean_expr(name: str, cast_from: pl.DataType | None = None) -> pl.Expr:
    """A cell stripped, with the null tokens as null (streams, unlike `replace`); a Categorical
    column is cleaned as text and comes back Categorical."""
    column = pl.col(name)
    categorical = cast_from == pl.Categorical
    stripped = (column.cast(pl.String) if categorical else column).str.strip_chars()
    cleaned = pl.when(stripped.is_in(NULL_VALUES)).then(None).otherwise(stripped)
    return (cleaned.cast(pl.Categorical) if categorical else cleaned).alias(name)
