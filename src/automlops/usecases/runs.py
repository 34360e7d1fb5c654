"""Runs: the pipeline runs of a workspace, newest first, as its run log records them."""

from __future__ import annotations

from automlops.local.runlog import RunLog, RunRecord
from automlops.names import check_dataset_name


def list_runs(runlog: RunLog, dataset: str | None = None, limit: int = 1000) -> list[RunRecord]:
    """Runs, newest first (only `dataset`'s when given)."""
    if dataset is not None:
        check_dataset_name(dataset)
    return runlog.list(dataset, limit=limit)
