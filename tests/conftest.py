"""Shared fixtures: a workspace with a trained, promoted model, built by the real pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from automlops.config import Manifest, Task
from automlops.demo import breast_cancer_csv
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.local.worker import Worker
from support import DEMO_DATASET, private_copy, upload


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace where the demo data went through all four stages (v1 is champion)."""
    home = tmp_path_factory.mktemp("trained")
    runtime = open_runtime(home)
    try:
        manifest = Manifest(
            dataset=DEMO_DATASET,
            target="diagnosis",
            positive="malignant",
            task=Task.binary,
            time_budget_s=2,
        )
        upload(runtime, manifest, "cancer.csv", breast_cancer_csv())
        Worker(runtime).run_until_idle()
        assert runtime.registry.read(DEMO_DATASET).champion == 1
    finally:
        runtime.close()
    return home


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LocalRuntime]:
    """A fresh, empty workspace."""
    rt = open_runtime(tmp_path / "home")
    yield rt
    rt.close()


@pytest.fixture
def trained_copy(trained_home: Path, tmp_path: Path) -> Iterator[LocalRuntime]:
    """A private copy of the trained workspace (v1 champion) without the traffic other tests
    sent it, so what a test captures, labels and monitors is its own."""
    rt = open_runtime(private_copy(trained_home, tmp_path / "home"))
    yield rt
    rt.close()
