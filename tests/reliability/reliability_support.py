"""Helpers of the reliability suite: recording results for docs/reliability.md, small data,
worker subprocesses that pause inside a stage, and checks of what a workspace shows."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl

from automlops.config import Manifest, Task
from automlops.ml.artifact import ModelArtifact
from automlops.registry import RegistryDoc, VersionStatus

RESULTS_ENV = "AUTOMLOPS_RELIABILITY_OUT"  # folder the tests write their figures to
HEAVY_ENV = "AUTOMLOPS_RELIABILITY_HEAVY"  # 1: the long versions (make reliability)
BUCKETS = ("data", "automl-data", "model-output", "model-monitoring")


def heavy() -> bool:
    """Whether the long versions run (`make reliability`), not the in-suite ones."""
    return os.environ.get(HEAVY_ENV, "") == "1"


def record(table: str, row: dict[str, Any]) -> None:
    """Append a row of measured facts to `<results>/<table>.jsonl`, tagged with the test id.

    The report generator joins rows with the tests' outcomes, so a row of a failed test shows
    as failed. Without $AUTOMLOPS_RELIABILITY_OUT (plain `make test`) nothing is written.
    """
    folder = os.environ.get(RESULTS_ENV)
    if not folder:
        return
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    nodeid = current.rsplit(" (", 1)[0]
    path = Path(folder) / f"{table}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"test": nodeid, **row}, default=str) + "\n")


def fast_manifest(dataset: str, **changes: Any) -> Manifest:
    """A manifest that trains in about a second (linear learner, 1 s budget)."""
    fields: dict[str, Any] = {
        "dataset": dataset,
        "target": "y",
        "positive": "yes",
        "task": Task.binary,
        "time_budget_s": 1,
        "learners": ["linear"],
    }
    fields.update(changes)
    return Manifest(**fields)


def small_csv(rows: int = 80, seed: int = 0) -> bytes:
    """A learnable binary table: two numbers, a category and y (yes/no)."""
    rng = random.Random(seed)
    lines = ["age,income,colour,y"]
    for _ in range(rows):
        age = rng.randint(18, 80)
        income = round(rng.uniform(10, 100), 2)
        colour = rng.choice(["red", "green", "blue"])
        score = age / 80 + income / 100 + (0.3 if colour == "red" else 0) + rng.gauss(0, 0.2)
        lines.append(f"{age},{income},{colour},{'yes' if score > 1.0 else 'no'}")
    return ("\n".join(lines) + "\n").encode()


def automlops_command(*args: str) -> list[str]:
    """The `automlops` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "automlops"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "automlops.cli", *args]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for an `automlops` child: ours, plus `extra`."""
    return {**os.environ, **extra}


def paused_worker_command(home: Path, point: str) -> list[str]:
    """A worker process over `home` that pauses at `point` (see paused_worker.py)."""
    script = Path(__file__).with_name("paused_worker.py")
    return [sys.executable, str(script), str(home), point]


class PausedProcess:
    """A child whose stderr is watched for the pause's marker line (see paused_worker.py)."""

    MARKER = "automlops: paused"

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._paused = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if line.startswith(self.MARKER):
                self._paused.set()

    def wait_paused(self, timeout_s: float) -> str:
        """The marker line, once the child has paused; AssertionError if it never does."""
        deadline = time.monotonic() + timeout_s
        while not self._paused.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = "\n".join(self.lines[-30:])
                raise AssertionError(f"child never paused (exit {self.proc.returncode}):\n{tail}")
        return next(line for line in self.lines if line.startswith(self.MARKER))

    def kill(self) -> None:
        """kill -9, and reap."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=5)


def check_visible_objects(home: Path) -> dict[str, int]:
    """Open every object a reader can see, by kind; AssertionError on any partial one.

    Returns the count of objects per bucket. Readers list and get through the store, which
    never shows temp files; a half-written file would fail to parse here.
    """
    from automlops.local.store import DirectoryStore

    store = DirectoryStore(home, list(BUCKETS))
    counts: dict[str, int] = {}
    for bucket in BUCKETS:
        keys = store.list(bucket)
        counts[bucket] = len(keys)
        for key in keys:
            data = store.get(bucket, key)
            assert data, f"{bucket}/{key} is empty"
            if key.endswith(".parquet"):
                pl.read_parquet(io.BytesIO(data))
            elif key.endswith(".json"):
                json.loads(data)
            elif key.endswith(".tar.gz"):
                ModelArtifact.from_tar_gz(data, key)
            elif key.endswith(".png"):
                assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{bucket}/{key} is not a PNG"
            elif key.endswith(".html"):
                assert data.rstrip().endswith(b"</html>"), f"{bucket}/{key} is cut short"
    return counts


def registry_docs(home: Path) -> dict[str, RegistryDoc]:
    """Every dataset's registry document as a reader sees it now."""
    folder = home / "model-output" / "registry"
    docs = {}
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        docs[path.stem] = RegistryDoc.model_validate_json(path.read_bytes())
    return docs


def check_registry(doc: RegistryDoc) -> None:
    """One document's invariants: unique versions and runs, at most one champion, agreed."""
    versions = [v.version for v in doc.versions]
    assert len(versions) == len(set(versions)), f"{doc.dataset}: repeated versions {versions}"
    runs = [v.run_id for v in doc.versions]
    assert len(runs) == len(set(runs)), f"{doc.dataset}: a run registered twice {runs}"
    champions = [v.version for v in doc.versions if v.status is VersionStatus.champion]
    assert len(champions) <= 1, f"{doc.dataset}: two champions {champions}"
    assert champions == ([] if doc.champion is None else [doc.champion]), (
        f"{doc.dataset}: champion pointer {doc.champion} vs statuses {champions}"
    )


def files_under(root: Path) -> set[Path]:
    """Every file below `root` (symlinks not followed)."""
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}
