"""The dashboard's read side names uploads as their person does: by file, not by internal key."""

from __future__ import annotations

import time

from automlops import keys
from automlops.local.runlog import RunRecord
from automlops.local.runtime import LocalRuntime
from automlops.ui import views


def _run(source: str | None) -> RunRecord:
    now = time.time()
    return RunRecord(
        id="r1",
        dataset="ppl",
        source=source,
        status="running",
        error=None,
        model_version=None,
        headline_metric=None,
        headline_value=None,
        note=None,
        created_at=now,
        updated_at=now,
        stages=[],
    )


def test_a_run_shows_the_uploaded_file_name_and_keeps_the_key() -> None:
    in_folder = keys.source_key("ppl", "people.csv", "20261130-125517-3fa2c1d4")
    view = views.run_view(_run(in_folder))
    assert view["filename"] == "people.csv" and view["source"] == in_folder
    # A file put straight into the dataset's folder, and a run with no upload at all.
    assert views.run_view(_run("data/ppl/people.csv"))["filename"] == "people.csv"
    assert views.run_view(_run(None))["filename"] is None
    # A source that is no upload key (recorded by hand or by an older layout): shown whole.
    assert views.run_view(_run("elsewhere/x.csv"))["filename"] == "elsewhere/x.csv"


def test_datasets_are_found_from_uploads_in_their_own_folders(runtime: LocalRuntime) -> None:
    bucket = runtime.settings.buckets.data
    # No manifest and no registry: only an upload in its folder names the dataset.
    runtime.store.put(bucket, keys.source_key("fresh", "f.csv", "20261130-125517-3fa2c1d4"), b"a\n")
    runtime.store.put(bucket, keys.source_key("plain", "p.csv"), b"a\n")
    runtime.store.put(bucket, "data/labels/p.csv", b"a\n")  # a reserved name: no dataset
    runtime.store.put(bucket, "data/loose.csv", b"a\n")  # not in a dataset's folder
    assert views.dataset_names(runtime) == ["fresh", "plain"]
