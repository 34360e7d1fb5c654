"""A worker process that pauses inside a stage, for the crash-safety tests to kill -9 there.

    python paused_worker.py HOME POINT

does what `automlops run --until-idle --home HOME` does, with a pause installed from outside
the product: POINT `<stage>` pauses at the start of that stage; `<stage>@<key suffix>` pauses
inside that stage once a write of a key ending so is durable, before its notification is sent
(the store's ObjectCreated callback is wrapped). Paused, it prints a marker line to stderr and
sleeps until killed.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from automlops import stages
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.local.worker import Worker, run_workers
from automlops.ports import ObjectInfo, Ports
from automlops.routing import Stage
from automlops.stages.result import StageResult

MARKER = "automlops: paused"


def pause(where: str) -> None:
    """Say where, then sleep until killed."""
    print(f"{MARKER} {where} (pid {os.getpid()})", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)


def install_pause(runtime: LocalRuntime, point: str) -> None:
    """Wrap the stage (and for `@suffix` the store's notification callback) to pause there."""
    name, _, suffix = point.partition("@")
    stage = Stage(name)
    spec = stages.STAGES[stage]
    inside = [False]  # whether the one worker of this process is in `stage` now

    def run(event: Any, ports: Ports) -> StageResult:
        if not suffix:
            pause(f"at the start of {stage.value}")
        inside[0] = True
        try:
            return spec.run(event, ports)
        finally:
            inside[0] = False

    stages.STAGES[stage] = replace(spec, run=run)
    notify = runtime.store.on_created

    def on_created(info: ObjectInfo) -> None:
        if inside[0] and suffix and info.key.endswith(suffix):
            pause(f"in {stage.value} after writing {info.bucket}/{info.key}, before notifying")
        if notify is not None:
            notify(info)

    runtime.store.on_created = on_created


def main(home: str, point: str) -> None:
    runtime = open_runtime(Path(home))
    try:
        install_pause(runtime, point)
        run_workers([Worker(runtime)], until_idle=True)
    finally:
        runtime.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
