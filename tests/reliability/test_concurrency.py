"""`automlops run --workers 2` on two datasets with uploads arriving while it works: every run
completes, each distinct upload makes one version, and no reader ever sees two champions."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from reliability_support import (
    automlops_command,
    check_registry,
    check_visible_objects,
    fast_manifest,
    heavy,
    record,
    registry_docs,
    small_csv,
    subprocess_env,
)

from automlops.local.runtime import open_runtime
from decision_chain import FIRST_MODEL, check_decision_chain, promotions
from support import upload

WORKERS = 2


class RegistryWatcher:
    """Reads every registry document every few milliseconds and checks each snapshot."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.snapshots = 0
        self.max_champions = 0
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                docs = registry_docs(self.home)
            except FileNotFoundError:
                continue  # listed, then replaced by a newer version before it was opened
            for doc in docs.values():
                self.snapshots += 1
                champions = sum(v.status.value == "champion" for v in doc.versions)
                self.max_champions = max(self.max_champions, champions)
                try:
                    check_registry(doc)
                except AssertionError as exc:
                    self.problems.append(str(exc))

    def __enter__(self) -> RegistryWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _max_parallel_stages(home: Path) -> int:
    """The most stages that were running at the same moment, from the run log's timings."""
    with sqlite3.connect(home / "runs.db") as db:
        spans = db.execute(
            "SELECT started_at, finished_at FROM stages WHERE finished_at IS NOT NULL"
        ).fetchall()
    events = sorted([(s, 1) for s, _ in spans] + [(f, -1) for _, f in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_two_workers_two_datasets_uploads_in_flight(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runtime = open_runtime(home)
    first = small_csv(100, seed=51)
    try:
        upload(runtime, fast_manifest("alpha"), "a1.csv", first)
        upload(runtime, fast_manifest("beta"), "b1.csv", small_csv(100, seed=52))
    finally:
        runtime.close()

    command = automlops_command(
        "run", "--until-idle", "--workers", str(WORKERS), "--home", str(home)
    )
    started = time.monotonic()
    with RegistryWatcher(home) as watcher:
        child = subprocess.Popen(
            command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        # More uploads while the workers are busy: one new, one the same bytes as a1.csv.
        runtime = open_runtime(home)
        try:
            deadline = time.monotonic() + 60
            while not runtime.runlog.list() and time.monotonic() < deadline:
                time.sleep(0.05)
            upload(runtime, fast_manifest("beta"), "b2.csv", small_csv(100, seed=54))
            upload(runtime, fast_manifest("alpha"), "a1-again.csv", first)
        finally:
            runtime.close()
        out, err = child.communicate(timeout=300)
    elapsed = time.monotonic() - started
    assert child.returncode == 0, out.decode() + err.decode()

    assert watcher.problems == []
    assert watcher.max_champions == 1 and watcher.snapshots > 0
    runtime = open_runtime(home)
    try:
        runs = runtime.runlog.list()
        assert all(r.status == "succeeded" for r in runs), [(r.source, r.error) for r in runs]
        originals = [r for r in runs if r.duplicate_of is None]
        duplicates = [r for r in runs if r.duplicate_of is not None]
        assert len(originals) == 3 and [d.source for d in duplicates] == ["data/alpha/a1-again.csv"]
        versions = 0
        for dataset, distinct in (("alpha", 1), ("beta", 2)):
            doc = runtime.registry.read(dataset)
            check_registry(doc)
            assert len(doc.versions) == distinct and doc.champion is not None
            versions += len(doc.versions)
        for queue in runtime.settings.queues.served:
            assert runtime.queue.counts(queue) == (0, 0)
            assert runtime.queue.dead_letters(queue) == []
    finally:
        runtime.close()
    check_visible_objects(home)
    parallel = _max_parallel_stages(home)
    assert parallel == WORKERS  # both workers did work at the same time, never more
    record(
        "concurrency",
        {
            "workers": WORKERS,
            "datasets": 2,
            "uploads": 4,
            "runs_succeeded": len(runs),
            "duplicates": len(duplicates),
            "model_versions": versions,
            "registry_snapshots_checked": watcher.snapshots,
            "max_champions_seen": watcher.max_champions,
            "max_parallel_stages": parallel,
            "elapsed_s": round(elapsed, 1),
        },
    )


RACE_PROCESSES = 2
RACE_UPLOADS = 6
RACE_ROUNDS = 5 if heavy() else 1  # which interleaving happens varies: `make reliability` repeats


@pytest.mark.parametrize("round_no", range(1, RACE_ROUNDS + 1))
def test_two_processes_race_to_decide_one_dataset(tmp_path: Path, round_no: int) -> None:
    """2 processes x 2 workers on several uploads of one dataset: the decisions form one chain
    (exactly one "first model", every other promotion compared with the champion it replaced),
    whoever evaluated what."""
    home = tmp_path / "home"
    runtime = open_runtime(home)
    try:
        for index in range(RACE_UPLOADS):
            csv = small_csv(100, seed=100 * round_no + index)
            upload(runtime, fast_manifest("race"), f"r{index}.csv", csv)
    finally:
        runtime.close()

    command = automlops_command(
        "run", "--until-idle", "--workers", str(WORKERS), "--home", str(home)
    )
    children = [
        subprocess.Popen(
            command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(RACE_PROCESSES)
    ]
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, out.decode() + err.decode()

    runtime = open_runtime(home)
    try:
        runs = runtime.runlog.list()
        assert len(runs) == RACE_UPLOADS
        assert all(r.status == "succeeded" for r in runs), [(r.source, r.error) for r in runs]
        doc = runtime.registry.read("race")
    finally:
        runtime.close()
    made = promotions(doc)
    firsts = sum(d.reason.startswith(FIRST_MODEL) for _, d in made)
    # A promotion is compared when its reason names the champion it replaced (or, for the
    # first model, when it replaced none).
    uncompared = [
        version
        for version, d in made
        if not (
            (d.replaced is None and d.reason.startswith(FIRST_MODEL))
            or (d.replaced is not None and f"champion v{d.replaced} " in d.reason)
        )
    ]
    record(
        "concurrency_race",
        {
            "round": round_no,
            "processes": RACE_PROCESSES,
            "workers": WORKERS,
            "uploads": RACE_UPLOADS,
            "promotions": len(made),
            "first_model_decisions": firsts,
            "promotions_without_comparison": len(uncompared),
        },
    )
    check_registry(doc)
    assert len(doc.versions) == RACE_UPLOADS
    check_decision_chain(doc)
    assert firsts == 1 and uncompared == []
