"""What only the SQLite queue promises, beyond the shared Queue contract
(tests/contracts/test_queue_contract.py): stale receipts are ignored, a killed consumer loses
nothing, exhausted messages are handed to their consumer, dead letters keep their id."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from automlops.local.sqlite_queue import SqliteQueue


def test_a_stale_receipt_neither_deletes_nor_dead_letters(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "q.db")
    q.send("q", "work")
    [first] = q.receive("q")
    q.change_visibility("q", first.receipt_handle, 0)
    [second] = q.receive("q", visibility_timeout_s=30)
    # The first receipt is stale: it must not touch the redelivered message.
    q.delete("q", first.receipt_handle)
    q.dead_letter("q", first, "stale")
    assert q.counts("q") == (0, 1)
    assert q.dead_letters("q") == []
    q.delete("q", second.receipt_handle)
    assert q.counts("q") == (0, 0)


def test_message_survives_a_killed_consumer(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "q.db")
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


def test_dead_letter_exhausted_hands_over_what_it_moved(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "q.db", max_receives=2)
    sent = q.send("q", "poison")
    for _ in range(2):
        [msg] = q.receive("q")
        q.record_error("q", msg.receipt_handle, f"attempt {msg.receive_count}")
        q.change_visibility("q", msg.receipt_handle, 0)
    [moved] = q.dead_letter_exhausted("q")
    assert (moved.id, moved.body, moved.source_queue) == (sent, "poison", "q")
    assert (moved.receive_count, moved.error) == (2, "attempt 2")
    assert q.dead_letter_exhausted("q") == []
    assert q.dead_letters("q") == [moved]


def test_dead_letters_keep_their_id(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "q.db")
    sent = q.send("q", "bad")
    [msg] = q.receive("q")
    q.dead_letter("q", msg, "boom")
    [dead] = q.dead_letters("q")
    assert dead.id == sent


def test_the_local_databases_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    # Messages and runs name uploads, errors and datasets: no other local user reads them.
    from automlops.local.runlog import RunLog

    (tmp_path / "old.db").write_bytes(b"")
    (tmp_path / "old.db").chmod(0o644)  # a database made before this rule is tightened too
    queue = SqliteQueue(tmp_path / "queue.db")
    queue.send("q", "body")
    RunLog(tmp_path / "runs.db")
    SqliteQueue(tmp_path / "old.db")
    files = [p for p in tmp_path.iterdir() if p.name.endswith((".db", "-wal", "-shm"))]
    assert {p.name for p in files} >= {"queue.db", "runs.db", "old.db"}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {
        p.name: "0o600" for p in files
    }
