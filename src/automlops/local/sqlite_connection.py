"""Connections to the local SQLite databases (the run log, the queue): one rule for opening
them and one for a write transaction.

Connections are in autocommit mode so that every transaction is explicit, and the journal is
write-ahead so that readers (the dashboard) never block the worker's writes.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another process's lock
PRIVATE = 0o600  # messages and runs name uploads, datasets and errors: the owner's only


def create_private(path: Path) -> None:
    """Create the database file `path` readable and writable by its owner only, or tighten an
    existing one to that. SQLite gives its -wal and -shm files the database file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE))
    if path.stat().st_mode & 0o777 != PRIVATE:
        path.chmod(PRIVATE)


@contextmanager
def connection(path: Path, *pragmas: str) -> Iterator[sqlite3.Connection]:
    """An open connection to `path`, closed on leaving; `pragmas` (e.g. "synchronous=NORMAL")
    are set after write-ahead journalling."""
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        for pragma in pragmas:
            db.execute(f"PRAGMA {pragma}")
        yield db
    finally:
        db.close()


@contextmanager
def transaction(path: Path, *pragmas: str) -> Iterator[sqlite3.Connection]:
    """A write transaction, taken at once (BEGIN IMMEDIATE) so that what is read inside it
    decides with no other writer in between; committed on leaving, rolled back on error."""
    with connection(path, *pragmas) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back by itself
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
