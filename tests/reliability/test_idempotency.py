"""The same event twice, the same bytes twice (same or other name): one run's worth of work
and one model version, the later uploads recorded as duplicates. Changed bytes: a new run."""

from __future__ import annotations

import json
from pathlib import Path

from reliability_support import check_registry, fast_manifest, record, small_csv
from typer.testing import CliRunner

from automlops.cli import app
from automlops.local.runtime import open_runtime
from automlops.local.worker import Worker, run_workers
from support import upload

RUN_FIELDS = {"id", "dataset", "source", "status", "error", "stages", "model_version"}


def test_duplicates_are_recorded_and_do_no_work(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runtime = open_runtime(home)
    try:
        manifest = fast_manifest("dup")
        data = small_csv(80, seed=21)
        upload(runtime, manifest, "a.csv", data)
        events = runtime.settings.queues.events
        # At-least-once delivery: the notification arrives twice.
        [message] = runtime.queue.receive(events, visibility_timeout_s=0)
        runtime.queue.send(events, message.body)
        upload(runtime, manifest, "c.csv", small_csv(80, seed=22))  # changed bytes
        finished: list = []
        workers = [Worker(runtime, on_run_end=finished.append) for _ in range(2)]
        run_workers(workers, until_idle=True)

        upload(runtime, manifest, "a.csv", data)  # the same file uploaded again
        upload(runtime, manifest, "b.csv", data)  # the same bytes under another name
        run_workers(workers, until_idle=True)

        runs = runtime.runlog.list("dup")
        originals = [r for r in runs if r.duplicate_of is None]
        duplicates = [r for r in runs if r.duplicate_of is not None]
        assert len(originals) == 2 and all(r.status == "succeeded" for r in originals)
        first = next(r for r in originals if r.source == "data/dup/a.csv")
        assert sorted(r.source or "" for r in duplicates) == ["data/dup/a.csv", "data/dup/b.csv"]
        for duplicate in duplicates:
            assert duplicate.duplicate_of == first.id
            assert duplicate.status == "succeeded"
            assert duplicate.model_version == first.model_version
            assert [(s.name, s.status) for s in duplicate.stages] == [("preprocess", "skipped")]
        # The first run did its work once: the event delivered twice was either dropped as a
        # duplicate of the delivery at work (two workers) or found preprocess done.
        attempts = {s.name: s.attempts for s in first.stages}
        assert attempts.pop("preprocess") in (1, 2)
        assert attempts == {"train": 1, "deploy": 1, "evaluate": 1}
        doc = runtime.registry.read("dup")
        check_registry(doc)
        assert len(doc.versions) == 2  # one per distinct content
        assert len(finished) == 4  # every upload was announced as finished, once
    finally:
        runtime.close()

    result = CliRunner().invoke(app, ["runs", "--json", "--home", str(home)])
    assert result.exit_code == 0, result.output
    items = json.loads(result.output)
    assert all(set(item) >= RUN_FIELDS for item in items)
    assert sum(item["duplicate_of"] == first.id for item in items) == 2
    record(
        "idempotency",
        {
            "uploads": 4,
            "deliveries": 5,
            "runs_with_work": len(originals),
            "duplicates_recorded": len(duplicates),
            "model_versions": len(doc.versions),
        },
    )
