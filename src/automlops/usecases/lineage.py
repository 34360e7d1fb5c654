"""Lineage: how a model version came to be (upload, splits, training, artifact, reports,
decisions). The assembly lives in `automlops.lineage`; this is its entry point for front ends."""

from __future__ import annotations

from typing import Any

from automlops.config import Settings
from automlops.names import check_dataset_name
from automlops.ports import ObjectStore


def trace(store: ObjectStore, settings: Settings, dataset: str, version: int) -> dict[str, Any]:
    """Everything known about `version` of `dataset`; AutomlopsError when it is unknown."""
    from automlops.lineage import trace_version  # the ML stack, only when tracing

    return trace_version(store, settings, check_dataset_name(dataset), version)
