"""The model registry: versions per dataset, one champion, decisions and their reasons.

One JSON document per dataset in the model bucket, updated by compare-and-swap on its ETag, so
concurrent runs cannot lose an update or crown two champions.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from automlops import keys
from automlops.errors import ConflictError, NotFoundError, PermanentError
from automlops.ports import ObjectStore

T = TypeVar("T")
_CAS_ATTEMPTS = 50


class VersionStatus(StrEnum):
    candidate = "candidate"
    champion = "champion"
    rejected = "rejected"
    archived = "archived"


class Decision(BaseModel):
    status: VersionStatus
    reason: str
    at: str
    details: dict[str, Any] = Field(default_factory=dict)


class ModelVersion(BaseModel):
    version: int
    run_id: str
    status: VersionStatus = VersionStatus.candidate
    created_at: str
    task: str
    learner: str
    artifact_bucket: str
    artifact_key: str
    source_key: str
    source_sha256: str
    test_key: str
    endpoint: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    report_key: str | None = None
    decisions: list[Decision] = Field(default_factory=list)

    @property
    def last_reason(self) -> str | None:
        return self.decisions[-1].reason if self.decisions else None

    def decide(
        self, status: VersionStatus, reason: str, details: dict[str, Any] | None = None
    ) -> None:
        """Move to `status`, recording why and when."""
        self.status = status
        self.decisions.append(
            Decision(status=status, reason=reason, at=_now(), details=details or {})
        )


class RegistryDoc(BaseModel):
    dataset: str
    champion: int | None = None
    champion_history: list[int] = Field(default_factory=list)  # earlier champions, oldest first
    versions: list[ModelVersion] = Field(default_factory=list)

    def get(self, version: int) -> ModelVersion:
        for entry in self.versions:
            if entry.version == version:
                return entry
        raise NotFoundError(f"dataset {self.dataset!r} has no version {version}")

    def by_run(self, run_id: str) -> ModelVersion | None:
        return next((v for v in self.versions if v.run_id == run_id), None)

    def champion_version(self) -> ModelVersion | None:
        return None if self.champion is None else self.get(self.champion)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Registry:
    """Registry documents over an object store."""

    def __init__(self, store: ObjectStore, bucket: str) -> None:
        self.store = store
        self.bucket = bucket

    def read(self, dataset: str) -> RegistryDoc:
        """The dataset's registry (empty when nothing was registered yet)."""
        key = keys.registry_key(dataset)
        if self.store.head(self.bucket, key) is None:
            return RegistryDoc(dataset=dataset)
        return RegistryDoc.model_validate_json(self.store.get(self.bucket, key))

    def datasets(self) -> list[str]:
        return [
            key.removeprefix("registry/").removesuffix(".json")
            for key in self.store.list(self.bucket, "registry/")
            if key.endswith(".json")
        ]

    def update(self, dataset: str, change: Callable[[RegistryDoc], T]) -> T:
        """Apply `change` to the latest document and write it back if nobody wrote meanwhile."""
        key = keys.registry_key(dataset)
        for _ in range(_CAS_ATTEMPTS):
            info = self.store.head(self.bucket, key)
            doc = (
                RegistryDoc(dataset=dataset)
                if info is None
                else RegistryDoc.model_validate_json(self.store.get(self.bucket, key))
            )
            etag = None if info is None else info.etag
            result = change(doc)
            try:
                self.store.put_if(
                    self.bucket,
                    key,
                    doc.model_dump_json(indent=1).encode(),
                    if_match=etag,
                )
            except ConflictError:
                continue
            return result
        raise ConflictError(f"registry of {dataset!r} is too busy; gave up after retries")

    def register(self, dataset: str, entry: ModelVersion) -> ModelVersion:
        """Add a version (numbered here); a run registered before gets its existing version."""

        def change(doc: RegistryDoc) -> ModelVersion:
            existing = doc.by_run(entry.run_id)
            if existing is not None:
                return existing
            entry.version = max((v.version for v in doc.versions), default=0) + 1
            doc.versions.append(entry)
            return entry

        return self.update(dataset, change)

    def set_endpoint(self, dataset: str, version: int, endpoint: str) -> None:
        self.update(dataset, lambda doc: setattr(doc.get(version), "endpoint", endpoint))

    def promote(
        self, dataset: str, version: int, reason: str, details: dict[str, Any] | None = None
    ) -> ModelVersion:
        """Make `version` the champion; the previous champion is archived."""

        def change(doc: RegistryDoc) -> ModelVersion:
            entry = doc.get(version)
            if doc.champion == version:
                return entry
            if doc.champion is not None:
                previous = doc.get(doc.champion)
                previous.decide(VersionStatus.archived, f"replaced by version {version}")
                doc.champion_history.append(doc.champion)
            entry.decide(VersionStatus.champion, reason, details)
            doc.champion = version
            return entry

        return self.update(dataset, change)

    def reject(
        self, dataset: str, version: int, reason: str, details: dict[str, Any] | None = None
    ) -> ModelVersion:
        def change(doc: RegistryDoc) -> ModelVersion:
            entry = doc.get(version)
            if entry.status is VersionStatus.champion:
                raise PermanentError(f"version {version} is the champion; roll back instead")
            entry.decide(VersionStatus.rejected, reason, details)
            return entry

        return self.update(dataset, change)

    def rollback(self, dataset: str, reason: str = "rolled back by operator") -> ModelVersion:
        """The previous champion serves again; the current one is archived."""

        def change(doc: RegistryDoc) -> ModelVersion:
            if doc.champion is None or not doc.champion_history:
                raise PermanentError(f"dataset {dataset!r} has no earlier champion to roll back to")
            current = doc.get(doc.champion)
            current.decide(VersionStatus.archived, reason)
            restored = doc.get(doc.champion_history.pop())
            restored.decide(
                VersionStatus.champion, f"restored by rollback from version {current.version}"
            )
            doc.champion = restored.version
            return restored

        return self.update(dataset, change)

    def record_evaluation(
        self, dataset: str, version: int, metrics: dict[str, float], report_key: str
    ) -> None:
        def change(doc: RegistryDoc) -> None:
            entry = doc.get(version)
            entry.metrics = metrics
            entry.report_key = report_key

        self.update(dataset, change)
