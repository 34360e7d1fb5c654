"""Models: each dataset's versions as the registry holds them, and the primary metric that
headlines them."""

from __future__ import annotations

from dataclasses import dataclass

from automlops.names import check_dataset_name
from automlops.registry import ModelVersion, Registry


@dataclass(frozen=True)
class DatasetModels:
    """One dataset's registry: versions oldest first, the champion, what a rollback restores."""

    dataset: str
    champion: int | None
    rollback_to: int | None
    versions: list[ModelVersion]


def dataset_models(registry: Registry, dataset: str) -> DatasetModels:
    """The versions of one dataset (none when it has no registry yet)."""
    doc = registry.read(check_dataset_name(dataset))
    return DatasetModels(
        dataset=dataset,
        champion=doc.champion,
        rollback_to=doc.champion_history[-1] if doc.champion_history else None,
        versions=list(doc.versions),
    )


def list_models(registry: Registry, dataset: str | None = None) -> list[DatasetModels]:
    """Every registered dataset's versions, by dataset name (or only `dataset`'s)."""
    names = [dataset] if dataset is not None else registry.datasets()
    return [dataset_models(registry, name) for name in names]


def primary_metric(task: str | None) -> str | None:
    """The metric a task's models are compared on (None for an unknown task)."""
    from automlops.ml.evaluation.metrics import PRIMARY_METRIC

    return PRIMARY_METRIC.get(task or "")


def headline(version: ModelVersion) -> tuple[str, float] | None:
    """A version's primary metric and its value, when it was measured."""
    metric = primary_metric(version.task)
    if metric is None or metric not in version.metrics:
        return None
    return metric, version.metrics[metric]
