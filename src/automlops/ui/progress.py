"""What each running stage last said, shared between the worker threads and the dashboard."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from automlops.keys import RunRef
from automlops.local.runlog import RunRecord


@dataclass(frozen=True)
class StageProgress:
    stage: str
    text: str
    at: float


class LiveProgress:
    """Thread-safe: workers write through `update`/`finished`, the dashboard reads `snapshot`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, StageProgress] = {}
        self.changes = 0  # bumps on every update: part of the dashboard's change fingerprint

    def update(self, run: RunRef, stage: object, text: str) -> None:
        """A worker's `on_progress` callback."""
        with self._lock:
            self._runs[run.run_id] = StageProgress(str(stage), text, time.time())
            self.changes += 1

    def finished(self, record: RunRecord) -> None:
        """A worker's `on_run_end` callback: the run has nothing more to say."""
        with self._lock:
            self._runs.pop(record.id, None)
            self.changes += 1

    def snapshot(self) -> dict[str, StageProgress]:
        """Run id -> its latest progress line."""
        with self._lock:
            return dict(self._runs)
