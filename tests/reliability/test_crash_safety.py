"""kill -9 inside every stage: nothing lost, nothing doubled, nothing half-written visible.

One upload goes through a chain of worker processes; each pauses at a point inside a stage
(paused_worker.py wraps the stage and the store's notification from outside the product) and
is killed with SIGKILL there. The next process gets the killed one's message again after the
visibility timeout and carries on; a last `automlops run` finishes the run. The
points are chosen where a crash hurts most: after a stage's output is durable but before the
notification that triggers the next stage, and between a registry write and the next one.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from reliability_support import (
    PausedProcess,
    automlops_command,
    check_registry,
    check_visible_objects,
    fast_manifest,
    paused_worker_command,
    record,
    registry_docs,
    small_csv,
    subprocess_env,
)

from automlops.local.runtime import open_runtime
from automlops.local.worker import Worker
from automlops.registry import VersionStatus
from support import upload

DATASET = "crash"
VISIBILITY_S = "0.5"
# (stage, pause point, what is durable when the process dies there)
KILL_POINTS = [
    (
        "preprocess",
        "preprocess@schema.json",
        "splits, transform and schema.json written; train never notified",
    ),
    (
        "train",
        "train@model.tar.gz",
        "model.tar.gz written; deploy never notified",
    ),
    (
        "deploy",
        f"deploy@registry/{DATASET}.json",
        "version registered as candidate; not hosted, no evaluation queued",
    ),
    (
        "evaluate",
        f"evaluate@registry/{DATASET}.json",
        "all report files and the metrics in the registry written; no decision yet",
    ),
]


def test_kill_9_inside_every_stage_loses_and_doubles_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runtime = open_runtime(home)
    upload(runtime, fast_manifest(DATASET), "crash.csv", small_csv(120))
    runtime.close()
    env = {"AUTOMLOPS_VISIBILITY_TIMEOUT": VISIBILITY_S}
    command = automlops_command("run", "--until-idle", "--home", str(home))

    seen: list[dict[str, object]] = []
    for stage, point, durable in KILL_POINTS:
        child = PausedProcess(paused_worker_command(home, point), subprocess_env(**env))
        started = time.monotonic()
        marker = child.wait_paused(timeout_s=120)
        child.kill()
        assert child.proc.returncode == -9
        # What any reader sees right after the crash: complete objects only, a sane registry.
        counts = check_visible_objects(home)
        docs = registry_docs(home)
        for doc in docs.values():
            check_registry(doc)
        versions = sum(len(doc.versions) for doc in docs.values())
        assert versions <= 1
        seen.append(
            {
                "stage": stage,
                "point": point,
                "durable": durable,
                "marker": marker,
                "objects": counts,
                "versions": versions,
                "to_pause_s": round(time.monotonic() - started, 2),
            }
        )

    finished = subprocess.run(
        command, env=subprocess_env(**env), capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    # The run the last kill interrupted says that it resumes, and where.
    assert f"[{DATASET} evaluate] resumed" in finished.stderr, finished.stderr

    runtime = open_runtime(home)
    try:
        [run] = runtime.runlog.list()
        assert run.status == "succeeded", run
        attempts = {s.name: s.attempts for s in run.stages}
        doc = runtime.registry.read(DATASET)
        check_registry(doc)
        [version] = doc.versions
        assert version.status is VersionStatus.champion and version.report_key
        for queue in runtime.settings.queues.served:
            assert runtime.queue.counts(queue) == (0, 0)
            assert runtime.queue.dead_letters(queue) == []
    finally:
        runtime.close()
    check_visible_objects(home)
    for row in seen:
        # Every killed stage ran again on the redelivered message.
        assert attempts[str(row["stage"])] >= 2, (row, attempts)
        record(
            "crash",
            {
                **row,
                "attempts": attempts[str(row["stage"])],
                "runs": 1,
                "succeeded": 1,
                "lost": 0,
                "doubled": len(doc.versions) - 1,
            },
        )


def test_kill_9_during_a_write_leaves_the_old_object_or_nothing(tmp_path: Path) -> None:
    """A write killed between its temp file and the rename: readers never see a part of it."""
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        from automlops.local.store import DirectoryStore
        store = DirectoryStore(Path({str(tmp_path)!r}), ["b"])
        store.put("b", "k.bin", b"old" * 1000)
        def stall(fd):  # called with the new bytes in the temp file, before the rename
            print("writing", flush=True)
            time.sleep(60)
        os.fsync = stall
        store.put("b", "k.bin", b"new" * 1_000_000)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait()
    from automlops.local.store import DirectoryStore

    store = DirectoryStore(tmp_path, ["b"])
    assert store.list("b") == ["k.bin"]  # the temp file is never listed
    assert store.get("b", "k.bin") == b"old" * 1000
    leftovers = [p.name for p in (tmp_path / "b").iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1  # there was a partial write, and it stayed invisible
    record("crash_write", {"killed": "between temp file and rename", "visible": "old bytes"})


class _Killed(BaseException):
    """What a worker sees of kill -9 or the OOM killer: nothing after it runs."""


def test_a_message_that_kills_its_worker_every_time_fails_its_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deliveries that never finish end in the DLQ, and the run log says the run failed."""
    from automlops import stages
    from automlops.routing import Stage
    from automlops.stages import StageSpec

    def die(record: object, ports: object) -> None:
        raise _Killed

    real = stages.STAGES[Stage.train]
    monkeypatch.setitem(stages.STAGES, Stage.train, StageSpec(identify=real.identify, run=die))
    runtime = open_runtime(tmp_path / "home")
    try:
        runtime.queue.visibility_timeout_s = 0.0  # redeliver at once
        upload(runtime, fast_manifest(DATASET), "c.csv", small_csv(60))
        worker = Worker(runtime)
        assert worker.step()  # preprocess
        deaths = 0
        for _ in range(runtime.settings.max_receives):
            with pytest.raises(_Killed):
                worker.step()
            deaths += 1
            [run] = runtime.runlog.list()
            assert run.status == "running"  # nobody was left to say otherwise
        assert not worker.step()  # the queue gives up; the worker records it
        [run] = runtime.runlog.list()
        assert run.status == "failed"
        assert run.error is not None and f"gave up after {deaths} deliveries" in run.error
        queue = runtime.settings.queues.events
        [dead] = runtime.queue.dead_letters(queue)
        assert dead.id in run.error
        assert [s.status for s in run.stages] == ["succeeded", "failed"]
        record("crash_dlq", {"deliveries": deaths, "run_status": run.status, "dlq_messages": 1})
    finally:
        runtime.close()
