"""The small interfaces stages see. Local and AWS adapters implement them."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from automlops.config import Settings
from automlops.events import SqsRecord


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD of an object tells."""

    bucket: str
    key: str
    size: int
    etag: str


# S3's limit on a key (UTF-8 bytes); every store accepts keys up to it, or refuses with
# PermanentError before writing anything where its own limits are lower (the directory store's
# file names).
MAX_KEY_BYTES = 1024


class ObjectStore(Protocol):
    """Buckets of immutable-by-convention objects with atomic writes.

    ETags are bare hex (no quotes); for a single write they are the MD5 of the bytes. A key
    the store cannot hold is refused with PermanentError before anything is written.
    """

    def put(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        """Write an object atomically (readers see the old or the new bytes, never a mix)."""
        ...

    def put_file(self, bucket: str, key: str, source: Path) -> ObjectInfo:
        """`put` of a local file's bytes, streamed: a big file is never held in memory.
        Atomic like `put`; its ETag need not be the MD5 where the store uploads in parts."""
        ...

    def writer(self, bucket: str, key: str) -> AbstractContextManager[BinaryIO]:
        """A new object written as a stream: what is written to the yielded file becomes the
        object when the block ends without an error, atomically like `put` (with its
        notification); nothing is stored when it raises. For outputs too big to hold, made
        piece by piece. An invalid key is refused before anything is written."""
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

    def get_tags(self, bucket: str, key: str) -> dict[str, str]:
        """An object's tags ({} when it has none); NotFoundError when it is absent."""
        ...

    def put_tags(self, bucket: str, key: str, tags: dict[str, str]) -> None:
        """Replace an object's tags (S3 allows 10); NotFoundError when it is absent."""
        ...


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
    Times may be kept in whole seconds (SQS rounds up): a message is hidden or delayed at
    least as long as asked, and 0 means at once.
    """

    def send(self, queue: str, body: str, *, delay_s: float = 0.0) -> str:
        """Send a message (visible after `delay_s`); returns its id."""
        ...

    def receive(
        self, queue: str, *, max_messages: int = 1, visibility_timeout_s: float | None = None
    ) -> list[SqsRecord]:
        """Up to `max_messages` visible messages (SQS gives at most 10), hidden for the
        visibility timeout (None: the queue's own); each delivery counts towards the queue's
        maximum receives. A message received that many times goes to the dead-letter queue
        instead of being delivered again."""
        ...

    def delete(self, queue: str, receipt_handle: str) -> None:
        """Acknowledge a received message: it is never delivered again."""
        ...

    def change_visibility(self, queue: str, receipt_handle: str, timeout_s: float) -> None:
        """Hide a received message for `timeout_s` more seconds (0: visible at once)."""
        ...

    def record_error(self, queue: str, receipt_handle: str, error: str) -> None:
        """Remember why the latest delivery of a received message failed, for dead-letter
        listings (best effort: SQS cannot annotate a message and drops it)."""
        ...

    def dead_letter(self, queue: str, message: SqsRecord, error: str) -> None:
        """Move a received message to the dead-letter queue now, with the reason (listed as
        its `error`). Takes the message, not only its receipt: SQS must send its body again.
        Its id in the dead-letter queue may be a new one."""
        ...

    def dead_letter_exhausted(self, queue: str) -> list[DeadLetter]:
        """Move visible messages already received the maximum number of times to the
        dead-letter queue and return them, so their consumer can record the failure (a queue
        that does this itself on the next receive, as SQS does, returns [])."""
        ...

    def counts(self, queue: str) -> tuple[int, int]:
        """(visible, not yet visible: in flight or delayed) message counts (approximate
        where the queue is: SQS)."""
        ...

    def dead_letters(self, queue: str) -> list[DeadLetter]:
        """The messages in `queue`'s dead-letter queue, oldest first, without consuming them
        (SQS: a message held by another consumer at that moment is not listed, and its
        `receive_count` is approximate)."""
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
