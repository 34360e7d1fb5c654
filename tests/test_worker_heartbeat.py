"""A stage that runs longer than the queue's visibility timeout is run once, not twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from automlops.config import Manifest, Settings
from automlops.events import S3EventRecord
from automlops.local.runlog import RunLog
from automlops.local.runtime import open_runtime
from automlops.local.worker import Worker
from automlops.ports import Ports
from automlops.routing import Stage
from automlops.stages import STAGES, StageResult, StageSpec, preprocess
from support import upload

VISIBILITY_S = 0.6
STAGE_S = 2.5  # four visibility timeouts


def test_a_stage_longer_than_the_visibility_timeout_is_not_run_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = open_runtime(tmp_path / "home", settings=Settings(visibility_timeout_s=VISIBILITY_S))
    runs: list[float] = []

    def slow(record: S3EventRecord, ports: Ports) -> StageResult:
        runs.append(time.monotonic())
        time.sleep(STAGE_S)
        return StageResult(run=preprocess.identify(record, ports), note="slow")

    monkeypatch.setitem(
        STAGES, Stage.preprocess, StageSpec(identify=STAGES[Stage.preprocess].identify, run=slow)
    )
    try:
        upload(runtime, Manifest(dataset="slow", target="y"), "slow.csv", b"x,y\n1,0\n2,1\n")
        first = Worker(runtime)
        busy = threading.Thread(target=first.step)
        busy.start()
        while not runs:  # the first worker has the message and is in the stage
            time.sleep(0.01)
        # A second worker polls all the while: the message must stay hidden from it.
        second = Worker(runtime)
        taken = []
        while busy.is_alive():
            taken.append(second.step())
            time.sleep(0.1)
        busy.join()
        assert len(runs) == 1
        assert not any(taken)
        assert runtime.queue.counts(runtime.settings.queues.events) == (0, 0)
        [run] = runtime.runlog.list("slow")
        assert [(s.name, s.attempts) for s in run.stages] == [("preprocess", 1)]
    finally:
        runtime.close()


def test_a_renewed_lease_holds_back_a_duplicate_message(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "runs.db")
    log.start_stage("r1", "d", None, "train", message_id="m1", lease_s=0.3)
    time.sleep(0.4)
    log.renew_lease("r1", "train", "m1")
    prior = log.start_stage("r1", "d", None, "train", message_id="m2", lease_s=0.3)
    assert prior.busy_with == "m1"
    time.sleep(0.4)  # no renewal: the lease runs out and another message may take over
    prior = log.start_stage("r1", "d", None, "train", message_id="m2", lease_s=0.3)
    assert prior.busy_with is None


def test_a_dead_workers_message_comes_back_within_30_seconds_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The local lease: a worker renews it every third while a stage runs, so only a worker
    # that died lets it lapse, and a new worker takes the message within this time.
    monkeypatch.delenv("AUTOMLOPS_VISIBILITY_TIMEOUT", raising=False)
    assert 0 < Settings().visibility_timeout_s <= 30
