"""A durable queue in SQLite with SQS semantics.

At-least-once delivery: a received message stays in the table, invisible until its visibility
timeout passes, and is only gone once deleted with the receipt handle of its latest receive.
A message received more than `max_receives` times moves to `<queue>-dlq`, where it can be
listed and redriven.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from automlops.errors import NotFoundError
from automlops.events import SqsRecord, md5_hex
from automlops.local import sqlite_connection
from automlops.ports import DeadLetter

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    first_received_at REAL,
    source_queue TEXT,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (queue, visible_at);
"""


# With write-ahead logging, NORMAL survives a killed process (what the crash tests do); only a
# power cut may lose the last commits, and it spares an fsync per send.
_SYNCHRONOUS = "synchronous=NORMAL"


def dlq_name(queue: str) -> str:
    return f"{queue}-dlq"


@dataclass(frozen=True)
class QueuedMessage:
    """A row of the queue, for listings (DLQ pages, `dlq list`)."""

    id: str
    queue: str
    body: str
    sent_at: float
    receive_count: int
    source_queue: str | None
    last_error: str | None


class SqliteQueue:
    """Queues in one SQLite file; safe across threads and processes."""

    def __init__(
        self,
        path: Path,
        *,
        visibility_timeout_s: float = 30.0,
        max_receives: int = 4,
        region: str = "local",
    ) -> None:
        self.path = path
        self.visibility_timeout_s = visibility_timeout_s
        self.max_receives = max_receives
        self.region = region
        sqlite_connection.create_private(path)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite_connection.connection(self.path, _SYNCHRONOUS)

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite_connection.transaction(self.path, _SYNCHRONOUS)

    def send(self, queue: str, body: str, *, delay_s: float = 0.0) -> str:
        """Enqueue a message; returns its id."""
        message_id = str(uuid.uuid4())
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO messages (id, queue, body, sent_at, visible_at) VALUES (?,?,?,?,?)",
                (message_id, queue, body, now, now + delay_s),
            )
        return message_id

    def receive(
        self, queue: str, *, max_messages: int = 1, visibility_timeout_s: float | None = None
    ) -> list[SqsRecord]:
        """Take up to `max_messages` visible messages and hide them for the visibility timeout."""
        timeout = (
            self.visibility_timeout_s if visibility_timeout_s is None else visibility_timeout_s
        )
        now = time.time()
        records: list[SqsRecord] = []
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id, body, sent_at, receive_count, first_received_at FROM messages "
                "WHERE queue = ? AND visible_at <= ? ORDER BY visible_at, sent_at LIMIT ?",
                (queue, now, max_messages),
            ).fetchall()
            for message_id, body, sent_at, count, first_received in rows:
                if count >= self.max_receives:
                    # Received (and not deleted) too often: dead-letter instead of delivering.
                    db.execute(
                        "UPDATE messages SET queue = ?, source_queue = ?, visible_at = ?, "
                        "receipt = NULL WHERE id = ?",
                        (dlq_name(queue), queue, now, message_id),
                    )
                    continue
                receipt = f"{message_id}:{uuid.uuid4().hex}"
                db.execute(
                    "UPDATE messages SET visible_at = ?, receive_count = receive_count + 1, "
                    "receipt = ?, first_received_at = COALESCE(first_received_at, ?) WHERE id = ?",
                    (now + timeout, receipt, now, message_id),
                )
                records.append(
                    SqsRecord(
                        messageId=message_id,
                        receiptHandle=receipt,
                        body=body,
                        attributes={
                            "ApproximateReceiveCount": str(count + 1),
                            "SentTimestamp": str(int(sent_at * 1000)),
                            "ApproximateFirstReceiveTimestamp": str(
                                int((first_received or now) * 1000)
                            ),
                        },
                        md5OfBody=md5_hex(body),
                        eventSourceARN=f"arn:aws:sqs:{self.region}:000000000000:{queue}",
                        awsRegion=self.region,
                    )
                )
        return records

    def delete(self, queue: str, receipt_handle: str) -> None:
        """Delete a received message. A stale receipt (the message was redelivered) is ignored."""
        with self._transaction() as db:
            db.execute(
                "DELETE FROM messages WHERE queue = ? AND receipt = ?", (queue, receipt_handle)
            )

    def change_visibility(self, queue: str, receipt_handle: str, timeout_s: float) -> None:
        """Make a received message visible again after `timeout_s` (0: at once)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE messages SET visible_at = ? WHERE queue = ? AND receipt = ?",
                (time.time() + timeout_s, queue, receipt_handle),
            )

    def record_error(self, queue: str, receipt_handle: str, error: str) -> None:
        """Remember why the latest delivery failed (shown in DLQ listings)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE messages SET last_error = ? WHERE queue = ? AND receipt = ?",
                (error, queue, receipt_handle),
            )

    def dead_letter(self, queue: str, message: SqsRecord, error: str) -> None:
        """Move a received message to the dead-letter queue at once (it keeps its id). A stale
        receipt (the message was redelivered) is ignored, as by `delete`."""
        with self._transaction() as db:
            db.execute(
                "UPDATE messages SET queue = ?, source_queue = ?, last_error = ?, receipt = NULL, "
                "visible_at = ? WHERE queue = ? AND receipt = ?",
                (dlq_name(queue), queue, error, time.time(), queue, message.receipt_handle),
            )

    def dead_letter_exhausted(self, queue: str) -> list[DeadLetter]:
        """Move visible messages already received `max_receives` times to the DLQ; return them.

        `receive` does the same silently; a consumer that calls this first learns which
        messages gave up without an answer (their consumer died each time), so it can record
        the failure where people look (the run log).
        """
        now = time.time()
        query = (
            "SELECT id, queue, body, sent_at, receive_count, source_queue, last_error "
            "FROM messages WHERE queue = ? AND visible_at <= ? AND receive_count >= ?"
        )
        with self._connect() as db:
            if db.execute(query, (queue, now, self.max_receives)).fetchone() is None:
                return []  # the usual case, without taking the write lock
        with self._transaction() as db:
            rows = db.execute(query, (queue, now, self.max_receives)).fetchall()
            for row in rows:
                db.execute(
                    "UPDATE messages SET queue = ?, source_queue = ?, visible_at = ?, "
                    "receipt = NULL WHERE id = ?",
                    (dlq_name(queue), queue, now, row[0]),
                )
        return [_dead_letter(QueuedMessage(*row), queue) for row in rows]

    def counts(self, queue: str) -> tuple[int, int]:
        """(visible, in flight) message counts of a queue."""
        now = time.time()
        with self._connect() as db:
            visible, in_flight = db.execute(
                "SELECT COALESCE(SUM(visible_at <= ?), 0), COALESCE(SUM(visible_at > ?), 0) "
                "FROM messages WHERE queue = ?",
                (now, now, queue),
            ).fetchone()
        return int(visible), int(in_flight)

    def list_messages(self, queue: str) -> list[QueuedMessage]:
        """All messages of a queue, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, queue, body, sent_at, receive_count, source_queue, last_error "
                "FROM messages WHERE queue = ? ORDER BY sent_at",
                (queue,),
            ).fetchall()
        return [QueuedMessage(*row) for row in rows]

    def dead_letters(self, queue: str) -> list[DeadLetter]:
        """The messages in `queue`'s dead-letter queue, oldest first."""
        return [_dead_letter(m, queue) for m in self.list_messages(dlq_name(queue))]

    def redrive(self, queue: str, message_id: str | None = None) -> int:
        """Move `queue`'s dead letters (one, or all) back to it with a fresh receive count."""
        dlq = dlq_name(queue)
        now = time.time()
        with self._transaction() as db:
            if message_id is None:
                cursor = db.execute(
                    "UPDATE messages SET queue = ?, receive_count = 0, visible_at = ?, "
                    "receipt = NULL WHERE queue = ?",
                    (queue, now, dlq),
                )
            else:
                cursor = db.execute(
                    "UPDATE messages SET queue = ?, receive_count = 0, visible_at = ?, "
                    "receipt = NULL WHERE queue = ? AND id = ?",
                    (queue, now, dlq, message_id),
                )
                if cursor.rowcount == 0:
                    raise NotFoundError(f"no message {message_id} in {dlq}")
            return cursor.rowcount


def _dead_letter(message: QueuedMessage, queue: str) -> DeadLetter:
    return DeadLetter(
        id=message.id,
        source_queue=message.source_queue or queue,
        body=message.body,
        receive_count=message.receive_count,
        error=message.last_error,
        sent_at=message.sent_at,
    )
