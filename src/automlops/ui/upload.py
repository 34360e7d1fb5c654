"""The dashboard's upload form, turned into the upload use case's options (automlops.usecases.
upload holds every rule: names, manifest merge, header checks, target detection, the key)."""

from __future__ import annotations

from dataclasses import dataclass, field

from automlops.local.runtime import LocalRuntime
from automlops.usecases.upload import Uploaded, UploadOptions, UploadRefused, upload


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


def _options(form: UploadForm) -> UploadOptions:
    """Form strings as the use case's options; only parsing happens here."""
    budget = None
    if form.time_budget.strip():
        try:
            budget = float(form.time_budget)
        except ValueError:
            raise UploadError("the time budget must be a number of seconds") from None
    drops = [item for item in form.drop if item.strip()]
    return UploadOptions(
        dataset=form.dataset or None,
        target=form.target or None,
        positive=form.positive or None,
        task=form.task or None,
        drop=drops or None,  # nothing ticked or typed keeps the stored manifest's list
        time_budget_s=budget,
        learners=form.learners or None,
    )


def store_upload(runtime: LocalRuntime, form: UploadForm) -> Uploaded:
    """Validate the form, store the manifest, then the file; the file's write starts the run."""
    options = _options(form)
    try:
        return upload(
            runtime.store, runtime.settings.buckets.data, form.filename, form.data, options
        )
    except UploadRefused as exc:
        raise UploadError(str(exc)) from None
