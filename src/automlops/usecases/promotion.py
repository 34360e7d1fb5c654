"""Promotion and rollback: which version of a dataset is its champion (compare-and-swap on
the registry, so concurrent decisions never overwrite each other)."""

from __future__ import annotations

from automlops.names import check_dataset_name
from automlops.registry import ModelVersion, Registry


def promote(registry: Registry, dataset: str, version: int, reason: str) -> ModelVersion:
    """Make `version` the champion of `dataset`; AutomlopsError when it cannot be."""
    return registry.promote(check_dataset_name(dataset), version, reason)


def rollback(registry: Registry, dataset: str, reason: str) -> ModelVersion:
    """Make the previous champion of `dataset` the champion again; returns it."""
    return registry.rollback(check_dataset_name(dataset), reason)
