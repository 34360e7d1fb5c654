"""The dashboard's upload form, turned into the upload use case's options (automlops.usecases.
upload holds every rule: names, manifest merge, header checks, target detection, the key)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from automlops.local.runtime import LocalRuntime
from automlops.usecases.upload import Uploaded, UploadOptions, UploadRefused, upload


class UploadError(ValueError):
    """The form cannot be accepted as filled in; the message says what to change."""


@dataclass
class UploadForm:
    """The form's fields, as submitted (strings; empty means "keep or detect")."""

    filename: str
    source: Path  # the uploaded file, spooled to disk (see `spooled`)
    dataset: str = ""
    target: str = ""
    positive: str = ""
    task: str = ""
    drop: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)  # each item may list several, comma-separated
    time_budget: str = ""
    learners: list[str] = field(default_factory=list)


def _options(form: UploadForm) -> UploadOptions:
    """Form strings as the use case's options; only parsing happens here."""
    budget = None
    if form.time_budget.strip():
        try:
            budget = float(form.time_budget)
        except ValueError:
            raise UploadError("the time budget must be a number of seconds") from None
    drops = [item for item in form.drop if item.strip()]
    keeps = [item for item in form.keep if item.strip()]
    return UploadOptions(
        dataset=form.dataset or None,
        target=form.target or None,
        positive=form.positive or None,
        task=form.task or None,
        drop=drops or None,  # nothing ticked or typed keeps the stored manifest's list
        keep=keeps or None,  # likewise
        time_budget_s=budget,
        learners=form.learners or None,
    )


def spooled(upload_file: BinaryIO) -> Path:
    """Copy a form's uploaded file to a private temporary file in 1 MiB pieces, so that the
    upload use case streams it into the store and reads only its head: a big upload never
    sits in memory whole. The caller removes the file (see `store_upload`)."""
    fd, name = tempfile.mkstemp(prefix="automlops-upload-", suffix=".csv")
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(upload_file, out, 1 << 20)
    return Path(name)


def store_upload(runtime: LocalRuntime, form: UploadForm) -> Uploaded:
    """Validate the form, store the manifest, then the file (its write starts the run); the
    spooled file is removed either way."""
    try:
        return upload(
            runtime.store, runtime.settings.buckets.data, form.filename, form.source, _options(form)
        )
    except UploadRefused as exc:
        raise UploadError(str(exc)) from None
    finally:
        form.source.unlink(missing_ok=True)
