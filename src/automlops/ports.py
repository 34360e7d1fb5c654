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


@dataclass(frozen=True)
class DeadLetter:
    """A message a queue gave up on, as listings show it (`dlq list`, the dashboard)."""

    id: str
    source_queue: str  # the queue it was dead-lettered from (and is redriven to)
    body: str
    receive_count: int
    error: str | None  # why its last delivery failed, where the queue kept it
    sent_at: float | None = None  # epoch seconds, where the queue tells


class Queue(Protocol):
    """A queue with SQS semantics: at-least-once delivery and visibility timeouts.

    Every queue has a dead-letter queue beside it; queues are named by their source name and
    the dead-letter queue is reached through it (`dead_letters`, `redrive`), never by name.
    """

    def send(self, queue: str, body: str, *, delay_s: float = 0.0) -> str:
        """Send a message (visible after `delay_s`); returns its id."""
        ...

    def receive(
        self, queue: str, *, max_messages: int = 1, visibility_timeout_s: float | None = None
    ) -> list[SqsRecord]:
        """Up to `max_messages` visible messages, hidden for the visibility timeout; each
        delivery counts towards the queue's maximum receives."""
        ...

    def delete(self, queue: str, receipt_handle: str) -> None:
        """Acknowledge a received message: it is never delivered again."""
        ...

    def change_visibility(self, queue: str, receipt_handle: str, timeout_s: float) -> None:
        """Hide a received message for `timeout_s` more seconds (0: visible at once)."""
        ...

    def record_error(self, queue: str, receipt_handle: str, error: str) -> None:
        """Remember why the latest delivery of a received message failed, for dead-letter
        listings (best effort: a queue that cannot keep it may drop it)."""
        ...

    def dead_letter(self, queue: str, receipt_handle: str, error: str) -> None:
        """Move a received message to the dead-letter queue now, with the reason."""
        ...

    def dead_letter_exhausted(self, queue: str) -> list[DeadLetter]:
        """Move visible messages already received the maximum number of times to the
        dead-letter queue and return them, so their consumer can record the failure (a queue
        that does this itself on the next receive, as SQS does, returns [])."""
        ...

    def counts(self, queue: str) -> tuple[int, int]:
        """(visible, in flight) message counts (approximate where the queue is)."""
        ...

    def dead_letters(self, queue: str) -> list[DeadLetter]:
        """The messages in `queue`'s dead-letter queue, oldest first."""
        ...

    def redrive(self, queue: str, message_id: str | None = None) -> int:
        """Move `queue`'s dead letters (one by id, or all) back to it with a fresh receive
        count; returns how many moved. NotFoundError when `message_id` is not there."""
        ...


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
