"""Stage 1: an uploaded CSV becomes seeded splits, a fitted transform and a schema."""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from automlops import keys
from automlops.config import Manifest, Task
from automlops.errors import DataError, NotFoundError, PermanentError
from automlops.events import S3EventRecord
from automlops.manifests import load_manifest
from automlops.ml.columns.plan import fit_columns
from automlops.ml.columns.target import TargetSpec, default_target, fit_target, merged_note
from automlops.ml.columns.transform import FLOAT32_MAX
from automlops.ml.columns.values import frame_decimal, parse_numeric
from automlops.ml.splits import split_indices
from automlops.ports import Ports
from automlops.stages.drift_check import check_drift
from automlops.stages.result import StageResult
from automlops.tabular.csv_reader import file_decimal, read_csv_file
from automlops.tabular.schema import DatasetSchema, SplitRows
from automlops.tabular.spelling import detect_spelling

MIN_ROWS = 20
PROCESSED_TAG = "automlops-processed-run"
# Rows per Parquet row group when a split is written (drift_check samples a split by group).
_WRITE_CHUNK_ROWS = 256 * 1024
_SPLIT = "\x00split"  # a helper column's name no CSV header can hold (NUL is refused)


def run_identity(dataset: str, etag: str, size: int, manifest: Manifest) -> str:
    """A run is named after what it processes: the dataset, the content (as the store's ETag
    and size of the upload tell it; see `identify`) and the manifest."""
    # Options left at their defaults are not hashed: a field added to the manifest later leaves
    # the runs of earlier uploads their names (a re-sent upload stays a duplicate).
    options = manifest.model_dump_json(exclude_defaults=True)
    material = f"{dataset}\0etag:{_bare(etag)}:{size}\0{options}"
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def identify(record: S3EventRecord, ports: Ports) -> keys.RunRef:
    """Name the run of an upload without reading it: from the ETag and size of the object the
    notification announces, the dataset its key names and the dataset's stored manifest.

    Why the ETag: it is what the store says about the content, and it comes with the event, so
    naming a run costs one small manifest read however big the upload (hashing the upload
    meant reading it once to name the run and again to process it; on S3, downloading it
    twice). Idempotency holds: the same bytes uploaded again, under the same or another name,
    have the same ETag, so with the same manifest they name the same run and are recorded as
    a duplicate of it; changed bytes or a changed manifest name a new run.

    What the ETag is differs by store, and the rule is chosen to be safe for each: the local
    store's ETag is the MD5 of the bytes; an S3 single-part upload's is the MD5 too (unless it
    is encrypted with SSE-KMS, when it is an opaque value unique to the upload); a multipart
    upload's is an MD5 of the parts' MD5s with a part count, so the same bytes sent with
    another part size have another ETag. Every way the ETag can differ for equal bytes only
    costs a redundant run of the same content (work done twice, nothing wrong); equal ETags
    for different bytes would take a new upload for a duplicate, and that needs an MD5
    collision crafted on purpose by whoever controls the uploads. The size is mixed in as
    well. The object version and the key are left out on purpose: they change for an upload
    of the same bytes, which must stay a duplicate.

    The name is only true for the bytes the event announced: `preprocess` checks that the
    object it reads still has that ETag (see `_open_upload`). An upload through automlops has
    a key of its own (`keys.source_key`), so it is never replaced before its run; the check
    guards the files people put into a dataset's folder themselves, at keys they reuse.
    """
    return _named(record, ports)[0]


def _named(record: S3EventRecord, ports: Ports) -> tuple[keys.RunRef, Manifest]:
    """The run of an upload (see `identify`) and the manifest it was named with."""
    source = keys.parse_source_key(record.key)
    manifest = load_manifest(ports.store, ports.settings.buckets.data, source.dataset)
    run_id = run_identity(source.dataset, *_content_tag(record, ports), manifest)
    return keys.RunRef(source.dataset, run_id), manifest


def _content_tag(record: S3EventRecord, ports: Ports) -> tuple[str, int]:
    """ETag and size of the announced object; a HEAD asks for them when the event lacks the
    ETag (hand-made events)."""
    etag, size = _bare(record.s3.object.e_tag), record.s3.object.size
    if not etag:
        info = ports.store.head(record.bucket, record.key)
        if info is None:
            raise NotFoundError(f"no such object: {record.bucket}/{record.key}")
        etag, size = info.etag, info.size
    return etag, size


def _bare(etag: str) -> str:
    return etag.strip().strip('"')


def _open_upload(
    record: S3EventRecord, ports: Ports, pool: Executor
) -> tuple[Path | bytes, Future[str]]:
    """The upload, as a local file where the store keeps one (read in pieces, never whole
    into memory) else as its bytes, and its SHA-256 (the lineage records it) being computed
    on `pool`, so that it overlaps the reading (hashlib releases the GIL).

    Refuses an oversized upload by its size before reading it, and an object replaced since
    its notification (another ETag: at once from the store's HEAD, or, where the store hashes
    a local file for its ETag, from the digest's future, beside the reading): this run was
    named after the announced bytes, and the replacement's own notification starts the run of
    the new bytes. Only a file a person put at a key they reused can be replaced so (automlops
    gives each upload its own key): the replaced bytes were theirs to overwrite, and the failed
    run says what happened. Nothing is written before the digest is known (`_read_upload`).
    """
    store, limit = ports.store, ports.settings.max_upload_bytes
    local = store.local_file(record.bucket, record.key)
    head = None if local is not None else store.head(record.bucket, record.key)
    if local is not None:
        size = local.stat().st_size
    elif head is not None:
        size = head.size
    else:
        raise NotFoundError(f"no such object: {record.bucket}/{record.key}")
    if size > limit:
        raise DataError(
            record.key,
            f"is {size:,} bytes; uploads over {limit:,} bytes are refused (max_upload_bytes)",
        )
    announced = _bare(record.s3.object.e_tag)

    def check_etag() -> None:
        if not announced:
            return
        # Locally a HEAD hashes the file (its ETag is the MD5): only now, past the size check.
        info = head or store.head(record.bucket, record.key)
        current = "" if info is None else _bare(info.etag)
        if current != announced:
            raise PermanentError(
                f"{record.key} was replaced after this notification (ETag {announced} is "
                f"now {current or 'gone'}); the new upload's own notification processes it"
            )

    if local is None:
        check_etag()  # from the HEAD already made: nothing to hash, nothing downloaded yet
        data = store.get(record.bucket, record.key)
        return data, pool.submit(lambda: hashlib.sha256(data).hexdigest())

    def checked_digest() -> str:
        check_etag()
        with open(local, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()

    return local, pool.submit(checked_digest)


def _read_upload(
    record: S3EventRecord, ports: Ports
) -> tuple[pl.DataFrame, str, Literal[".", ","]]:
    """The upload read typed (text as Categorical: the same values in a fraction of the memory
    of strings), its SHA-256, checked to be the announced object (`_open_upload`), and its
    decimal mark. The hashing runs beside the parsing; a replaced object is reported before
    any complaint about its content, which was not this run's."""
    source = record.key
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload-digest") as pool:
        data, digest = _open_upload(record, ports, pool)
        try:
            frame = read_csv_file(data, source, text_as_categorical=True)
            # Judged with the delimiter in view (`93,994` in a `;` file is a decimal comma);
            # the frame alone cannot tell.
            decimal = file_decimal(data, source) or frame_decimal(frame)
        except Exception:
            replaced = digest.exception()
            if isinstance(replaced, PermanentError):
                raise replaced from None
            raise
        return frame, digest.result(), decimal


@dataclass(frozen=True)
class UsableRows:
    """An upload's rows that have a target value, without the columns the manifest drops."""

    frame: pl.DataFrame
    target_name: str
    sha256: str  # of the upload, for the lineage
    total: int  # rows in the upload
    missing_target: int  # rows left out for want of a target value
    notes: list[str]
    decimal: Literal[".", ","]  # the file's decimal mark, as the reader judged it


def preprocess(record: S3EventRecord, ports: Ports) -> StageResult:
    """Read, profile, split and fit the preprocessing of an uploaded CSV."""
    run, manifest = _named(record, ports)
    store, buckets = ports.store, ports.settings.buckets
    schema_key = keys.schema_key(run.dataset, run.run_id)
    if store.head(buckets.automl_data, schema_key) is not None:
        return StageResult(run=run, duplicate=True, note="already preprocessed")
    usable = _read_usable_rows(record, ports, manifest)
    frame, source = usable.frame, record.key
    target, y = _fit_target(usable, manifest, source)
    strata = None if target.task is Task.regression else y
    splits = split_indices(frame.height, manifest.split, seed=manifest.seed, strata=strata)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="split-encoder") as pool:
        # The splits are encoded beside the column decisions (polars releases the GIL), and
        # stored only once those and the drift check have passed.
        encoded = pool.submit(_encode_splits, frame, splits)
        # Fitted column by column on the training rows, without a copy of the training frame;
        # row identifiers are judged on every row (a row number is only one in file order).
        plan = fit_columns(
            frame,
            target,
            rows=splits[0],
            y=y[splits[0]],
            keep=manifest.keep,
            decimal=usable.decimal,
        )
        transform, profiles = plan.transform, plan.profiles
        merged = merged_note(target)
        notes = usable.notes + ([merged] if merged else []) + plan.notes
        # Before anything is written for training: under `drift: block` a drifted upload
        # stops here.
        notes += check_drift(ports, run, frame, usable.target_name, manifest, source)
        split_keys = _store_splits(ports, run, encoded.result())
    transform_key = keys.transform_key(run.dataset, run.run_id)
    store.put(buckets.automl_data, transform_key, transform.model_dump_json(indent=1).encode())

    train_idx, valid_idx, test_idx = splits
    schema = DatasetSchema(
        dataset=run.dataset,
        run_id=run.run_id,
        source_bucket=record.bucket,
        source_key=source,
        source_sha256=usable.sha256,
        created_at=ports.clock().isoformat(),
        manifest=manifest,
        target=target,
        columns=profiles,
        rows=SplitRows(
            total=usable.total,
            train=len(train_idx),
            validation=len(valid_idx),
            test=len(test_idx),
            dropped_missing_target=usable.missing_target,
        ),
        split_keys=split_keys,
        transform_key=transform_key,
        notes=notes,
    )
    # Written last: its ObjectCreated is what starts training.
    store.put(buckets.automl_data, schema_key, schema.model_dump_json(indent=1).encode())
    store.put_tags(record.bucket, record.key, {PROCESSED_TAG: run.run_id})
    return StageResult(run=run, outputs=[*split_keys.values(), transform_key, schema_key])


def _read_usable_rows(record: S3EventRecord, ports: Ports, manifest: Manifest) -> UsableRows:
    """Read the upload; keep the rows with a target value and the columns not dropped.

    DataError when the target is missing or dropped, or too few rows are left.
    """
    source = record.key
    frame, sha256, decimal = _read_upload(record, ports)
    _check_magnitudes(frame, source, decimal)
    notes: list[str] = []

    target_name = manifest.target or default_target(frame.columns)
    if target_name not in frame.columns:
        raise DataError(
            source, f"target column {target_name!r} not found; columns: {frame.columns}"
        )
    for name in manifest.drop:
        if name == target_name:
            raise DataError(source, f"cannot drop the target column {name!r}")
        if name not in frame.columns:
            notes.append(f"column {name!r} to drop is not in the file")
    frame = frame.drop([c for c in manifest.drop if c in frame.columns])

    total = frame.height
    missing_target = frame.get_column(target_name).null_count()
    if missing_target:  # filtering copies every column: only when there is something to drop
        frame = frame.filter(pl.col(target_name).is_not_null())
        notes.append(f"{missing_target} rows without a target value were left out")
    if frame.height < MIN_ROWS:
        raise DataError(source, f"{frame.height} usable rows; at least {MIN_ROWS} are needed")
    return UsableRows(frame, target_name, sha256, total, missing_target, notes, decimal)


def _fit_target(
    usable: UsableRows, manifest: Manifest, source: str
) -> tuple[TargetSpec, np.ndarray]:
    """The target's task and labels, and every row's label encoded; DataError when a
    regression target is constant."""
    frame, target_name = usable.frame, usable.target_name
    # Class labels are read from the compact column as they are; a regression target given
    # as text is parsed from strings (in its spelling when written for people: `$1,234`).
    labels = frame.get_column(target_name)
    if labels.dtype == pl.Categorical and manifest.task is Task.regression:
        labels = labels.cast(pl.String)
    target = fit_target(
        labels,
        target_name,
        task=manifest.task,
        positive=manifest.positive,
        source=source,
        decimal=usable.decimal,  # a regression target may be written `1.234,5`
    )
    if target.task is Task.regression and frame.get_column(target_name).n_unique() < 2:
        value = frame.get_column(target_name)[0]
        raise DataError(
            source, f"target is {value!r} on every row; nothing to learn", column=target_name
        )
    return target, target.encode(labels, source)


def _encode_splits(frame: pl.DataFrame, splits: tuple[np.ndarray, ...]) -> list[bytes]:
    """Each split's rows as Parquet bytes, in the order of `keys.SPLITS`.

    Each split is streamed out of the frame by a filter on a column of split numbers (filtering
    reads the rows in order, where gathering them by index jumps about): no split is copied
    whole before it is encoded."""
    part = np.zeros(frame.height, dtype=np.uint8)
    for number, idx in enumerate(splits):
        part[idx] = number
    numbered = frame.with_columns(pl.Series(_SPLIT, part))
    encoded = []
    for number in range(len(keys.SPLITS)):
        rows = numbered.lazy().filter(pl.col(_SPLIT) == number).drop(_SPLIT)
        buffer = io.BytesIO()
        rows.sink_parquet(buffer, compression="snappy", row_group_size=_WRITE_CHUNK_ROWS)
        encoded.append(buffer.getvalue())
    return encoded


def _store_splits(ports: Ports, run: keys.RunRef, encoded: list[bytes]) -> dict[str, str]:
    """Store the encoded splits; returns the key of each split by name."""
    split_keys: dict[str, str] = {}
    for name, data in zip(keys.SPLITS, encoded, strict=True):
        split_keys[name] = keys.split_key(run.dataset, run.run_id, name)
        ports.store.put(ports.settings.buckets.automl_data, split_keys[name], data)
    return split_keys


def _check_magnitudes(frame: pl.DataFrame, source: str, decimal: Literal[".", ","]) -> None:
    """Refuse numbers a model cannot read (inf, 1e309, beyond float32) here, naming the data
    row and column of the upload; later they would fail training on a shuffled split. Numbers
    written for people (`1.234.567,8`, `$1,234`, `12%`) are read in their column's spelling,
    as the columns step will read them (in the file's `decimal` mark)."""
    for name, dtype in frame.schema.items():
        column = frame.get_column(name)
        if dtype.is_float():
            beyond = column.abs() > FLOAT32_MAX  # null and NaN: missing, fine
        elif dtype in (pl.String, pl.Categorical):
            spelled = _spelled_beyond(column, decimal)
            if spelled is None:
                continue
            beyond = spelled
        else:
            continue
        if beyond.any():
            row = int(beyond.arg_true()[0])
            value = column[row]
            raise DataError(
                source,
                f"data row {row + 1}: {value!r} is not a usable number "
                f"(numbers must lie within ±{FLOAT32_MAX:.4g})",
                column=name,
            )


def _spelled_beyond(column: pl.Series, decimal: Literal[".", ","]) -> pl.Series | None:
    """For a text column of numbers (as people write them, in the file's decimal mark): which
    rows hold one beyond float32; None for any other text column. Read on the distinct values."""
    distinct = column.drop_nulls().unique().cast(pl.String)
    spelling = detect_spelling(distinct, decimal)
    if spelling is None or spelling.booleans is not None:
        return None
    numbers = parse_numeric(distinct.str.strip_chars(), column.name, spelling)
    beyond = distinct.filter(numbers.abs() > FLOAT32_MAX)
    return column.cast(pl.String).is_in(beyond) if beyond.len() else None
