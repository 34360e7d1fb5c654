"""Batch scoring of a whole table: chunks of raw rows in, chunks of predictions out.

A file is read a chunk of `chunk_rows` rows at a time (CSV cells as text, exactly as written;
Parquet columns as stored), each chunk is encoded and predicted by the same `Predictor` that
serves HTTP requests, and leaves as an Arrow table: the input's columns (or one id column)
followed by the prediction columns. Memory stays that of a few chunks, whatever the file's size.

With `explain=K` each row also gets `base`, then `column_i`, `contribution_i` (i = 1..K, largest
|contribution| first): the raw input columns' contributions to the model's raw score
(`automlops.ml.explain.records`), so base + every column's contribution = that score. For
multiclass, only the predicted class's explanation (its softmax logit) is written, to keep one
readable set of columns per row.

A row that cannot be read (a field count unlike the header's, a value its column's type cannot
take) is left out of the predictions and reported as a `RowError`; the caller decides how many
it tolerates. Chunk boundaries depend only on the file and `chunk_rows`, so a resumed run sees
the same chunks and can skip the ones already written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from automlops.config import MAX_EXPLAIN, Task
from automlops.errors import DataError, NotFoundError, PermanentError
from automlops.ml.columns.transform import ColumnKind
from automlops.ml.columns.values import InvalidValueError
from automlops.ml.explain.table import chosen_output_table
from automlops.ml.predictor import Predictions, Predictor
from automlops.registry import ModelVersion, Registry
from automlops.tabular.csv_reader import DELIMITERS, NULL_VALUES, file_encoding

CHUNK_ROWS = 50_000  # ~7 MB of bank text; a chunk per core in flight: 100x peaked at ~650 MB
_CSV_BLOCK_BYTES = 4 << 20


class ScoreOptions(BaseModel):
    """How to score one file (the sidecar `score/<dataset>/<file>.json`; all optional)."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1, description="Version (default: champion).")
    explain: int | None = Field(
        default=None, ge=1, le=MAX_EXPLAIN, description="Top-K contributions per row."
    )
    id_column: str | None = Field(
        default=None, description="Keep only this input column beside the predictions."
    )
    max_bad_share: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Share of unreadable rows that fails the file."
    )


class TableFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"

    @classmethod
    def of(cls, filename: str) -> TableFormat:
        """The format a file name announces; PermanentError for any other."""
        suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        try:
            return cls(suffix)
        except ValueError:
            raise PermanentError(
                f"{filename}: only .csv and .parquet files can be scored"
            ) from None


@dataclass(frozen=True)
class RowError:
    """An input row left out: its 1-based data row number, the column at fault (if one)."""

    row: int
    column: str
    message: str


@dataclass(frozen=True)
class Chunk:
    """Rows `first_row` (0-based, among the rows the parser kept) onwards of the input."""

    index: int
    first_row: int
    table: pa.Table


@dataclass(frozen=True)
class ScoredChunk:
    """The predictions of one chunk: one row per readable row (`ROW_COLUMN` holds its place
    in the chunk), and the rows it could not score."""

    index: int
    predictions: pa.Table
    errors: list[RowError]


ROW_COLUMN = "__row"  # a prediction's row in its chunk (0-based), in a stored part


class ScoreLineage(BaseModel):
    """`lineage.json` of a scoring run: what was scored, by what, into what."""

    dataset: str
    run_id: str
    input_bucket: str
    input_key: str
    input_sha256: str
    input_rows: int  # data rows in the file, readable or not
    model_version: int
    model_run_id: str
    model_artifact_key: str
    options: ScoreOptions
    output_bucket: str
    output_key: str
    output_rows: int
    errors_key: str
    error_rows: int
    scored_at: str
    # The model's input columns the file lacks: scored as missing values, as serving does.
    missing_columns: list[str] = Field(default_factory=list)


def score_run_id(dataset: str, etag: str, size: int, version: int, options: ScoreOptions) -> str:
    """A scoring run is named after its input's content, the version and the options."""
    bare = etag.strip('"')
    material = f"score\0{dataset}\0{bare}:{size}\0v{version}\0"
    material += options.model_dump_json(exclude={"version"})
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def scoring_version(registry: Registry, dataset: str, version: int | None) -> ModelVersion:
    """The version that scores a file: `version`, else the dataset's champion."""
    doc = registry.read(dataset)
    if not doc.versions:
        raise PermanentError(f"dataset {dataset!r} has no model versions")
    if version is not None:
        try:
            return doc.get(version)
        except NotFoundError as exc:
            raise PermanentError(str(exc)) from None
    champion = doc.champion_version()
    if champion is None:
        raise PermanentError(f"dataset {dataset!r} has no champion to score with")
    return champion


# -- reading ------------------------------------------------------------------------------------


@dataclass
class TableReader:
    """A file's rows in chunks; `skipped` lists the rows parsing left out so far."""

    names: list[str]
    chunks: Iterator[Chunk]
    skipped: list[RowError]
    estimated_rows: int  # exact for Parquet, from the first lines' length for CSV
    format: OutputFormat


@dataclass(frozen=True)
class OutputFormat:
    """How the output is written: the input's format (and a CSV's delimiter)."""

    kind: TableFormat
    delimiter: str = ","


def open_table(source: Path, fmt: TableFormat, chunk_rows: int = CHUNK_ROWS) -> TableReader:
    """Read a file `chunk_rows` rows at a time (the last chunk may be shorter)."""
    if fmt is TableFormat.parquet:
        try:
            parquet = pq.ParquetFile(source)
            batches = parquet.iter_batches(batch_size=chunk_rows)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(source.name, f"is not a readable Parquet file: {exc}") from None
        names = parquet.schema_arrow.names
        rows = parquet.metadata.num_rows
        chunks = _rechunk(source.name, batches, chunk_rows)
        return TableReader(names, chunks, [], rows, OutputFormat(fmt))
    reader, header, skipped = _open_csv(source)
    chunks = _rechunk(source.name, reader, chunk_rows)
    output = OutputFormat(fmt, header.delimiter)
    return TableReader(header.names, chunks, skipped, _estimate_rows(source), output)


def read_ahead(chunks: Iterator[Chunk], depth: int = 1) -> Iterator[Chunk]:
    """`chunks`, read on a thread of its own up to `depth` chunks ahead of the consumer."""
    ahead: queue.Queue[Chunk | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: Chunk | BaseException | None) -> bool:
        """Hand an item over unless the consumer stopped (then False)."""
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not offer(chunk):
                    return
            offer(None)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(exc)

    thread = threading.Thread(target=produce, name="automlops-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := ahead.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _estimate_rows(source: Path) -> int:
    """Data rows of a CSV file, guessed from the length of its first lines (for progress)."""
    with open(source, "rb") as handle:
        sample = handle.read(1 << 20)
    lines = max(sample.count(b"\n"), 1)
    return max(round(source.stat().st_size * lines / max(len(sample), 1)) - 1, 1)


def progress_text(rows: int, estimated: int) -> str:
    """How a scoring run reports its progress (`progress_share` reads it back)."""
    share = min(rows / max(estimated, 1), 1.0)
    return f"scored {rows:,} rows ({share:.0%})"


def progress_share(text: str) -> float | None:
    """The share done a `progress_text` says (None for any other text)."""
    if not text.startswith("scored ") or not text.endswith("%)"):
        return None
    try:
        return float(text.rsplit("(", 1)[1].rstrip("%)")) / 100
    except ValueError:
        return None


def _open_csv(source: Path) -> tuple[pa_csv.CSVStreamingReader, _Header, list[RowError]]:
    """A streaming reader of a CSV file with every cell as text, and the list it appends the
    rows it skips to (a field count unlike the header's)."""
    encoding = file_encoding(source, source.name)
    header = _header(source, encoding)
    skipped: list[RowError] = []

    def skip(row: pa_csv.InvalidRow) -> str:
        line = row.number if row.number is not None else 0
        skipped.append(
            RowError(
                line - 1,  # the header is line 1; assumes no line breaks inside quotes
                "",
                f"has {row.actual_columns} fields, the header {row.expected_columns}",
            )
        )
        return "skip"

    try:
        reader = pa_csv.open_csv(
            source,
            read_options=pa_csv.ReadOptions(
                block_size=_CSV_BLOCK_BYTES, use_threads=False, encoding=encoding
            ),
            parse_options=pa_csv.ParseOptions(delimiter=header.delimiter, invalid_row_handler=skip),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in header.names},
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowException as exc:
        raise DataError(source.name, f"cannot be read as CSV: {exc}") from None
    return reader, header, skipped


@dataclass(frozen=True)
class _Header:
    names: list[str]
    delimiter: str


def _header(source: Path, encoding: str) -> _Header:
    """The column names and delimiter of a CSV file, from its first line."""
    text_encoding = "utf-8-sig" if encoding == "utf-8" else encoding  # no BOM in the names
    try:
        with open(source, encoding=text_encoding, newline="") as handle:
            line = handle.readline(1 << 20)
    except UnicodeDecodeError:
        raise DataError(source.name, f"cannot be decoded as {encoding}", line=1) from None
    if not line.strip():
        raise DataError(source.name, "has no header line", line=1)
    delimiter = max(DELIMITERS, key=line.count)
    names = next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter))
    if len(set(names)) != len(names):
        raise DataError(source.name, "has duplicate column names", line=1)
    return _Header(names=names, delimiter=delimiter)


def _rechunk(
    source: str,
    batches: Iterator[pa.RecordBatch] | pa_csv.CSVStreamingReader,
    chunk_rows: int,
) -> Iterator[Chunk]:
    """Regroup record batches into chunks of exactly `chunk_rows` rows (the last: the rest)."""
    pending: list[pa.RecordBatch] = []
    held = index = 0
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            break
        except pa.ArrowException as exc:
            raise DataError(source, f"cannot be read: {exc}") from None
        pending.append(batch)
        held += batch.num_rows
        while held >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield Chunk(index, index * chunk_rows, table.slice(0, chunk_rows))
            rest = table.slice(chunk_rows)
            pending, held = rest.to_batches(), rest.num_rows
            index += 1
    if held:
        yield Chunk(index, index * chunk_rows, pa.Table.from_batches(pending))


def too_many_bad_rows(
    filename: str, bad: int, rows: int, share: float, first: RowError | None, *, so_far: bool
) -> str:
    """Why a file with more than `share` of its rows unreadable fails (`so_far`: `rows` are
    the rows read before it stopped, not the whole file's)."""
    counted = f"the first {rows:,}" if so_far else f"{rows:,}"
    where = "" if first is None else f"; the first, row {first.row}: {first.message}"
    return f"{filename}: {bad:,} of {counted} rows cannot be read (more than {share:.0%}){where}"


def data_row(skipped: list[RowError], parsed: int) -> int:
    """The 1-based data row number of the `parsed`-th (0-based) row the parser kept, given
    the rows it skipped so far (all of those before it: parsing is sequential)."""
    row = parsed + 1
    for skipped_row in sorted(e.row for e in skipped):
        if skipped_row <= row:
            row += 1
    return row


# -- scoring ------------------------------------------------------------------------------------


class BatchScorer:
    """Scores chunks with one predictor: the serving code path, without HTTP."""

    def __init__(self, predictor: Predictor, options: ScoreOptions, input_names: list[str]):
        self.predictor = predictor
        self.options = options
        if options.id_column is not None and options.id_column not in input_names:
            raise PermanentError(f"id column {options.id_column!r} is not in the file")
        if not set(predictor.input_columns) & set(input_names):
            raise PermanentError(
                "the file has none of the model's input columns "
                f"({', '.join(predictor.input_columns[:5])}...): nothing to score"
            )
        self.missing = [c for c in predictor.input_columns if c not in set(input_names)]
        self.kept = [options.id_column] if options.id_column is not None else list(input_names)
        self.output_names = _unique(
            _prediction_names(predictor) + _explanation_names(predictor, options.explain),
            set(self.kept),
        )
        self.numeric = {c.name for c in predictor.transform.columns if c.kind is ColumnKind.numeric}
        self._labels = texts([str(label) for label in predictor.labels])

    def score(self, chunk: Chunk, skipped: list[RowError]) -> ScoredChunk:
        """Predictions for the readable rows of a chunk, and the rows it could not read
        (`skipped`: the rows the parser left out so far, to number the rows of the file).
        PermanentError when the chunk's columns cannot be read at all (their types)."""
        try:
            return self._score(chunk, skipped)
        except (pl.exceptions.PolarsError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            # A type or value the columns' reading did not foresee: the same on every retry.
            raise PermanentError(
                f"rows {chunk.first_row + 1:,} to {chunk.first_row + chunk.table.num_rows:,} "
                f"cannot be scored: {type(exc).__name__}: {exc}"
            ) from exc

    def _score(self, chunk: Chunk, skipped: list[RowError]) -> ScoredChunk:
        table = chunk.table
        present = [c for c in self.predictor.input_columns if c in table.column_names]
        raw = pl.from_arrow(table.select(present))
        assert isinstance(raw, pl.DataFrame)
        _check_single_values(raw)
        errors: list[RowError] = []
        keep = np.ones(table.num_rows, dtype=bool)
        try:
            predictions, explained = self._predict(_typed(raw, self.numeric))
        except InvalidValueError:
            # Null tokens ("NA", "?"...) read as missing, as in training; then what still
            # fails is a bad value: found row by row.
            frame = _with_nulls(raw)
            bad = _unreadable(self.predictor, frame, 0)
            errors = [
                RowError(data_row(skipped, chunk.first_row + r), column, message)
                for r, column, message in bad
            ]
            keep[[r for r, _, _ in bad]] = False
            predictions, explained = self._predict(frame.filter(pl.Series(keep)))
        rows = numbers(np.flatnonzero(keep).astype(np.int64))
        columns = [rows, *self._columns(predictions), *explained]
        table = pa.Table.from_arrays(columns, names=[ROW_COLUMN, *self.output_names])
        return ScoredChunk(index=chunk.index, predictions=table, errors=errors)

    def output(self, chunk: Chunk, predictions: pa.Table) -> pa.Table:
        """The output rows of a chunk: its kept input columns of the rows `predictions`
        answers (by `ROW_COLUMN`), then the prediction columns."""
        out = chunk.table.select(self.kept)
        if predictions.num_rows != out.num_rows:  # else every row, in order: no copy
            out = out.take(predictions.column(ROW_COLUMN))
        for name in self.output_names:
            out = out.append_column(name, predictions.column(name))
        return out

    def _predict(self, frame: pl.DataFrame) -> tuple[Predictions, list[pa.Array]]:
        """A frame's predictions and, when asked, its explanation columns (encoded once for
        both: `explain_frame` predicts from the features it explains)."""
        if self.options.explain is None:
            return self.predictor.predict(frame), []
        explained = self.predictor.explain_frame(frame, self.options.explain)
        predictions = explained.predictions
        # One explanation per row: the only output, or (multiclass) the predicted class's.
        if predictions.task is Task.multiclass:
            assert predictions.label_index is not None
            output = predictions.label_index
        else:
            output = np.zeros(frame.height, dtype=np.intp)
        table = chosen_output_table(explained.explanation, output)
        return predictions, table.columns

    def _columns(self, predictions: Predictions) -> list[pa.Array]:
        labels = self.predictor.labels
        if predictions.task is Task.regression:
            assert predictions.values is not None
            return [numbers(predictions.values.astype(np.float64, copy=False))]
        assert predictions.proba is not None and predictions.label_index is not None
        chosen = self._labels.take(numbers(predictions.label_index.astype(np.int64, copy=False)))
        return [chosen] + [numbers(predictions.proba[:, k]) for k in range(len(labels))]


def numbers(values: np.ndarray) -> pa.Array:
    """A numeric vector as an Arrow array, sharing its memory when it is contiguous.

    Not `pa.array`: given a numpy array, it imports pandas to inspect it, a third of a second
    that `automlops predict` would pay for nothing."""
    values = np.ascontiguousarray(values)
    kind = pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(values)])


def texts(values: list[str]) -> pa.Array:
    """Strings as an Arrow array (built from its buffers, for the reason `numbers` gives)."""
    encoded = [value.encode() for value in values]
    offsets = np.cumsum([0, *map(len, encoded)], dtype=np.int32)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.string(), len(values), buffers)


def _prediction_names(predictor: Predictor) -> list[str]:
    """`prediction` (label or value), then `probability_<label>` per class."""
    names = ["prediction"]
    if predictor.metadata.task is not Task.regression:
        names += [f"probability_{label}" for label in predictor.labels]
    return names


def _explanation_names(predictor: Predictor, k: int | None) -> list[str]:
    """`base`, then `column_i`, `contribution_i` for the top K (K at most the column count;
    none without `explain`), as `chosen_output_table` names them."""
    if k is None:
        return []
    names = ["base"]
    for i in range(1, min(k, len(predictor.grouping.columns)) + 1):
        names += [f"column_{i}", f"contribution_{i}"]
    return names


def _unique(names: list[str], taken: set[str]) -> list[str]:
    """`names`, each made unique among `taken` and the ones before it by trailing `_`s."""
    unique = []
    for name in names:
        while name in taken:
            name += "_"
        taken.add(name)
        unique.append(name)
    return unique


def _check_single_values(frame: pl.DataFrame) -> None:
    """PermanentError for a model column of a type no model column takes (a Parquet file's
    lists, structs, bytes, durations or times of day): none of its rows can be read, so
    retrying would not help."""
    for name, dtype in frame.schema.items():
        if dtype.is_nested() or isinstance(dtype, pl.Duration | pl.Time | pl.Binary | pl.Object):
            raise PermanentError(
                f"column {name!r} holds {dtype} values; a model column holds one number, text "
                "or date per row"
            )


_NULLS = pl.Series(NULL_VALUES)


def _typed(frame: pl.DataFrame, numeric: set[str]) -> pl.DataFrame:
    """Numeric columns read as text cast to numbers where every present value is a plain
    number (the common case, and the encoder's fast path); any other column as it was, for
    the encoder to read (and refuse) exactly as serving does."""
    casts = []
    for name, dtype in frame.schema.items():
        if name in numeric and dtype == pl.String:
            text = frame.get_column(name)
            number = text.cast(pl.Float64, strict=False)
            if number.null_count() == text.null_count():
                casts.append(number)
    return frame.with_columns(casts) if casts else frame


def _with_nulls(frame: pl.DataFrame) -> pl.DataFrame:
    """Text cells stripped and null tokens made null, as the upload's CSV reader does."""
    text = [c for c, t in frame.schema.items() if t == pl.String]
    if not text:
        return frame
    return frame.with_columns(
        pl.when(pl.col(c).str.strip_chars().is_in(_NULLS.implode()))
        .then(None)
        .otherwise(pl.col(c).str.strip_chars())
        .alias(c)
        for c in text
    )


def _unreadable(
    predictor: Predictor, frame: pl.DataFrame, offset: int
) -> list[tuple[int, str, str]]:
    """(row, column, message) of every row the transform cannot encode, found by halving the
    rows around each failure (a clean chunk costs one encoding, as it would anyway)."""
    try:
        predictor.encoder.encode_frame(frame)
    except InvalidValueError as exc:
        if frame.height == 1:
            message = str(exc).split(": ", 1)[-1]
            return [(offset, exc.column, message)]
        half = frame.height // 2
        return _unreadable(predictor, frame.slice(0, half), offset) + _unreadable(
            predictor, frame.slice(half), offset + half
        )
    return []


# -- writing ------------------------------------------------------------------------------------


def predictions_bytes(predictions: pa.Table) -> bytes:
    """A chunk's predictions as a stored part (Parquet: exact and small). Only text columns
    are dictionary-encoded: probabilities rarely repeat, and a dictionary of them costs four
    times the time of the plain encoding and more space."""
    sink = io.BytesIO()
    text = [field.name for field in predictions.schema if pa.types.is_string(field.type)]
    pq.write_table(predictions, sink, use_dictionary=text)
    return sink.getvalue()


def predictions_of(part: bytes) -> pa.Table:
    """The predictions a stored part holds."""
    return pq.read_table(pa.BufferReader(part))


def errors_bytes(errors: list[RowError]) -> bytes:
    """Row errors as CSV: row, column, message."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["row", "column", "message"])
    writer.writerows((e.row, e.column, e.message) for e in errors)
    return text.getvalue().encode()


def table_bytes(table: pa.Table, fmt: OutputFormat) -> bytes:
    """One chunk's output whole, in the input's format (CSV with its header line): what a
    Batch Transform mini-batch answers."""
    sink = io.BytesIO()
    if fmt.kind is TableFormat.parquet:
        pq.write_table(table, sink)
    else:
        options = pa_csv.WriteOptions(quoting_style="needed", delimiter=fmt.delimiter)
        pa_csv.write_csv(table, sink, options)
    return sink.getvalue()


class JoinedOutput:
    """The output file, built from the chunks' outputs in order: CSV bodies after one header
    line; Parquet tables as row groups of one file.

    `encode` (any thread: chunks are encoded side by side) turns a chunk's output table into
    what `add` (one thread, chunk order) appends: CSV text without its header, or for Parquet
    the table itself (the writer compresses it as it goes). Memory stays that of a few chunks.
    """

    def __init__(self, out: BinaryIO, fmt: OutputFormat, names: list[str]) -> None:
        """Write to `out` (an object store's `writer`): the header now, the rest by `add`."""
        self.fmt = fmt
        self._csv = pa_csv.WriteOptions(
            quoting_style="needed", delimiter=fmt.delimiter, include_header=False
        )
        self._out = out
        self._parquet: pq.ParquetWriter | None = None
        if fmt.kind is TableFormat.csv:
            header = pa.Table.from_arrays([pa.nulls(0, pa.string()) for _ in names], names=names)
            options = pa_csv.WriteOptions(quoting_style="needed", delimiter=fmt.delimiter)
            pa_csv.write_csv(header, self._out, options)

    def encode(self, table: pa.Table) -> pa.Buffer | pa.Table:
        """A chunk's output rows as `add` takes them."""
        if self.fmt.kind is TableFormat.parquet:
            return table
        sink = pa.BufferOutputStream()
        pa_csv.write_csv(table, sink, self._csv)
        return sink.getvalue()

    def add(self, part: pa.Buffer | pa.Table) -> None:
        """Append one chunk's encoded output (the next in order)."""
        if isinstance(part, pa.Buffer):
            self._out.write(part)  # its memory, without a copy to bytes
            return
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._out, part.schema)
        self._parquet.write_table(part)

    def finish(self) -> None:
        """Complete the file (a Parquet file's footer); `out` stays open, its owner's."""
        if self._parquet is not None:
            self._parquet.close()
