"""The reliability suite records each test's outcome beside its figures (see record())."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from reliability_support import RESULTS_ENV


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Write `outcomes.jsonl` rows: the call's outcome, or a setup that did not pass."""
    folder = os.environ.get(RESULTS_ENV)
    if not folder or not (report.when == "call" or report.outcome != "passed"):
        return
    outcome = report.outcome
    row: dict[str, object] = {"test": report.nodeid, "when": report.when}
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.outcome == "skipped" else "xpassed"
        row["reason"] = report.wasxfail
    elif report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        row["reason"] = report.longrepr[2]
    row["outcome"] = outcome
    row["duration_s"] = round(report.duration, 3)
    path = Path(folder) / "outcomes.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")


SERVED_DATASET = "mixed"


@pytest.fixture(scope="session")
def served_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace serving `mixed` (numbers and a category) with two versions, v1 and v2.

    Built by the real pipeline; v2 is then made champion so tests can switch between the two.
    """
    from reliability_support import fast_manifest, small_csv

    from automlops.local.runtime import open_runtime
    from automlops.local.worker import Worker, run_workers
    from support import upload

    home = tmp_path_factory.mktemp("served")
    runtime = open_runtime(home)
    try:
        manifest = fast_manifest(SERVED_DATASET)
        upload(runtime, manifest, "v1.csv", small_csv(200, seed=31))
        upload(runtime, manifest, "v2.csv", small_csv(200, seed=32))
        run_workers([Worker(runtime) for _ in range(2)], until_idle=True)
        doc = runtime.registry.read(SERVED_DATASET)
        assert [v.version for v in doc.versions] == [1, 2], doc
        if doc.champion != 2:
            runtime.registry.promote(SERVED_DATASET, 2, "for the reliability tests")
    finally:
        runtime.close()
    return home
