"""Promotion and rollback: which version of a dataset is its champion (compare-and-swap on
the registry, so concurrent decisions never overwrite each other)."""

from __future__ import annotations

from automlops.names import check_dataset_name
from automlops.registry import ModelVersion, Registry


def promote(registry: Registry, dataset: str, version: int, reason: str) -> ModelVersion:
    """Make `version` the champion of `dataset`; AutomlopsError when it cannot be, InvalidArtifact
    when its model file fails the checks deploy makes (a version registered before deploy
    checked artifacts, or whose file was replaced since, must not reach serving)."""
    from automlops.ml.artifact_probe import checked_artifact  # a child process: only here

    entry = registry.read(check_dataset_name(dataset)).get(version)
    checked_artifact(
        registry.store.get(entry.artifact_bucket, entry.artifact_key), entry.artifact_key
    )
    return registry.promote(dataset, version, reason)


def rollback(registry: Registry, dataset: str, reason: str) -> ModelVersion:
    """Make the previous champion of `dataset` the champion again; returns it."""
    return registry.rollback(check_dataset_name(dataset), reason)
