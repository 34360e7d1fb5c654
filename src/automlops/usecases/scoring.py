"""Scoring a file through the bucket: submit it under score/<dataset>/, then fetch the result.

`submit` checks what can be checked before anything is written (the dataset has a version to
score with, the file's format), pins the version (the champion at submit time, unless one is
named) in the options sidecar, writes the sidecar and then the file (whose write triggers the
score stage), and names the run the stage will record. `outcome` reads that run back; `save`
copies its predictions to a local file.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from automlops import keys
from automlops.config import Settings
from automlops.errors import AutomlopsError, PermanentError
from automlops.local.runlog import RunLog
from automlops.ml.batch import (
    ScoreLineage,
    ScoreOptions,
    TableFormat,
    score_run_id,
    scoring_version,
)
from automlops.names import check_dataset_name
from automlops.ports import ObjectStore
from automlops.registry import Registry


class ScoreRefused(AutomlopsError, ValueError):
    """A scoring request that cannot be run (unknown dataset, no champion, bad file...)."""


@dataclass(frozen=True)
class Submission:
    """A file submitted for scoring and the run that scores it."""

    run: keys.RunRef
    key: str
    version: int
    options: ScoreOptions


@dataclass(frozen=True)
class Outcome:
    """How a scoring run ended: its lineage when it succeeded, else the error."""

    status: str  # succeeded | failed | running | missing
    lineage: ScoreLineage | None = None
    error: str | None = None


def submit(
    store: ObjectStore, settings: Settings, file: Path, dataset: str, options: ScoreOptions
) -> Submission:
    """Store `file` under score/<dataset>/ with its options (ScoreRefused when it cannot be
    scored: an unknown dataset, no champion or version, a format other than CSV/Parquet)."""
    try:
        check_dataset_name(dataset)
        TableFormat.of(file.name)
        registry = Registry(store, settings.buckets.model_output)
        version = scoring_version(registry, dataset, options.version)
    except (PermanentError, ValueError) as exc:
        raise ScoreRefused(str(exc)) from None
    _check_readable(file)
    pinned = options.model_copy(update={"version": version.version})
    bucket, key = settings.buckets.data, keys.score_key(dataset, file.name)
    options_key = keys.score_options_key(dataset, file.name)
    try:  # a name the store cannot hold is refused by the first write (the longer key)
        store.put(bucket, options_key, pinned.model_dump_json().encode())
        info = store.put_file(bucket, key, file)
    except PermanentError as exc:
        raise ScoreRefused(str(exc)) from None
    run_id = score_run_id(dataset, info.etag, info.size, version.version, pinned)
    return Submission(keys.RunRef(dataset, run_id), key, version.version, pinned)


def _check_readable(file: Path) -> None:
    try:
        with open(file, "rb") as handle:
            if not handle.read(1):
                raise ScoreRefused(f"{file}: the file is empty")
    except OSError as exc:
        raise ScoreRefused(f"{file}: cannot be read: {exc.strerror or exc}") from None


def outcome(store: ObjectStore, settings: Settings, runlog: RunLog, sub: Submission) -> Outcome:
    """The state of a submitted scoring run."""
    record = runlog.get(sub.run.run_id)
    if record is None:
        return Outcome(status="missing", error="the scoring run was never started")
    if record.status != "succeeded":
        return Outcome(status=record.status, error=record.error)
    lineage_key = keys.prediction_lineage_key(sub.run.dataset, sub.run.run_id)
    data = store.get(settings.buckets.model_output, lineage_key)
    return Outcome(status="succeeded", lineage=ScoreLineage.model_validate_json(data))


def save(store: ObjectStore, lineage: ScoreLineage, path: Path) -> None:
    """Copy a run's predictions to a local file (streamed where the store keeps files)."""
    local = store.local_file(lineage.output_bucket, lineage.output_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    if local is not None:
        shutil.copyfile(local, path)
    else:
        path.write_bytes(store.get(lineage.output_bucket, lineage.output_key))


def default_output(file: Path) -> Path:
    """Where `automlops predict FILE` writes without --output: FILE.predictions.<ext>."""
    return file.with_name(f"{file.name}.predictions{file.suffix}")
