"""Upload: a CSV file and its options become the dataset's manifest, then an object in the data
bucket (whose arrival starts the pipeline), at a key of its own (`data/<dataset>/<upload>/<file>`).

Everything is checked before anything is written: the dataset name, the options merged over the
stored manifest, the target, dropped and kept columns against the file's header (a misspelling
gets a did-you-mean), and the positive label against the labels the first rows show. The
manifest is stored before the file, so the run the file's notification starts reads the new
options.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automlops import keys, names
from automlops.config import MAX_TIME_BUDGET_S, Manifest, Task
from automlops.errors import AutomlopsError
from automlops.manifests import load_manifest, save_manifest
from automlops.ports import ObjectStore

if TYPE_CHECKING:
    import polars as pl

HEAD_BYTES = 1 << 16  # the header (and the default target) is read from this much of the file
_COLUMNS_SHOWN = 20


class UploadRefused(ValueError):
    """The upload cannot be accepted as asked; the message says what to change."""


@dataclass(frozen=True)
class UploadOptions:
    """What the person asked for; None keeps the stored manifest's value (or detects it)."""

    dataset: str | None = None
    target: str | None = None
    positive: str | None = None
    task: str | None = None
    drop: Sequence[str] | None = None  # column names; an item may list several, comma-separated
    # Columns to keep as features though they look like identifiers or target leaks.
    keep: Sequence[str] | None = None
    time_budget_s: float | None = None
    learners: Sequence[str] | None = None


@dataclass(frozen=True)
class Uploaded:
    """A stored upload: where it is and the manifest its run reads."""

    bucket: str
    key: str
    dataset: str
    manifest: Manifest
    # How the target was chosen when none was given or stored: "the last column" or
    # "a column named 'y'"; None when the target came from the options or the manifest.
    target_detected: str | None


def upload(
    store: ObjectStore,
    bucket: str,
    filename: str,
    source: Path | bytes,
    options: UploadOptions,
) -> Uploaded:
    """Validate, store the manifest, then the file (streamed when `source` is a path).
    UploadRefused, with nothing written, when anything is wrong."""
    if _is_empty(source):
        raise UploadRefused("the file is empty: choose a CSV file with a header and rows")
    dataset = options.dataset.strip() if options.dataset and options.dataset.strip() else None
    name = dataset or names.dataset_from_filename(filename)
    try:
        names.check_dataset_name(name)
        base = load_manifest(store, bucket, name)
        changes = _changes(options)
        stored = base.model_dump()
        if base.target is not None and changes.get("target", base.target) != base.target:
            # A new target: the stored positive label and task were the old target's.
            stored.update(positive=None, task=None)
        manifest = Manifest.model_validate({**stored, **changes, "dataset": name})
    except UploadRefused:
        raise
    except (ValueError, AutomlopsError) as exc:
        raise UploadRefused(_first_line(exc)) from None

    # A folder of its own: a later upload of the same file name never replaces this one.
    key = keys.source_key(name, names.object_filename(filename), names.new_upload_id())
    head = _head(source, key)
    detected = None
    if head is not None:
        columns = list(head.columns)
        _check_columns(manifest, changes, columns)
        if manifest.target is None:
            chosen, detected = _detect_target(columns)
            manifest = manifest.model_copy(update={"target": chosen})
        assert manifest.target is not None  # checked against the header or just chosen
        _check_positive(manifest.positive, head.get_column(manifest.target))
    save_manifest(store, bucket, manifest)
    if isinstance(source, Path):
        store.put_file(bucket, key, source)  # streamed: a big file is never held whole
    else:
        store.put(bucket, key, source)
    return Uploaded(
        bucket=bucket, key=key, dataset=name, manifest=manifest, target_detected=detected
    )


def split_columns(items: Sequence[str]) -> list[str]:
    """Column names from items that may each list several, comma-separated; blanks dropped,
    duplicates kept once, order kept."""
    return list(dict.fromkeys(c.strip() for item in items for c in item.split(",") if c.strip()))


def _changes(options: UploadOptions) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if options.target is not None and options.target.strip():
        changes["target"] = options.target.strip()
    if options.positive is not None and options.positive.strip():
        changes["positive"] = options.positive.strip()
    if options.task is not None and options.task.strip():
        try:
            changes["task"] = Task(options.task.strip())
        except ValueError:
            raise UploadRefused(f"task must be one of {', '.join(t.value for t in Task)}") from None
    if options.drop is not None:
        changes["drop"] = split_columns(options.drop)
    if options.keep is not None:
        changes["keep"] = split_columns(options.keep)
    if options.time_budget_s is not None:
        budget = options.time_budget_s
        if not math.isfinite(budget) or not 0 < budget <= MAX_TIME_BUDGET_S:
            raise UploadRefused(f"the time budget must be between 0 and {MAX_TIME_BUDGET_S:.0f} s")
        changes["time_budget_s"] = budget
    if options.learners:
        from automlops.ml.learners.catalog import LEARNER_NAMES

        unknown = [name for name in options.learners if name not in LEARNER_NAMES]
        if unknown:
            raise UploadRefused(f"unknown learner(s): {', '.join(unknown)}")
        changes["learners"] = [name for name in LEARNER_NAMES if name in options.learners]
    return changes


def _check_columns(manifest: Manifest, changes: dict[str, Any], columns: list[str]) -> None:
    """The target and the columns this upload drops or keeps must be columns of the file (a
    misspelling would otherwise fail the run, or silently keep a column the person meant to
    drop). Drops and keeps stored by earlier uploads are not checked: a later file may lack
    such a column, and preprocess then has nothing to drop or keep."""
    if manifest.target is not None and manifest.target not in columns:
        raise UploadRefused(
            f"target column {manifest.target!r} is not in the file's header"
            f"{_did_you_mean([manifest.target], columns)} ({_shown(columns)})"
        )
    for option in ("drop", "keep"):
        missing = [c for c in changes.get(option, []) if c not in columns]
        if missing:
            listed = ", ".join(repr(c) for c in missing)
            raise UploadRefused(
                f"{option} column(s) {listed} not in the file's header"
                f"{_did_you_mean(missing, columns)} ({_shown(columns)})"
            )
    if manifest.target is not None and manifest.target in manifest.drop:
        raise UploadRefused(f"the target column {manifest.target!r} cannot also be dropped")
    both = [c for c in manifest.keep if c in manifest.drop]
    if both:
        listed = ", ".join(repr(c) for c in both)
        raise UploadRefused(f"column(s) {listed} cannot be both dropped and kept")


def _check_positive(positive: str | None, values: pl.Series) -> None:
    """Refuse a positive label the run could never accept, judged on the first rows' labels.

    The head of a big file may show only some labels (a file sorted by class shows one), so
    a positive label absent from it is refused only when the head already shows two labels or
    more: the target is then either binary with those two, or not binary at all, and either
    way the run would fail. Otherwise preprocess checks it against every label, and fails
    the run naming them."""
    if positive is None:
        return
    from automlops.ml.columns.target import label_key, sample_labels

    labels = sample_labels(values)
    if len(labels) > 2:
        raise UploadRefused(
            f"a positive label ({positive!r}) needs a binary target; the first rows of "
            f"{values.name!r} already show {len(labels)} labels ({_shown(labels, quoted=True)})"
        )
    if len(labels) == 2 and label_key(positive) not in {label_key(x) for x in labels}:
        raise UploadRefused(
            f"positive label {positive!r} is not among the labels of {values.name!r} "
            f"({_shown(labels, quoted=True)})"
        )


def _did_you_mean(names: list[str], columns: list[str]) -> str:
    """ "; did you mean 'age'?" for the closest columns to misspelt names, else ""."""
    by_key = {c.strip().casefold(): c for c in columns}
    guesses = []
    for name in names:
        same = by_key.get(name.strip().casefold())  # only the case or spaces differ
        close = difflib.get_close_matches(name, columns, n=1, cutoff=0.6)
        guess = same or (close[0] if close else None)
        if guess is not None and guess not in guesses:
            guesses.append(guess)
    return f"; did you mean {' or '.join(repr(g) for g in guesses)}?" if guesses else ""


def _shown(columns: list[str], *, quoted: bool = False) -> str:
    listed = ", ".join(repr(c) if quoted else c for c in columns[:_COLUMNS_SHOWN])
    return listed + (", ..." if len(columns) > _COLUMNS_SHOWN else "")


def _is_empty(source: Path | bytes) -> bool:
    if isinstance(source, Path):
        return source.stat().st_size == 0
    return not source


def head_lines(source: Path | bytes) -> bytes:
    """The first whole lines of a file (up to HEAD_BYTES): enough to read its header."""
    if isinstance(source, Path):
        with open(source, "rb") as handle:
            head = handle.read(HEAD_BYTES + 1)
    else:
        head = source[: HEAD_BYTES + 1]
    if len(head) <= HEAD_BYTES:
        return head
    cut = head.rfind(b"\n", 0, HEAD_BYTES)
    return head[: cut + 1] if cut > 0 else head[:HEAD_BYTES]


def _head(source: Path | bytes, key: str) -> pl.DataFrame | None:
    """The file's first rows as preprocess will read them (its header and some values), or
    None when they do not parse (the run then reports why, with the whole file in view)."""
    from automlops.tabular.csv_reader import read_csv_bytes

    try:
        return read_csv_bytes(head_lines(source), key)
    except AutomlopsError:
        return None


def _detect_target(columns: list[str]) -> tuple[str, str]:
    """The default target of a file with `columns`, and how it was chosen (for the person)."""
    from automlops.ml.columns.target import named_target

    named = named_target(columns)
    if named is not None:
        return named, f"a column named {named!r}"
    return columns[-1], "the last column"


def _first_line(exc: Exception) -> str:
    """Pydantic errors are long; the first useful line is what a person needs."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) >= 3 and "validation error" in lines[0]:
        return lines[2]
    return lines[0] if lines else type(exc).__name__
