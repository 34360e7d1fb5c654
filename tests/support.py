"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from automlops import keys
from automlops.config import Manifest, Task
from automlops.local.runtime import LocalRuntime
from automlops.manifests import save_manifest

# The shared data folder sits beside the repository (../shared/data); AUTOMLOPS_SHARED_DATA
# points elsewhere (or at an empty folder, to run the suite as a fresh clone would).
SHARED_DATA = Path(
    os.environ.get("AUTOMLOPS_SHARED_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
DEMO_DATASET = "cancer"


def shared_file(name: str) -> Path:
    """A file of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(
            f"{path} is absent (the shared data folder lives beside the repository, "
            "or where AUTOMLOPS_SHARED_DATA points)"
        )
    return path


def linear_cancer_manifest(dataset: str) -> Manifest:
    """The demo's breast-cancer data as a fast, steady binary task (a linear model, 1 s): for
    tests where the gate, not the model, is under test."""
    return Manifest(
        dataset=dataset,
        target="diagnosis",
        positive="malignant",
        task=Task.binary,
        time_budget_s=1,
        learners=["linear"],
    )


def upload(runtime: LocalRuntime, manifest: Manifest, filename: str, data: bytes) -> str:
    """What `automlops upload` does: store the manifest, then the file (which triggers)."""
    save_manifest(runtime.store, runtime.settings.buckets.data, manifest)
    key = keys.source_key(manifest.dataset, filename)
    runtime.store.put(runtime.settings.buckets.data, key, data)
    return key


def private_copy(trained_home: Path, dest: Path) -> Path:
    """A copy of the shared trained workspace without the traffic other tests sent it: the
    champion route captures what it serves (on by default), so the session's workspace holds
    whatever earlier tests asked of it. Monitoring tests count requests: they start clean."""
    traffic = {"capture", "labels", "monitoring"}

    def ignore(folder: str, names: list[str]) -> set[str]:
        return traffic & set(names) if Path(folder).name == "model-monitoring" else set()

    return Path(shutil.copytree(trained_home, dest, ignore=ignore))
