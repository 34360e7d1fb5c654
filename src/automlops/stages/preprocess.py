"""Stage 1: an uploaded CSV becomes seeded splits, a fitted transform and a schema."""

from __future__ import annotations

import hashlib
import io

import polars as pl

from automlops import keys
from automlops.config import Manifest, Task
from automlops.errors import DataError
from automlops.events import S3EventRecord
from automlops.manifests import load_manifest
from automlops.ml.column_plan import fit_columns
from automlops.ml.csv_reader import read_csv_bytes
from automlops.ml.schema import DatasetSchema, SplitRows
from automlops.ml.splits import split_indices
from automlops.ml.target import default_target, fit_target
from automlops.ml.transform import FLOAT32_MAX
from automlops.ports import Ports
from automlops.stages.drift_check import check_drift
from automlops.stages.result import StageResult

MIN_ROWS = 20
PROCESSED_TAG = "automlops-processed-run"


def run_identity(dataset: str, content_sha256: str, manifest: Manifest) -> str:
    """A run is named after what it processes: the dataset, the bytes and the manifest."""
    material = f"{dataset}\0{content_sha256}\0{manifest.model_dump_json()}"
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def locate(record: S3EventRecord, ports: Ports) -> tuple[keys.RunRef, bytes, Manifest]:
    """Read the upload and its manifest and name the run (before any parsing can fail)."""
    source = keys.parse_source_key(record.key)
    manifest = load_manifest(ports.store, ports.settings.buckets.data, source.dataset)
    # The file is read whole below: refuse an oversized one by its size, before reading it.
    info = ports.store.head(record.bucket, record.key)
    limit = ports.settings.max_upload_bytes
    if info is not None and info.size > limit:
        raise DataError(
            record.key,
            f"is {info.size:,} bytes; uploads over {limit:,} bytes are refused (max_upload_bytes)",
        )
    data = ports.store.get(record.bucket, record.key)
    run_id = run_identity(source.dataset, hashlib.sha256(data).hexdigest(), manifest)
    return keys.RunRef(source.dataset, run_id), data, manifest


def preprocess(record: S3EventRecord, ports: Ports) -> StageResult:
    """Read, profile, split and fit the preprocessing of an uploaded CSV."""
    run, data, manifest = locate(record, ports)
    store, buckets = ports.store, ports.settings.buckets
    schema_key = keys.schema_key(run.dataset, run.run_id)
    if store.head(buckets.automl_data, schema_key) is not None:
        return StageResult(run=run, duplicate=True, note="already preprocessed")

    source = record.key
    frame = read_csv_bytes(data, source)
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
    frame = frame.filter(pl.col(target_name).is_not_null())
    missing_target = total - frame.height
    if missing_target:
        notes.append(f"{missing_target} rows without a target value were left out")
    if frame.height < MIN_ROWS:
        raise DataError(source, f"{frame.height} usable rows; at least {MIN_ROWS} are needed")

    target = fit_target(
        frame.get_column(target_name),
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
    y = target.encode(frame.get_column(target_name), source)
    strata = None if target.task is Task.regression else y
    train_idx, valid_idx, test_idx = split_indices(
        frame.height, manifest.split, seed=manifest.seed, strata=strata
    )
    train = frame[train_idx]

    transform, profiles = fit_columns(train, target)
    # Before anything is written for training: under `drift: block` a drifted upload stops here.
    notes += check_drift(ports, run, frame, target_name, manifest, source)

    split_keys: dict[str, str] = {}
    for name, idx in zip(keys.SPLITS, (train_idx, valid_idx, test_idx), strict=True):
        buffer = io.BytesIO()
        frame[idx].write_parquet(buffer)
        split_keys[name] = keys.split_key(run.dataset, run.run_id, name)
        store.put(buckets.automl_data, split_keys[name], buffer.getvalue())
    transform_key = keys.transform_key(run.dataset, run.run_id)
    store.put(buckets.automl_data, transform_key, transform.model_dump_json(indent=1).encode())

    schema = DatasetSchema(
        dataset=run.dataset,
        run_id=run.run_id,
        source_bucket=record.bucket,
        source_key=source,
        source_sha256=hashlib.sha256(data).hexdigest(),
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
