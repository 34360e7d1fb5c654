"""Long names at every length from 200 to 300 bytes (issue 14, item 6).

Dataset names through `automlops upload` and the dashboard's form, file names through the
form, and object keys put straight into the data bucket (each such put is an upload event the
workers then process): each is refused cleanly or works. Whatever was stored, the dashboard's
pages answer without a server error and no store operation raises a bare OSError
(ENAMETOOLONG once came out of the local store's sidecar and temp files).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from reliability_support import fast_manifest, record, small_csv
from typer.testing import CliRunner

from automlops import keys
from automlops.cli import app as cli_app
from automlops.errors import PermanentError
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.local.worker import Worker
from automlops.manifests import save_manifest
from automlops.ui.up import build_app
from support import upload

LENGTHS = range(200, 301)
PAGES = ("/ui/", "/ui/models", "/ui/drift", "/ui/api/state", "/ui/runs", "/ui/dlq")
DATASET = "longfiles"  # a valid dataset whose uploads carry the long file names


def _name(length: int, stem: str = "n") -> str:
    """An ASCII name of exactly `length` bytes (a valid dataset name but for its length)."""
    return (stem + "x" * length)[:length]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A workspace with one trained dataset, then every long key put straight into it."""
    root = tmp_path_factory.mktemp("long-names")
    runtime = open_runtime(root)
    try:
        upload(runtime, fast_manifest(DATASET), "first.csv", small_csv(120, seed=5))
        Worker(runtime).run_until_idle()
    finally:
        runtime.close()
    yield root


def _csrf(client: TestClient) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/ui/upload").text)
    assert found, "no CSRF token on /ui/upload"
    return found.group(1)


def _data_keys(runtime: LocalRuntime) -> set[str]:
    return set(runtime.store.list(runtime.settings.buckets.data, "data/"))


def test_cli_refuses_long_dataset_names_cleanly(home: Path, tmp_path: Path) -> None:
    """`automlops upload --dataset <200..300 bytes>`: exit 2 with the rule, no traceback."""
    source = tmp_path / "small.csv"
    source.write_bytes(small_csv(40, seed=1))
    runner = CliRunner()
    for length in LENGTHS:
        result = runner.invoke(
            cli_app, ["upload", str(source), "--dataset", _name(length), "--home", str(home)]
        )
        assert result.exit_code != 0, (length, result.output)
        assert isinstance(result.exception, SystemExit | None), (length, result.exception)
        assert "Traceback" not in result.output and "dataset name" in result.output, length
    runtime = open_runtime(home)
    try:
        assert not any(len(k.split("/")[1]) >= 200 for k in _data_keys(runtime))
    finally:
        runtime.close()


def test_form_refuses_long_dataset_names_and_cuts_long_file_names(home: Path) -> None:
    """The dashboard form: a 200..300-byte dataset name is a 4xx page; a file name of that
    length is stored under its cut, safe name (or refused), never a 5xx."""
    runtime = open_runtime(home)
    try:
        client = TestClient(build_app(runtime), base_url="http://testserver")
        token = _csrf(client)
        before = _data_keys(runtime)
        for length in LENGTHS:
            refused = client.post(
                "/ui/upload",
                data={"csrf_token": token, "dataset": _name(length), "target": "y"},
                files={"file": ("a.csv", small_csv(40, seed=2), "text/csv")},
                follow_redirects=False,
            )
            assert 400 <= refused.status_code < 500, (length, refused.status_code)
        assert _data_keys(runtime) == before
        for length in LENGTHS:
            stored = client.post(
                "/ui/upload",
                data={"csrf_token": token, "dataset": DATASET, "target": "y"},
                files={"file": (_name(length - 4, "f") + ".csv", small_csv(40, seed=3))},
                follow_redirects=False,
            )
            assert stored.status_code in (303, 400, 413), (length, stored.status_code)
        assert all(len(k.encode()) <= 1024 for k in _data_keys(runtime))
    finally:
        runtime.close()


def test_long_object_keys_are_refused_or_processed(home: Path) -> None:
    """Keys put straight into the data bucket, with a dataset or a file name of 200..300
    bytes: the store takes them or refuses them with PermanentError (never OSError), the
    workers process every event without raising, and the dashboard keeps answering."""
    runtime = open_runtime(home)
    stored = refused = 0
    data = small_csv(120, seed=5)  # the trained upload's bytes: runs are duplicates, no training
    try:
        bucket = runtime.settings.buckets.data
        for length in LENGTHS:
            long_dataset = _name(length)
            for key in (
                keys.source_key(long_dataset, "x.csv"),
                keys.source_key(DATASET, _name(length - 4, "f") + ".csv"),
            ):
                try:
                    runtime.store.put(bucket, key, data)
                    stored += 1
                except PermanentError:
                    refused += 1
            try:  # a manifest beside it, as a crafted upload might bring
                save_manifest(runtime.store, bucket, fast_manifest(DATASET))
                runtime.store.put(bucket, keys.manifest_key(long_dataset), b"{}")
            except PermanentError:
                pass
        assert stored and refused  # both sides of the 245-byte name limit were exercised
        Worker(runtime).run_until_idle()
        client = TestClient(build_app(runtime), base_url="http://testserver")
        statuses = []
        for page in PAGES:
            response = client.get(page)
            statuses.append(response.status_code)
            assert response.status_code == 200, (page, response.status_code, response.text[:300])
        for length in (200, 245, 300):  # a page of a name over the rule: 4xx, not 5xx
            response = client.get(f"/ui/models/{_name(length)}")
            statuses.append(response.status_code)
            assert 400 <= response.status_code < 500, (length, response.status_code)
        runs = runtime.runlog.list(limit=1000)
        trained_long = [r for r in runs if len(r.dataset) >= 200 and r.status != "failed"]
        assert trained_long == [], trained_long[:3]  # a dataset name over the rule never trains
        # No store operation failed with an OS error (ENAMETOOLONG) in any stage.
        errors = [r.error or "" for r in runs]
        for queue in runtime.settings.queues.served:
            errors += [letter.error or "" for letter in runtime.queue.dead_letters(queue)]
        assert not [e for e in errors if "Errno" in e or "OSError" in e], errors[:3]
    finally:
        runtime.close()
    record(
        "long_names",
        {
            "lengths": "200-300 bytes",
            "keys_stored": stored,
            "refused": refused,
            "pages": len(statuses),
            "server_errors": sum(status >= 500 for status in statuses),
        },
    )
