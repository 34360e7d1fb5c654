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
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.outcome == "skipped" else "xpassed"
    row = {"test": report.nodeid, "when": report.when, "outcome": outcome}
    row["duration_s"] = round(report.duration, 3)
    path = Path(folder) / "outcomes.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
