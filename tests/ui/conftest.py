"""Fixtures of the dashboard tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from ui_support import build_workspace, copy_workspace

from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.ui.up import build_app


@pytest.fixture(scope="session")
def ui_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with two versions, drift, a failed run and a dead letter (read-only)."""
    home = tmp_path_factory.mktemp("ui-home")
    build_workspace(home)
    return home


@pytest.fixture
def own_home(ui_home: Path, tmp_path: Path) -> Path:
    """A private copy of `ui_home` for tests that change things."""
    return copy_workspace(ui_home, tmp_path / "home")


@pytest.fixture
def open_home() -> Iterator[Callable[[Path], LocalRuntime]]:
    """Open runtimes over workspaces, closed after the test."""
    opened: list[LocalRuntime] = []

    def _open(home: Path) -> LocalRuntime:
        runtime = open_runtime(home)
        opened.append(runtime)
        return runtime

    yield _open
    for runtime in opened:
        runtime.close()


@pytest.fixture
def client_for(
    open_home: Callable[[Path], LocalRuntime],
) -> Callable[..., TestClient]:
    """A TestClient over the `up` app of a workspace (options as build_app takes them)."""

    def _client(home: Path, **options: object) -> TestClient:
        return TestClient(build_app(open_home(home), **options), base_url="http://testserver")

    return _client
