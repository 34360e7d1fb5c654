"""Stage 1: an uploaded CSV becomes seeded splits, a fitted transform and a schema."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from automlops import keys
from automlops.config import Manifest, Task
from automlops.errors import DataError
from automlops.events import S3EventRecord
from automlops.manifests import load_manifest
from automlops.ml.columns.plan import fit_columns
from automlops.ml.columns.target import default_target, fit_target
from automlops.ml.columns.transform import FLOAT32_MAX
from automlops.ml.splits import split_indices
from automlops.ports import Ports
from automlops.stages.drift_check import check_drift
from automlops.stages.result import StageResult
from automlops.tabular.csv_reader import read_csv_file
from automlops.tabular.schema import DatasetSchema, SplitRows

MIN_ROWS = 20
PROCESSED_TAG = "automlops-processed-run"
# Rows per Parquet row group when a split is written: bounds the copy a split costs.
_WRITE_CHUNK_ROWS = 256 * 1024


def run_identity(dataset: str, content_sha256: str, manifest: Manifest) -> str:
    """A run is named after what it processes: the dataset, the bytes and the manifest."""
    material = f"{dataset}\0{content_sha256}\0{manifest.model_dump_json()}"
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def locate(record: S3EventRecord, ports: Ports) -> tuple[keys.RunRef, Path | bytes, Manifest, str]:
    """Find the upload and its manifest and name the run (before any parsing can fail).

    Returns the run, the upload as a local file where the store keeps one (read in pieces,
    never whole into memory) else as its bytes, the manifest, and the upload's SHA-256.
    """
    source = keys.parse_source_key(record.key)
    manifest = load_manifest(ports.store, ports.settings.buckets.data, source.dataset)
    local = ports.store.local_file(record.bucket, record.key)
    # Refuse an oversized upload by its size, before reading it.
    if local is not None:
        size: int | None = local.stat().st_size
    else:
        info = ports.store.head(record.bucket, record.key)
        size = None if info is None else info.size
    limit = ports.settings.max_upload_bytes
    if size is not None and size > limit:
        raise DataError(
            record.key,
            f"is {size:,} bytes; uploads over {limit:,} bytes are refused (max_upload_bytes)",
        )
    data: Path | bytes
    if local is not None:
        data = local
        with open(local, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    else:
        data = ports.store.get(record.bucket, record.key)
        digest = hashlib.sha256(data).hexdigest()
    run_id = run_identity(source.dataset, digest, manifest)
    return keys.RunRef(source.dataset, run_id), data, manifest, digest


def preprocess(record: S3EventRecord, ports: Ports) -> StageResult:
    """Read, profile, split and fit the preprocessing of an uploaded CSV."""
    run, data, manifest, sha256 = locate(record, ports)
    store, buckets = ports.store, ports.settings.buckets
    schema_key = keys.schema_key(run.dataset, run.run_id)
    if store.head(buckets.automl_data, schema_key) is not None:
        return StageResult(run=run, duplicate=True, note="already preprocessed")

    source = record.key
    # Text as Categorical: the same values in a fraction of the memory of strings.
    frame = read_csv_file(data, source, text_as_categorical=True)
    del data
    _check_magnitudes(frame, source)
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

    # Class labels are read from the compact column as they are; a regression target given
    # as text is parsed from strings.
    labels = frame.get_column(target_name)
    if labels.dtype == pl.Categorical and manifest.task is Task.regression:
        labels = labels.cast(pl.String)
    target = fit_target(
        labels,
        target_name,
        task=manifest.task,
        positive=manifest.positive,
        source=source,
    )
    if target.task is Task.regression and frame.get_column(target_name).n_unique() < 2:
        value = frame.get_column(target_name)[0]
        raise DataError(
            source, f"target is {value!r} on every row; nothing to learn", column=target_name
        )
    y = target.encode(labels, source)
    del labels
    strata = None if target.task is Task.regression else y
    train_idx, valid_idx, test_idx = split_indices(
        frame.height, manifest.split, seed=manifest.seed, strata=strata
    )
    # Fitted column by column on the training rows, without a copy of the training frame.
    transform, profiles = fit_columns(frame, target, rows=train_idx)
    # Before anything is written for training: under `drift: block` a drifted upload stops here.
    notes += check_drift(ports, run, frame, target_name, manifest, source)

    split_keys: dict[str, str] = {}
    for name, idx in zip(keys.SPLITS, (train_idx, valid_idx, test_idx), strict=True):
        split_keys[name] = keys.split_key(run.dataset, run.run_id, name)
        store.put(buckets.automl_data, split_keys[name], _parquet_rows(frame, idx))
    transform_key = keys.transform_key(run.dataset, run.run_id)
    store.put(buckets.automl_data, transform_key, transform.model_dump_json(indent=1).encode())

    schema = DatasetSchema(
        dataset=run.dataset,
        run_id=run.run_id,
        source_bucket=record.bucket,
        source_key=source,
        source_sha256=sha256,
        created_at=ports.clock().isoformat(),
        manifest=manifest,
        target=target,
        columns=profiles,
        rows=SplitRows(
            total=total,
            train=len(train_idx),
            validation=len(valid_idx),
            test=len(test_idx),
            dropped_missing_target=missing_target,
        ),
        split_keys=split_keys,
        transform_key=transform_key,
        notes=notes,
    )
    # Written last: its ObjectCreated is what starts training.
    store.put(buckets.automl_data, schema_key, schema.model_dump_json(indent=1).encode())
    store.put_tags(record.bucket, record.key, {PROCESSED_TAG: run.run_id})
    return StageResult(run=run, outputs=[*split_keys.values(), transform_key, schema_key])


def _parquet_rows(frame: pl.DataFrame, rows: np.ndarray) -> bytes:
    """The given rows of `frame` as Parquet, gathered a row group at a time.

    A split of a big upload would otherwise be copied whole before it is written.
    """
    buffer = io.BytesIO()
    with pq.ParquetWriter(buffer, frame.head(0).to_arrow().schema) as writer:
        for start in range(0, max(len(rows), 1), _WRITE_CHUNK_ROWS):
            part = frame[rows[start : start + _WRITE_CHUNK_ROWS]]
            writer.write_table(part.to_arrow())
    return buffer.getvalue()


def _check_magnitudes(frame: pl.DataFrame, source: str) -> None:
    """Refuse numbers a model cannot read (inf, 1e309, beyond float32) here, naming the data
    row and column of the upload; later they would fail training on a shuffled split."""
    for name, dtype in frame.schema.items():
        if not dtype.is_float():
            continue
        beyond = frame.get_column(name).abs() > FLOAT32_MAX  # null and NaN: missing, fine
        if beyond.any():
            row = int(beyond.arg_true()[0])
            value = frame.get_column(name)[row]
            raise DataError(
                source,
                f"data row {row + 1}: {value!r} is not a usable number "
                f"(numbers must lie within ±{FLOAT32_MAX:.4g})",
                column=name,
            )
