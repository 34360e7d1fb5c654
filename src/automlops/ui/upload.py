"""An upload from the dashboard's form: the manifest options, then the file (which triggers).

The same rules as `automlops upload`: the dataset's stored manifest is the base, the options
given override it, the target defaults to the file's likely target column, and the manifest is
stored before the file so the run that the file's notification starts reads the new options.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from automlops import keys
from automlops.config import Manifest, Task
from automlops.errors import AutomlopsError
from automlops.local.runtime import LocalRuntime
from automlops.manifests import load_manifest, save_manifest
from automlops.ml.columns.target import default_target
from automlops.ml.learners.catalog import LEARNER_NAMES
from automlops.tabular.csv_reader import read_csv_bytes

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_TIME_BUDGET_S = 24 * 3600.0


class UploadError(ValueError):
    """The form cannot be accepted as filled in; the message says what to change."""


@dataclass
class UploadForm:
    """The form's fields, as submitted (strings; empty means "keep or detect")."""

    filename: str
    data: bytes
    dataset: str = ""
    target: str = ""
    positive: str = ""
    task: str = ""
    drop: list[str] = field(default_factory=list)
    time_budget: str = ""
    learners: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Uploaded:
    key: str
    dataset: str
    manifest: Manifest
    target_detected: bool


def dataset_from_filename(filename: str) -> str:
    """The default dataset name: the file's stem with unsafe characters replaced."""
    stem = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    stem = stem[: -len(".csv")] if stem.lower().endswith(".csv") else stem
    return _UNSAFE.sub("-", stem).strip("-.") or "dataset"


def object_filename(filename: str) -> str:
    """The file's name inside the bucket: safe characters, a .csv suffix (the trigger's)."""
    name = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    name = _UNSAFE.sub("_", name).lstrip(".") or "upload"
    if name.lower().endswith(".csv"):
        name = name[:-4]
    return f"{name[:200]}.csv"


def _changes(form: UploadForm) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if form.target.strip():
        changes["target"] = form.target.strip()
    if form.positive.strip():
        changes["positive"] = form.positive.strip()
    if form.task.strip():
        try:
            changes["task"] = Task(form.task.strip())
        except ValueError:
            raise UploadError(f"task must be one of {', '.join(t.value for t in Task)}") from None
    drops = [c.strip() for item in form.drop for c in item.split(",") if c.strip()]
    if drops:
        changes["drop"] = list(dict.fromkeys(drops))
    if form.time_budget.strip():
        try:
            budget = float(form.time_budget)
        except ValueError:
            raise UploadError("the time budget must be a number of seconds") from None
        if not math.isfinite(budget) or not 0 < budget <= MAX_TIME_BUDGET_S:
            raise UploadError(f"the time budget must be between 0 and {MAX_TIME_BUDGET_S:.0f} s")
        changes["time_budget_s"] = budget
    if form.learners:
        unknown = [name for name in form.learners if name not in LEARNER_NAMES]
        if unknown:
            raise UploadError(f"unknown learner(s): {', '.join(unknown)}")
        changes["learners"] = [name for name in LEARNER_NAMES if name in form.learners]
    return changes


def store_upload(runtime: LocalRuntime, form: UploadForm) -> Uploaded:
    """Validate the form, store the manifest, then the file; the file's write starts the run."""
    if not form.data:
        raise UploadError("the file is empty: choose a CSV file with a header and rows")
    name = form.dataset.strip() or dataset_from_filename(form.filename)
    bucket = runtime.settings.buckets.data
    try:
        Manifest(dataset=name)  # validates the name before it becomes part of a key
        base = load_manifest(runtime.store, bucket, name)
        manifest = Manifest.model_validate({**base.model_dump(), **_changes(form), "dataset": name})
    except UploadError:
        raise
    except (ValueError, AutomlopsError) as exc:
        raise UploadError(_first_line(exc)) from None

    key = keys.source_key(name, object_filename(form.filename))
    detected = False
    if manifest.target is None:
        # As `automlops upload` does: say which column was taken, so the run page can show it.
        try:
            columns = read_csv_bytes(form.data, key).columns
        except AutomlopsError:
            columns = []
        if columns:
            manifest = manifest.model_copy(update={"target": default_target(columns)})
            detected = True
    save_manifest(runtime.store, bucket, manifest)
    runtime.store.put(bucket, key, form.data)
    return Uploaded(key=key, dataset=name, manifest=manifest, target_detected=detected)


def _first_line(exc: Exception) -> str:
    """Pydantic errors are long; the first useful line is what a person needs."""
    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) >= 3 and "validation error" in lines[0]:
        return lines[2]
    return lines[0] if lines else type(exc).__name__
