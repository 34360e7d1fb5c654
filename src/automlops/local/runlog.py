"""Every pipeline run and its stages, as the local worker saw them (SQLite)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from automlops.routing import STAGE_ORDER

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    source TEXT,
    status TEXT NOT NULL,
    error TEXT,
    model_version INTEGER,
    headline_metric TEXT,
    headline_value REAL,
    note TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS stages (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL,
    finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    PRIMARY KEY (run_id, name)
);
"""


class StageRecord(BaseModel):
    name: str
    status: str  # running | succeeded | failed | retrying | skipped
    duration_s: float | None
    attempts: int
    error: str | None


class RunRecord(BaseModel):
    id: str
    dataset: str
    source: str | None
    status: str  # running | succeeded | failed
    error: str | None
    model_version: int | None
    headline_metric: str | None
    headline_value: float | None
    note: str | None
    created_at: float
    updated_at: float
    stages: list[StageRecord]


class RunLog:
    """Runs keyed by their content-derived id; safe across processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
        finally:
            db.close()

    def start_stage(self, run_id: str, dataset: str, source: str | None, stage: str) -> None:
        """Mark a stage as running (creating the run on its first stage)."""
        now = time.time()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO runs (id, dataset, source, status, created_at, updated_at) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET status='running', error=NULL, "
                "source=COALESCE(runs.source, excluded.source), updated_at=excluded.updated_at",
                (run_id, dataset, source, "running", now, now),
            )
            db.execute(
                "INSERT INTO stages (run_id, name, status, started_at, attempts) "
                "VALUES (?,?,?,?,1) "
                "ON CONFLICT(run_id, name) DO UPDATE SET status='running', started_at=?, "
                "finished_at=NULL, error=NULL, attempts=stages.attempts + 1",
                (run_id, stage, "running", now, now),
            )
            db.execute("COMMIT")

    def finish_stage(
        self,
        run_id: str,
        stage: str,
        *,
        status: str,
        error: str | None = None,
        run_status: str | None = None,
        model_version: int | None = None,
        headline: tuple[str, float] | None = None,
        note: str | None = None,
    ) -> None:
        """Record a stage's outcome, and the run's when it ends here."""
        now = time.time()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE stages SET status=?, finished_at=?, error=? WHERE run_id=? AND name=?",
                (status, now, error, run_id, stage),
            )
            db.execute(
                "UPDATE runs SET updated_at=?, status=COALESCE(?, status), "
                "error=CASE WHEN ? IS NULL THEN error ELSE ? END, "
                "model_version=COALESCE(?, model_version), "
                "headline_metric=COALESCE(?, headline_metric), "
                "headline_value=COALESCE(?, headline_value), note=COALESCE(?, note) WHERE id=?",
                (
                    now,
                    run_status,
                    error if run_status == "failed" else None,
                    error,
                    model_version,
                    headline[0] if headline else None,
                    headline[1] if headline else None,
                    note,
                    run_id,
                ),
            )
            db.execute("COMMIT")

    def get(self, run_id: str) -> RunRecord | None:
        runs = self._select("WHERE id = ?", (run_id,))
        return runs[0] if runs else None

    def list(self, dataset: str | None = None, limit: int = 1000) -> list[RunRecord]:
        """Runs, newest first."""
        if dataset is None:
            return self._select("ORDER BY created_at DESC LIMIT ?", (limit,))
        return self._select("WHERE dataset = ? ORDER BY created_at DESC LIMIT ?", (dataset, limit))

    def _select(self, clause: str, params: tuple[object, ...]) -> list[RunRecord]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, dataset, source, status, error, model_version, headline_metric, "
                f"headline_value, note, created_at, updated_at FROM runs {clause}",
                params,
            ).fetchall()
            records = []
            for row in rows:
                stage_rows = db.execute(
                    "SELECT name, status, started_at, finished_at, attempts, error FROM stages "
                    "WHERE run_id = ?",
                    (row[0],),
                ).fetchall()
                order = {s.value: i for i, s in enumerate(STAGE_ORDER)}
                stages = [
                    StageRecord(
                        name=name,
                        status=status,
                        duration_s=None if end is None or start is None else round(end - start, 3),
                        attempts=attempts,
                        error=error,
                    )
                    for name, status, start, end, attempts, error in sorted(
                        stage_rows, key=lambda r: order.get(r[0], 99)
                    )
                ]
                records.append(
                    RunRecord(**dict(zip(RunRecord.model_fields, [*row, stages], strict=True)))
                )
            return records
