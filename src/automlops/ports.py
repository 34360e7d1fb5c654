"""The small interfaces stages see. Local and AWS adapters implement them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from automlops.config import Settings
from automlops.events import SqsRecord


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD of an object tells."""

    bucket: str
    key: str
    size: int
    etag: str


class ObjectStore(Protocol):
    """Buckets of immutable-by-convention objects with atomic writes."""

    def put(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        """Write an object atomically (readers see the old or the new bytes, never a mix)."""
        ...

    def put_if(self, bucket: str, key: str, data: bytes, *, if_match: str | None) -> ObjectInfo:
        """Compare-and-swap: write only if the current ETag is `if_match` (None: must not exist).

        Raises ConflictError when the condition fails.
        """
        ...

    def get(self, bucket: str, key: str) -> bytes:
        """Read an object; NotFoundError when absent."""
        ...

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """Size and ETag of an object, or None when absent."""
        ...

    def local_file(self, bucket: str, key: str) -> Path | None:
        """The local file holding an object, where the store keeps objects as files (then a
        big object can be read in pieces), else None: read it with `get`."""
        ...

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        """Keys under a prefix, sorted."""
        ...

    def get_tags(self, bucket: str, key: str) -> dict[str, str]: ...

    def put_tags(self, bucket: str, key: str, tags: dict[str, str]) -> None: ...


class Queue(Protocol):
    """A queue with SQS semantics: at-least-once delivery and visibility timeouts."""

    def send(self, queue: str, body: str, *, delay_s: float = 0.0) -> str: ...

    def receive(
        self, queue: str, *, max_messages: int = 1, visibility_timeout_s: float | None = None
    ) -> list[SqsRecord]: ...

    def delete(self, queue: str, receipt_handle: str) -> None: ...

    def change_visibility(self, queue: str, receipt_handle: str, timeout_s: float) -> None: ...


class ModelHost(Protocol):
    """Makes model versions callable as endpoints."""

    def deploy(self, dataset: str, version: int, artifact_bucket: str, artifact_key: str) -> str:
        """Make a version servable; returns the endpoint name callers pass to invoke."""
        ...

    def invoke(self, endpoint: str, body: bytes, *, content_type: str, accept: str) -> bytes:
        """Call an endpoint with a request body, return the response body."""
        ...


Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


ProgressFn = Callable[[str], None]


def _no_progress(_: str) -> None:
    return None


@dataclass
class Ports:
    """Everything a stage may touch."""

    store: ObjectStore
    queue: Queue
    host: ModelHost
    settings: Settings
    clock: Clock = utc_now
    progress: ProgressFn = field(default=_no_progress)
