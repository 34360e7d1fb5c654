"""Every pipeline run and its stages, as the local worker saw them (SQLite)."""

from __future__ import annotations

import builtins
import sqlite3
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from automlops.local.sqlite_connection import connection, create_private, transaction
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
    updated_at REAL NOT NULL,
    duplicate_of TEXT,
    trigger TEXT
);
CREATE TABLE IF NOT EXISTS stages (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL,
    finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    message_id TEXT,
    PRIMARY KEY (run_id, name)
);
"""
# Columns added after the first release, with their types: added to older run logs on open.
_ADDED_COLUMNS = {
    "runs": {"duplicate_of": "TEXT", "trigger": "TEXT"},
    "stages": {"message_id": "TEXT", "heartbeat_at": "REAL"},
}
_RUN_COLUMNS = (
    "id, dataset, source, status, error, model_version, headline_metric, headline_value, note, "
    "created_at, updated_at, duplicate_of"
)


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
    # Set on the record of an upload whose bytes (and manifest) an earlier run already took.
    duplicate_of: str | None = None


class PriorState(BaseModel):
    """A run's and a stage's status before `start_stage` marked them running (None: new).

    `claimed_by` is set, and nothing was changed, when another upload event already started
    the run and it has not failed: the caller's upload is a duplicate.
    """

    run_status: str | None
    stage_status: str | None
    claimed_by: str | None = None
    # Set, and nothing changed, when another message is running this very stage right now.
    busy_with: str | None = None


def _held_back(
    prior_run: tuple[Any, ...] | None,
    prior_stage: tuple[Any, ...] | None,
    trigger: str | None,
    message_id: str | None,
    lease_since: float,
) -> PriorState | None:
    """Why a stage must not start (another upload claimed the run, or another message holds
    the stage's lease), read from the run's and the stage's rows before the change."""
    if (
        trigger is not None
        and prior_run is not None
        and prior_run[1] not in (None, trigger)
        and prior_run[0] != "failed"
    ):
        # Decided inside the transaction: two workers given the same bytes at once cannot
        # both start the run.
        return PriorState(
            run_status=prior_run[0],
            stage_status=None if prior_stage is None else prior_stage[0],
            claimed_by=prior_run[1],
        )
    if (  # checked after the claim: a duplicate upload is recorded, not dropped
        message_id is not None
        and prior_stage is not None
        and prior_stage[0] == "running"
        and prior_stage[1] not in (None, message_id)
        and (prior_stage[2] or 0) > lease_since
    ):
        return PriorState(
            run_status=None if prior_run is None else prior_run[0],
            stage_status=prior_stage[0],
            busy_with=prior_stage[1],
        )
    return None


class RunLog:
    """Runs keyed by their content-derived id; safe across processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        create_private(path)
        with connection(self.path) as db:
            db.executescript(_SCHEMA)
            for table, columns in _ADDED_COLUMNS.items():
                present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for name, kind in columns.items():
                    if name in present:
                        continue
                    try:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                    except sqlite3.OperationalError as exc:  # another process added it first
                        if "duplicate column" not in str(exc):
                            raise

    def start_stage(
        self,
        run_id: str,
        dataset: str,
        source: str | None,
        stage: str,
        *,
        trigger: str | None = None,
        message_id: str | None = None,
        lease_s: float = 0.0,
    ) -> PriorState:
        """Mark a stage as running (creating the run on its first stage).

        `trigger` names the upload event that started the run (first stage only). Returns the
        statuses before the change, so a stage that turns out to be a no-op can restore them.
        With `message_id` and `lease_s`: if another message started this stage of this run
        less than `lease_s` ago and it is still running, nothing changes and `busy_with` says
        so (a duplicate delivered while the first is at work). A redelivery of the message
        itself, after a crash, is not held back.
        """
        now = time.time()
        with transaction(self.path) as db:
            prior_run = db.execute(
                "SELECT status, trigger FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            prior_stage = db.execute(
                "SELECT status, message_id, MAX(started_at, COALESCE(heartbeat_at, 0)) "
                "FROM stages WHERE run_id = ? AND name = ?",
                (run_id, stage),
            ).fetchone()
            held = _held_back(prior_run, prior_stage, trigger, message_id, now - lease_s)
            if held is not None:
                return held  # nothing is written on this way out
            db.execute(
                "INSERT INTO runs (id, dataset, source, status, created_at, updated_at, trigger) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET status='running', "
                "error=NULL, source=COALESCE(runs.source, excluded.source), "
                "trigger=COALESCE(excluded.trigger, runs.trigger), "
                "updated_at=excluded.updated_at",
                (run_id, dataset, source, "running", now, now, trigger),
            )
            db.execute(
                "INSERT INTO stages (run_id, name, status, started_at, attempts, message_id) "
                "VALUES (?,?,?,?,1,?) "
                "ON CONFLICT(run_id, name) DO UPDATE SET status='running', started_at=?, "
                "finished_at=NULL, error=NULL, attempts=stages.attempts + 1, heartbeat_at=NULL, "
                "message_id=excluded.message_id",
                (run_id, stage, "running", now, message_id, now),
            )
        return PriorState(
            run_status=None if prior_run is None else prior_run[0],
            stage_status=None if prior_stage is None else prior_stage[0],
        )

    def renew_lease(self, run_id: str, stage: str, message_id: str) -> None:
        """Say that `message_id` is still running this stage (a heartbeat): the lease of
        `start_stage` counts from the latest renewal, so a long stage is not started twice."""
        with connection(self.path) as db:
            db.execute(
                "UPDATE stages SET heartbeat_at = ? WHERE run_id = ? AND name = ? "
                "AND message_id = ? AND status = 'running'",
                (time.time(), run_id, stage, message_id),
            )

    def run_of_trigger(self, trigger: str) -> str | None:
        """The run an upload event started or was recorded under (None if none)."""
        with connection(self.path) as db:
            row = db.execute(
                "SELECT id FROM runs WHERE trigger = ? ORDER BY created_at LIMIT 1", (trigger,)
            ).fetchone()
        return None if row is None else row[0]

    def record_duplicate(
        self,
        run_id: str,
        dataset: str,
        source: str | None,
        *,
        duplicate_of: str,
        trigger: str,
        note: str,
    ) -> None:
        """Record an upload that needed no work: an earlier run took the same bytes.

        The record is its own run (status succeeded, one skipped preprocess stage) pointing at
        the original; recording it again (a redelivered event) changes nothing.
        """
        now = time.time()
        with transaction(self.path) as db:
            original = db.execute(
                "SELECT model_version FROM runs WHERE id = ?", (duplicate_of,)
            ).fetchone()
            db.execute(
                "INSERT INTO runs (id, dataset, source, status, model_version, note, created_at, "
                "updated_at, duplicate_of, trigger) VALUES (?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(id) DO NOTHING",
                (
                    run_id,
                    dataset,
                    source,
                    "succeeded",
                    None if original is None else original[0],
                    note,
                    now,
                    now,
                    duplicate_of,
                    trigger,
                ),
            )
            db.execute(
                "INSERT INTO stages (run_id, name, status, started_at, finished_at, attempts) "
                "VALUES (?,?,?,?,?,1) ON CONFLICT(run_id, name) DO NOTHING",
                (run_id, "preprocess", "skipped", now, now),
            )

    def fail_abandoned(self, run_id: str, stage: str, error: str) -> bool:
        """Fail a run whose stage was left running or retrying (its message was given up on).

        Only a run still in that stage changes, so a late report about a finished run is
        ignored. Returns whether anything changed.
        """
        now = time.time()
        with transaction(self.path) as db:
            changed = db.execute(
                "UPDATE stages SET status='failed', finished_at=?, error=? WHERE run_id=? "
                "AND name=? AND status IN ('running', 'retrying')",
                (now, error, run_id, stage),
            ).rowcount
            if changed:
                db.execute(
                    "UPDATE runs SET status='failed', error=?, updated_at=? WHERE id=? "
                    "AND status='running'",
                    (error, now, run_id),
                )
        return bool(changed)

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
        with transaction(self.path) as db:
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

    def get(self, run_id: str) -> RunRecord | None:
        runs = self._select("WHERE id = ?", (run_id,))
        return runs[0] if runs else None

    def list(self, dataset: str | None = None, limit: int = 1000) -> list[RunRecord]:
        """Runs, newest first."""
        if dataset is None:
            return self._select("ORDER BY created_at DESC LIMIT ?", (limit,))
        return self._select("WHERE dataset = ? ORDER BY created_at DESC LIMIT ?", (dataset, limit))

    # `builtins.list`: inside the class body `list` names the method above.
    def _select(self, clause: str, params: tuple[object, ...]) -> builtins.list[RunRecord]:
        with connection(self.path) as db:
            rows = db.execute(f"SELECT {_RUN_COLUMNS} FROM runs {clause}", params).fetchall()
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
                fields = dict(zip(_RUN_COLUMNS.split(", "), row, strict=True))
                records.append(RunRecord(**fields, stages=stages))
            return records
