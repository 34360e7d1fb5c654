"""Two uploads under one name before a worker runs: both are kept and both are processed.

Every upload through the use case (CLI, dashboard, `automlops aws upload`) gets its own key, so
the second never replaces the first; runs stay named after their content, so the same bytes
uploaded again are still one run and a duplicate record.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from reliability_support import check_registry, fast_manifest, record, small_csv
from typer.testing import CliRunner

from automlops import keys, names
from automlops.cli import app
from automlops.errors import PermanentError
from automlops.local.runtime import open_runtime
from automlops.local.store import MAX_NAME_BYTES
from automlops.local.worker import Worker, run_workers
from automlops.manifests import save_manifest
from automlops.ports import MAX_KEY_BYTES
from automlops.usecases.upload import UploadOptions, upload


def test_same_name_uploads_are_two_runs_and_lose_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runtime = open_runtime(home)
    bucket = runtime.settings.buckets.data
    try:
        save_manifest(runtime.store, bucket, fast_manifest("d"))
        first, second = small_csv(80, seed=31), small_csv(80, seed=32)
        options = UploadOptions(dataset="d")
        # Folder A's x.csv, then folder B's x.csv, before any worker runs; then A's again.
        a = upload(runtime.store, bucket, "A/x.csv", first, options)
        b = upload(runtime.store, bucket, "B/x.csv", second, options)
        again = upload(runtime.store, bucket, "A/x.csv", first, options)
        assert len({a.key, b.key, again.key}) == 3
        for uploaded in (a, b, again):
            source = keys.parse_source_key(uploaded.key)
            assert (source.dataset, source.filename) == ("d", "x.csv")
        # Nothing was overwritten: each key holds the bytes uploaded under it.
        stored = [runtime.store.get(bucket, u.key) for u in (a, b, again)]
        assert stored == [first, second, first]

        run_workers([Worker(runtime) for _ in range(2)], until_idle=True)

        runs = runtime.runlog.list("d")
        by_source = {r.source: r for r in runs}
        assert set(by_source) == {a.key, b.key, again.key}
        originals = [r for r in runs if r.duplicate_of is None]
        duplicates = [r for r in runs if r.duplicate_of is not None]
        assert all(r.status == "succeeded" for r in runs), [(r.source, r.error) for r in runs]
        assert len(originals) == 2 and len(duplicates) == 1
        # B's bytes are a run of their own; A's twice are one run and its duplicate.
        assert by_source[b.key].duplicate_of is None
        a_first, a_again = by_source[a.key], by_source[again.key]
        assert {a_first.duplicate_of, a_again.duplicate_of} in (
            {None, a_first.id},
            {None, a_again.id},
        )
        doc = runtime.registry.read("d")
        check_registry(doc)
        assert len(doc.versions) == 2  # one per distinct content
        # Each version was trained on the bytes of its own upload.
        digests = {hashlib.sha256(first).hexdigest(), hashlib.sha256(second).hexdigest()}
        trained_on = set()
        for run in originals:
            schema = runtime.store.get(
                runtime.settings.buckets.automl_data, keys.schema_key("d", run.id)
            )
            trained_on.add(json.loads(schema)["source_sha256"])
        assert trained_on == digests
    finally:
        runtime.close()

    # What a person sees: each run's source is its own upload's key, ending in the file's name.
    result = CliRunner().invoke(app, ["runs", "--json", "--home", str(home)])
    assert result.exit_code == 0, result.output
    shown = sorted(item["source"] for item in json.loads(result.output))
    assert shown == sorted([a.key, b.key, again.key])
    assert all(keys.parse_source_key(key).filename == "x.csv" for key in shown)
    record(
        "same_name_uploads",
        {
            "uploads": 3,
            "distinct_files": 2,
            "runs_with_work": len(originals),
            "duplicates_recorded": len(duplicates),
            "model_versions": len(doc.versions),
            "uploads_lost": 2 - len(trained_on),
            "shown_as": shown[0],
        },
    )


def test_both_key_layouts_parse_and_dot_parts_are_refused() -> None:
    assert keys.parse_source_key("data/d/x.csv") == keys.SourceRef("d", "x.csv")
    assert keys.parse_source_key("data/d/u1/x.csv") == keys.SourceRef("d", "x.csv", "u1")
    for bad in ("data/d/../x.csv", "data/d/./x.csv", "data/d//x.csv", "data/d/a/b/x.csv"):
        with pytest.raises(PermanentError, match=r"data/<dataset>/<file>\.csv"):
            keys.parse_source_key(bad)


def test_the_longest_upload_key_fits_every_store(tmp_path: Path) -> None:
    """A longest dataset name and file name, in an upload's folder: within the local store's
    name limit (its temp and sidecar files included) and S3's 1,024-byte keys."""
    ids = {names.new_upload_id() for _ in range(100)}
    assert len(ids) == 100 and {len(i) for i in ids} == {names.UPLOAD_ID_LEN}
    dataset = "d" * names.DATASET_MAX
    filename = names.object_filename("f" * 500 + ".csv")
    key = keys.source_key(dataset, filename, ids.pop())
    assert len(key.encode()) <= MAX_KEY_BYTES
    assert all(len(part) <= MAX_NAME_BYTES for part in key.split("/"))
    runtime = open_runtime(tmp_path / "home")
    try:
        bucket = runtime.settings.buckets.data
        runtime.store.put(bucket, key, b"a,y\n1,2\n")
        runtime.store.put_tags(bucket, key, {"k": "v"})  # the sidecar file fits too
        assert runtime.store.get(bucket, key) == b"a,y\n1,2\n"
        assert keys.parse_source_key(key).filename == filename
    finally:
        runtime.close()
