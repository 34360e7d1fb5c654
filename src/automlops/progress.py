"""Live progress of pipeline runs for `automlops run`: a redrawn table on a terminal, plain
lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from automlops.keys import RunRef


class RunProgress:
    """Shows what each active run is doing; finished runs are printed as lines above it."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.live: Live | None = None
        self.active: dict[str, tuple[str, str, str, float]] = {}
        if self.err.isatty():
            self.console = Console(file=self.err)
            self.live = Live(self._table(), console=self.console, refresh_per_second=4)

    def __enter__(self) -> RunProgress:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.live is not None:
            self.live.stop()

    def update(self, run: RunRef, stage: str, text: str) -> None:
        """A stage reported progress (stage started, trial finished, ...)."""
        started = self.active.get(run.run_id, ("", "", "", time.monotonic()))[3]
        self.active[run.run_id] = (run.dataset, stage, text, started)
        if self.live is None:
            print(f"  [{run.dataset} {stage}] {text}", file=self.err, flush=True)
        else:
            self.live.update(self._table())

    def finished(self, run_id: str, line: str) -> None:
        """A run ended: its summary line goes to stdout, its row leaves the table."""
        self.active.pop(run_id, None)
        if self.live is None:
            print(line, file=self.out, flush=True)
        else:
            self.live.console.print(line, markup=False, highlight=False)
            self.live.update(self._table())

    def _table(self) -> Table:
        table = Table(box=None, show_header=bool(self.active), pad_edge=False)
        for column in ("dataset", "stage", "progress", "elapsed"):
            table.add_column(column)
        now = time.monotonic()
        for dataset, stage, text, started in self.active.values():
            table.add_row(dataset, stage, text, f"{now - started:.0f}s")
        return table
