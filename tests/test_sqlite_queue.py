"""The SQLite queue keeps SQS's promises: visibility, redelivery, receive counts, DLQ."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from automlops.local.sqlite_queue import SqliteQueue


def make(tmp_path: Path, **kwargs: float) -> SqliteQueue:
    return SqliteQueue(tmp_path / "q.db", **kwargs)  # type: ignore[arg-type]


def test_received_message_is_invisible_until_deleted(tmp_path: Path) -> None:
    q = make(tmp_path, visibility_timeout_s=30)
    q.send("q", "hello")
    [msg] = q.receive("q")
    assert msg.body == "hello"
    assert msg.receive_count == 1
    assert q.receive("q") == []
    assert q.counts("q") == (0, 1)
    q.delete("q", msg.receipt_handle)
    assert q.counts("q") == (0, 0)


def test_redelivered_after_visibility_timeout_with_higher_count(tmp_path: Path) -> None:
    q = make(tmp_path)
    q.send("q", "work")
    [first] = q.receive("q", visibility_timeout_s=0.05)
    time.sleep(0.1)
    [second] = q.receive("q", visibility_timeout_s=30)
    assert second.message_id == first.message_id
    assert second.receive_count == 2
    # The first receipt is stale: deleting with it must not remove the redelivered message.
    q.delete("q", first.receipt_handle)
    assert q.counts("q") == (0, 1)
    q.delete("q", second.receipt_handle)
    assert q.counts("q") == (0, 0)


def test_message_survives_a_killed_consumer(tmp_path: Path) -> None:
    q = make(tmp_path)
    q.send("q", "survive")
    script = (
        "import os, sys; from pathlib import Path\n"
        "from automlops.local.sqlite_queue import SqliteQueue\n"
        f"q = SqliteQueue(Path({str(tmp_path / 'q.db')!r}))\n"
        "assert q.receive('q', visibility_timeout_s=0.2)\n"
        "os._exit(9)  # die without deleting, as kill -9 would\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode == 9
    assert q.receive("q") == []  # still invisible
    time.sleep(0.3)
    [again] = q.receive("q")
    assert again.body == "survive"
    assert again.receive_count == 2


def test_dead_letter_after_max_receives(tmp_path: Path) -> None:
    q = make(tmp_path, max_receives=2)
    q.send("q", "poison")
    for _ in range(2):
        [msg] = q.receive("q", visibility_timeout_s=0)
        q.change_visibility("q", msg.receipt_handle, 0)
    assert q.receive("q") == []
    [dead] = q.dead_letters("q")
    assert dead.body == "poison"
    assert dead.source_queue == "q"
    assert q.redrive("q") == 1
    [back] = q.receive("q")
    assert back.body == "poison"
    assert back.receive_count == 1


def test_explicit_dead_letter_keeps_the_error(tmp_path: Path) -> None:
    q = make(tmp_path)
    q.send("q", "bad")
    [msg] = q.receive("q")
    q.dead_letter("q", msg.receipt_handle, "boom")
    [dead] = q.dead_letters("q")
    assert dead.error == "boom"
    assert q.counts("q") == (0, 0)


def test_sqs_record_shape(tmp_path: Path) -> None:
    q = make(tmp_path)
    q.send("evaluation", '{"a": 1}')
    [msg] = q.receive("evaluation")
    record = msg.model_dump(by_alias=True)
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"].endswith(":evaluation")
    assert set(record["attributes"]) >= {"ApproximateReceiveCount", "SentTimestamp"}
    assert len(record["md5OfBody"]) == 32
