"""Batch scoring: a file dropped under score/<dataset>/ is scored by a model version.

The version is the one the file's options name (the sidecar `score/<dataset>/<file>.json`,
written before the file), else the dataset's champion. The run is named after the file's
content (ETag and size), the version and the options, so a redelivered event, or the same
bytes dropped again, is the same run and writes nothing twice.

Each chunk of rows is written as a part (its errors first, then its predictions: the part
is the chunk's commit), so a run that crashed goes on from the first chunk not written.
The parts are then joined into `predictions/<dataset>/<run>/<file>`, the row errors into
`errors.csv`, and `lineage.json` (input hash -> model version -> output) is written last:
its presence means the run is complete.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from pydantic import ValidationError

from automlops import keys
from automlops.errors import NotFoundError, PermanentError
from automlops.events import S3EventRecord
from automlops.ml.batch import (
    BatchScorer,
    Chunk,
    JoinedOutput,
    RowError,
    ScoreLineage,
    ScoreOptions,
    TableFormat,
    TableReader,
    errors_bytes,
    open_table,
    predictions_bytes,
    predictions_of,
    progress_text,
    read_ahead,
    score_run_id,
    scoring_version,
    too_many_bad_rows,
)
from automlops.ml.predictor import Predictor
from automlops.ports import ObjectStore, Ports
from automlops.registry import ModelVersion, Registry
from automlops.stages.result import StageResult


@dataclass(frozen=True)
class ScoreJob:
    """What an event asks for: which file, scored by which version, how."""

    run: keys.RunRef
    source: keys.SourceRef
    fmt: TableFormat
    options: ScoreOptions
    version: ModelVersion


def read_options(store: ObjectStore, bucket: str, source: keys.SourceRef) -> ScoreOptions:
    """The options sidecar of a file to score (defaults when there is none)."""
    try:
        data = store.get(bucket, keys.score_options_key(source.dataset, source.filename))
    except NotFoundError:
        return ScoreOptions()
    try:
        return ScoreOptions.model_validate_json(data)
    except ValidationError as exc:
        raise PermanentError(f"{source.filename}.json: invalid scoring options: {exc}") from None


def plan(record: S3EventRecord, ports: Ports) -> ScoreJob:
    """Read the small documents an event needs (options, registry) and name its run."""
    source = keys.parse_score_key(record.key)
    fmt = TableFormat.of(source.filename)
    options = read_options(ports.store, record.bucket, source)
    registry = Registry(ports.store, ports.settings.buckets.model_output)
    version = scoring_version(registry, source.dataset, options.version)
    etag, size = record.s3.object.e_tag, record.s3.object.size
    if not etag:  # a hand-made event: ask the store
        info = ports.store.head(record.bucket, record.key)
        if info is None:
            raise PermanentError(f"{record.key}: no such file to score")
        etag, size = info.etag, info.size
    run_id = score_run_id(source.dataset, etag, size, version.version, options)
    return ScoreJob(keys.RunRef(source.dataset, run_id), source, fmt, options, version)


def identify(record: S3EventRecord, ports: Ports) -> keys.RunRef:
    """The scoring run an event belongs to (see `plan`)."""
    return plan(record, ports).run


def score(record: S3EventRecord, ports: Ports) -> StageResult:
    """Score the file an event announces; a run already complete is reported, not redone."""
    job = plan(record, ports)
    bucket = ports.settings.buckets.model_output
    run = job.run
    lineage_key = keys.prediction_lineage_key(run.dataset, run.run_id)
    if ports.store.head(bucket, lineage_key) is not None:
        done = ScoreLineage.model_validate_json(ports.store.get(bucket, lineage_key))
        return _result(job, done, duplicate=True)
    artifact = ports.store.get(job.version.artifact_bucket, job.version.artifact_key)
    threads = model_threads(job.options)
    predictors = [
        Predictor.from_bytes(artifact, job.version.artifact_key, nthread=threads)
        for _ in range(scoring_threads(job.options))
    ]
    output_key = keys.predictions_key(run.dataset, run.run_id, job.source.filename)
    with (
        _input_file(ports.store, record) as path,
        ThreadPoolExecutor(2, thread_name_prefix="automlops-score-aside") as aside,
    ):
        digest = aside.submit(_sha256, path)  # beside the scoring, which reads the file too
        if job.options.explain is not None:
            # Beside the first reads; a failure here fails the first chunk's explanation too.
            aside.submit(predictors[0].prepare_explanations)
        reader = open_table(path, job.fmt)
        scorers = [BatchScorer(p, job.options, reader.names) for p in predictors]
        names = scorers[0].kept + scorers[0].output_names
        # The joined output is stored as it is written: stored whole when every chunk is in,
        # not at all when the run fails.
        with ports.store.writer(bucket, output_key) as out:
            joined = JoinedOutput(out, reader.format, names)
            tally = _write_parts(job, scorers, reader, joined, ports)
            joined.finish()
        tally.missing_columns = scorers[0].missing
        lineage = _commit(job, record, digest.result(), tally, output_key, ports)
    return _result(job, lineage, duplicate=False)


def model_threads(options: ScoreOptions) -> int:
    """The model's threads in batch: every core for exact TreeSHAP (`explain`), which costs
    a few to a few dozen predictions a row (docs/benchmarks-explain.md); one for plain
    predictions, which are cheaper than reading and writing the rows (those run on threads of
    their own beside the model, and a second OpenMP thread on a busy machine only waits for a
    core)."""
    return (os.cpu_count() or 1) if options.explain is not None else 1


# Each scoring thread holds a chunk or two and a predictor: the cap bounds memory on big hosts.
MAX_SCORING_THREADS = 4


def scoring_threads(options: ScoreOptions) -> int:
    """Chunks scored side by side, each on a thread with a predictor of its own: one per core
    (at most MAX_SCORING_THREADS) for plain predictions (encoding and the model release the
    GIL, so two chunks use two cores); one for `explain`, whose model takes every core."""
    if options.explain is not None:
        return 1
    return min(os.cpu_count() or 1, MAX_SCORING_THREADS)


@dataclass
class _Tally:
    """What the chunks of a run added up to."""

    rows: int = 0  # rows parsed
    scored: int = 0
    errors: list[RowError] = field(default_factory=list)  # unreadable values
    skipped: list[RowError] = field(default_factory=list)  # unparseable lines
    missing_columns: list[str] = field(default_factory=list)  # the model's, not in the file


def _write_parts(
    job: ScoreJob,
    scorers: list[BatchScorer],
    reader: TableReader,
    joined: JoinedOutput,
    ports: Ports,
) -> _Tally:
    """Score every chunk not written yet and write it as a part, and every chunk's output to
    `joined` (in order); count all of them.

    The next chunk is read on a thread of its own; chunks are scored and their outputs
    encoded side by side, one per scorer (Arrow, polars and the boosters release the GIL);
    this thread commits them in order. At most one chunk per scorer, one more waiting and
    one read ahead are held: memory stays that of a few chunks, whatever the file's size.
    """
    store, bucket, run = ports.store, ports.settings.buckets.model_output, job.run
    written = set(store.list(bucket, keys.predictions_prefix(run.dataset, run.run_id)))
    idle = list(scorers)
    mine = threading.local()

    def take_scorer() -> None:
        mine.scorer = idle.pop()

    def prepare(chunk: Chunk) -> _Prepared:
        scorer: BatchScorer = mine.scorer
        part, errors_part = _part_keys(job, chunk.index)
        if part in written:  # done before a crash: joined from its stored predictions
            errors = _read_errors(store, bucket, errors_part) if errors_part in written else []
            predictions = predictions_of(store.get(bucket, part))
            output = joined.encode(scorer.output(chunk, predictions))
            return _Prepared(chunk.index, chunk.table.num_rows, errors, None, output)
        scored = scorer.score(chunk, reader.skipped)
        output = joined.encode(scorer.output(chunk, scored.predictions))
        stored = predictions_bytes(scored.predictions)
        return _Prepared(chunk.index, chunk.table.num_rows, scored.errors, stored, output)

    tally = _Tally(skipped=reader.skipped)
    pending: deque[Future[_Prepared]] = deque()
    pool = ThreadPoolExecutor(
        len(scorers), thread_name_prefix="automlops-score", initializer=take_scorer
    )
    try:
        for chunk in read_ahead(reader.chunks):
            pending.append(pool.submit(prepare, chunk))
            if len(pending) > len(scorers):
                _commit_part(job, pending.popleft().result(), joined, tally, reader, ports)
        while pending:
            _commit_part(job, pending.popleft().result(), joined, tally, reader, ports)
    finally:
        pool.shutdown(cancel_futures=True)
    _check_bad_share(job, tally)
    if tally.rows == 0 and not tally.skipped:
        raise PermanentError(f"{job.source.filename}: has no data rows to score")
    return tally


@dataclass(frozen=True)
class _Prepared:
    """A chunk scored and encoded: what committing it writes."""

    index: int
    rows: int  # rows parsed
    errors: list[RowError]
    stored: bytes | None  # its predictions as a part (None: stored before a crash)
    output: pa.Buffer | pa.Table  # its output rows, encoded for the joined file


def _part_keys(job: ScoreJob, index: int) -> tuple[str, str]:
    """A chunk's part (its predictions) and its errors part."""
    run = job.run
    return (
        keys.prediction_part_key(run.dataset, run.run_id, index, "parquet"),
        keys.prediction_part_key(run.dataset, run.run_id, index, "errors.csv"),
    )


def _commit_part(
    job: ScoreJob,
    prepared: _Prepared,
    joined: JoinedOutput,
    tally: _Tally,
    reader: TableReader,
    ports: Ports,
) -> None:
    """A chunk's errors, then its predictions (the part's presence commits the chunk), then
    its output rows to the joined file; then count it. Parts hold predictions only: a resumed
    run joins them to the input rows it reads again, so the input's columns are never stored
    twice."""
    store, bucket = ports.store, ports.settings.buckets.model_output
    part, errors_part = _part_keys(job, prepared.index)
    if prepared.stored is not None:
        if prepared.errors:
            store.put(bucket, errors_part, errors_bytes(prepared.errors))
        store.put(bucket, part, prepared.stored)
    joined.add(prepared.output)
    tally.rows += prepared.rows
    tally.scored += prepared.rows - len(prepared.errors)
    tally.errors.extend(prepared.errors)
    _check_bad_share(job, tally)
    ports.progress(progress_text(tally.rows + len(tally.skipped), reader.estimated_rows))


def _check_bad_share(job: ScoreJob, tally: _Tally) -> None:
    bad = len(tally.errors) + len(tally.skipped)
    total = tally.rows + len(tally.skipped)
    if bad and bad > job.options.max_bad_share * total:
        first = min(tally.errors + tally.skipped, key=lambda e: e.row)
        share, name = job.options.max_bad_share, job.source.filename
        raise PermanentError(too_many_bad_rows(name, bad, total, share, first, so_far=True))


def _read_errors(store: ObjectStore, bucket: str, key: str) -> list[RowError]:
    lines = store.get(bucket, key).decode().splitlines()[1:]
    return [RowError(int(row), column, message) for row, column, message in csv.reader(lines)]


def _commit(
    job: ScoreJob, record: S3EventRecord, digest: str, tally: _Tally, output_key: str, ports: Ports
) -> ScoreLineage:
    """After the joined output (stored): the errors, then the lineage (last)."""
    store, bucket, run = ports.store, ports.settings.buckets.model_output, job.run
    errors = sorted(tally.errors + tally.skipped, key=lambda e: e.row)
    errors_key = keys.prediction_errors_key(run.dataset, run.run_id)
    store.put(bucket, errors_key, errors_bytes(errors))
    lineage = ScoreLineage(
        dataset=run.dataset,
        run_id=run.run_id,
        input_bucket=record.bucket,
        input_key=record.key,
        input_sha256=digest,
        input_rows=tally.rows + len(tally.skipped),
        model_version=job.version.version,
        model_run_id=job.version.run_id,
        model_artifact_key=job.version.artifact_key,
        options=job.options,
        output_bucket=bucket,
        output_key=output_key,
        output_rows=tally.scored,
        errors_key=errors_key,
        error_rows=len(errors),
        scored_at=ports.clock().isoformat(),
        missing_columns=tally.missing_columns,
    )
    lineage_key = keys.prediction_lineage_key(run.dataset, run.run_id)
    store.put(bucket, lineage_key, json.dumps(lineage.model_dump(mode="json"), indent=2).encode())
    return lineage


def _result(job: ScoreJob, lineage: ScoreLineage, *, duplicate: bool) -> StageResult:
    note = (
        f"scored {lineage.output_rows:,} rows ({lineage.error_rows:,} unreadable) with version "
        f"{lineage.model_version}: {lineage.output_bucket}/{lineage.output_key}"
    )
    if lineage.missing_columns:
        note += f"; not in the file, scored as missing: {', '.join(lineage.missing_columns)}"
    return StageResult(
        run=job.run,
        outputs=[lineage.output_key, lineage.errors_key],
        duplicate=duplicate,
        model_version=lineage.model_version,
        final=True,
        note=note,
    )


@contextmanager
def _input_file(store: ObjectStore, record: S3EventRecord) -> Iterator[Path]:
    """The file to score as a local file: the store's own where it keeps files, else a copy
    (S3: the file is downloaded; it must fit the function's disk)."""
    local = store.local_file(record.bucket, record.key)
    if local is not None:
        yield local
        return
    try:
        data = store.get(record.bucket, record.key)
    except NotFoundError:
        raise PermanentError(f"{record.key}: the file to score is gone") from None
    with tempfile.TemporaryDirectory(prefix="automlops-score-") as scratch:
        path = Path(scratch) / Path(record.key).name
        path.write_bytes(data)
        del data
        yield path


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
