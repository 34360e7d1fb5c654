"""The model registry: versions per dataset, one champion, decisions and their reasons.

One JSON document per dataset in the model bucket, updated by compare-and-swap on its ETag, so
concurrent runs cannot lose an update or crown two champions. An evaluation's decision is a
second compare-and-swap, on the champion: it lands only if the champion is still the one the
candidate was compared with (`decide`), so the decisions of a dataset form one chain whatever
the number of workers and processes.
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
    # For a promotion: the champion it replaced (None: there was none). Read in the same
    # compare-and-swap that crowned this version, so it is the champion at that moment.
    replaced: int | None = None


class EvaluationOutcome(BaseModel):
    """What an evaluation concluded about a candidate, recorded in one registry update."""

    metrics: dict[str, float]
    report_key: str
    promote: bool
    reason: str
    details: dict[str, Any] = Field(default_factory=dict)


class ChampionChanged(ConflictError):
    """The champion is no longer the one the candidate was compared with: compare again."""

    def __init__(self, dataset: str, compared_with: int | None, champion: int | None) -> None:
        self.dataset = dataset
        self.compared_with = compared_with
        self.champion = champion
        seen = "no champion" if compared_with is None else f"champion v{compared_with}"
        now = "none" if champion is None else f"v{champion}"
        super().__init__(
            f"{dataset!r}: the candidate was compared with {seen}, the champion is now {now}"
        )


class ModelVersion(BaseModel):
    version: int
    run_id: str
    status: VersionStatus = VersionStatus.candidate
    created_at: str
    task: str
    # The target column the version predicts; None for versions registered before it was
    # recorded (their artifact's metadata says it).
    target: str | None = None
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
        self,
        status: VersionStatus,
        reason: str,
        details: dict[str, Any] | None = None,
        *,
        replaced: int | None = None,
    ) -> None:
        """Move to `status`, recording why and when."""
        self.status = status
        self.decisions.append(
            Decision(
                status=status, reason=reason, at=_now(), details=details or {}, replaced=replaced
            )
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

    def crown(
        self, version: int, reason: str, details: dict[str, Any] | None = None
    ) -> ModelVersion:
        """Make `version` the champion, archiving the current one (a no-op if it already is)."""
        entry = self.get(version)
        if self.champion == version:
            return entry
        previous = self.champion
        if previous is not None:
            self.get(previous).decide(VersionStatus.archived, f"replaced by version {version}")
            self.champion_history.append(previous)
        entry.decide(VersionStatus.champion, reason, details, replaced=previous)
        self.champion = version
        return entry


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
        """Make `version` the champion, whatever the champion is (an operator's decision);
        the previous champion is archived. Evaluations use `decide`."""
        return self.update(dataset, lambda doc: doc.crown(version, reason, details))

    def decide(
        self,
        dataset: str,
        version: int,
        outcome: EvaluationOutcome,
        *,
        compared_with: int | None,
    ) -> ModelVersion:
        """Record an evaluation and its decision, if the champion is still `compared_with`.

        One compare-and-swap: the metrics, the report and the promotion or rejection land
        together, and only while the champion is the one the candidate was compared with
        (None: there was no champion, so "first model" holds only if there is still none).
        Otherwise ChampionChanged, and nothing is written: the caller compares again. A
        candidate an operator crowned meanwhile keeps its status; only its evaluation is added.
        """

        def change(doc: RegistryDoc) -> ModelVersion:
            entry = doc.get(version)
            if doc.champion not in (compared_with, version):
                raise ChampionChanged(dataset, compared_with, doc.champion)
            entry.metrics = outcome.metrics
            entry.report_key = outcome.report_key
            if doc.champion == version:
                return entry
            if outcome.promote:
                return doc.crown(version, outcome.reason, outcome.details)
            entry.decide(VersionStatus.rejected, outcome.reason, outcome.details)
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
