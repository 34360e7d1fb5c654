"""Helpers for the dashboard tests: small workspaces built by the real pipeline, a live server."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import polars as pl
from fastapi.testclient import TestClient

from automlops.config import Manifest, Task
from automlops.demo import breast_cancer_csv
from automlops.local.model_host import EmbeddedServer
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.local.worker import Worker
from automlops.ui import LiveProgress
from automlops.ui.up import Background, build_app
from support import upload

DATASET = "cancer"
HOSTILE = "<script>alert(1)</script>"
HOSTILE_VALUE = '<img src=x onerror="alert(2)">'
FAST = {"time_budget_s": 1, "learners": ["linear"]}  # a run in a few seconds


def fast_manifest(dataset: str = DATASET) -> Manifest:
    """The demo data's manifest with the smallest budget and the fastest learner."""
    return Manifest(
        dataset=dataset, target="diagnosis", positive="malignant", task=Task.binary, **FAST
    )


def shifted_csv() -> bytes:
    """The demo data with one column scaled: a second upload that drifts."""
    frame = pl.read_csv(io.BytesIO(breast_cancer_csv()))
    frame = frame.with_columns(pl.col("mean_radius") * 1.6)
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    return buffer.getvalue()


def hostile_csv(rows: int = 120) -> bytes:
    """A small CSV whose column names and category values are HTML."""
    lines = [f'"{HOSTILE}","{HOSTILE_VALUE.replace(chr(34), chr(34) * 2)}",y']
    for i in range(rows):
        category = HOSTILE_VALUE if i % 3 == 0 else f"c{i % 4}"
        lines.append(f'{i % 17},"{category.replace(chr(34), chr(34) * 2)}",{i % 2}')
    return ("\n".join(lines) + "\n").encode()


def build_workspace(home: Path) -> None:
    """v1 and v2 of `cancer` (v2 champion, v1 restorable), drift on v2's upload, a failed run
    of `broken`, and a dead-lettered evaluation message whose error is HTML."""
    runtime = open_runtime(home)
    try:
        manifest = fast_manifest()
        upload(runtime, manifest, "first.csv", breast_cancer_csv())
        Worker(runtime).run_until_idle()
        upload(runtime, manifest, "second.csv", shifted_csv())
        Worker(runtime).run_until_idle()
        if runtime.registry.read(DATASET).champion != 2:
            runtime.registry.promote(DATASET, 2, "promoted by the test set-up")
        upload(runtime, Manifest(dataset="broken", target="y"), "bad.csv", b"a,y\n1,0\n")
        Worker(runtime).run_until_idle()
        queue = runtime.settings.queues.evaluation
        runtime.queue.send(queue, json.dumps({"dataset": DATASET, "version": 99}))
        (message,) = runtime.queue.receive(queue)
        runtime.queue.dead_letter(queue, message, f"ValueError: {HOSTILE}")
    finally:
        runtime.close()


def copy_workspace(source: Path, target: Path) -> Path:
    """A private copy of a built workspace for a test that changes it."""
    shutil.copytree(source, target)
    return target


def csrf_of(client: TestClient, path: str = "/ui/upload") -> str:
    """Load a page and return the CSRF token its forms carry (the cookie is set too)."""
    response = client.get(path)
    found = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
    assert found, f"no CSRF token on {path}"
    return found.group(1)


class LiveServer:
    """What `automlops up` runs, in this process: app, workers and watcher on a free port."""

    def __init__(self, home: Path, *, workers: int = 1, api_key: str | None = None) -> None:
        self.runtime: LocalRuntime = open_runtime(home)
        self.progress = LiveProgress()
        self.app = build_app(self.runtime, api_key=api_key, progress=self.progress)
        self.server = EmbeddedServer(self.app)
        self.background = Background(
            self.runtime, workers=workers, progress=self.progress, watch_interval_s=0.5
        )
        self.url = self.server.url

    def __enter__(self) -> LiveServer:
        self.server.start()
        self.background.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.background.stop(grace_s=10)
        self.server.stop()
        self.runtime.close()
