"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from automlops import keys
from automlops.config import Manifest
from automlops.local.runtime import LocalRuntime
from automlops.manifests import save_manifest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEMO_DATASET = "cancer"


def shared_file(name: str) -> Path:
    """A file of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared data folder lives beside the repository)")
    return path


def upload(runtime: LocalRuntime, manifest: Manifest, filename: str, data: bytes) -> str:
    """What `automlops upload` does: store the manifest, then the file (which triggers)."""
    save_manifest(runtime.store, runtime.settings.buckets.data, manifest)
    key = keys.source_key(manifest.dataset, filename)
    runtime.store.put(runtime.settings.buckets.data, key, data)
    return key
