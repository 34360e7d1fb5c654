"""A 2 GB upload is refused by its size before it is read whole (make reliability only).

The file is sparse (no disk is spent) and its notification is sent as S3 would; an
`automlops run` child processes it and its peak memory is measured.
"""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

import pytest
from reliability_support import automlops_command, fast_manifest, heavy, record, subprocess_env

from automlops import keys
from automlops.events import object_created
from automlops.local.runtime import open_runtime
from automlops.manifests import save_manifest

SIZE = 2 * 1024**3


@pytest.mark.skipif(not heavy(), reason="2 GB file: make reliability only")
def test_a_2_gb_upload_is_refused_before_it_is_read(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runtime = open_runtime(home)
    try:
        limit = runtime.settings.max_upload_bytes
        assert limit < SIZE
        save_manifest(runtime.store, "data", fast_manifest("huge"))
        key = keys.source_key("huge", "huge.csv")
        path = runtime.store.path("data", key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            handle.truncate(SIZE)
        event = object_created("data", key, size=SIZE, etag="", configuration_id="upload")
        runtime.queue.send(runtime.settings.queues.events, event.model_dump_json(by_alias=True))
    finally:
        runtime.close()

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    finished = subprocess.run(
        automlops_command("run", "--until-idle", "--home", str(home)),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    peak_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    assert finished.returncode == 1  # the run failed, and said so
    runtime = open_runtime(home)
    try:
        [run] = runtime.runlog.list()
    finally:
        runtime.close()
    assert run.status == "failed" and run.error is not None
    assert f"uploads over {limit:,} bytes are refused" in run.error
    assert run.stages[0].attempts == 1
    assert peak_mb < 1024, f"the worker peaked at {peak_mb:.0f} MB"
    record(
        "huge_upload",
        {
            "size_bytes": SIZE,
            "limit_bytes": limit,
            "outcome": run.error.split(": ", 1)[1],
            "worker_peak_rss_mb": round(peak_mb),
        },
    )
