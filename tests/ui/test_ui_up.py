"""`automlops up` as a user runs it: a CSV copied into the data folder becomes a served model,
with no other command; Ctrl-C stops it cleanly."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner
from ui_support import fast_manifest

from automlops.cli import app
from automlops.demo import breast_cancer_csv
from automlops.local.runtime import open_runtime
from automlops.manifests import save_manifest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(condition, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.e2e
def test_up_turns_a_copied_csv_into_a_served_model_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runtime = open_runtime(home)
    save_manifest(runtime.store, "data", fast_manifest("copied"))
    runtime.close()
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "automlops.cli", "up", "--home", str(home), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: httpx.get(f"{base}/ping").status_code == 200, 60, "the server")
        source = tmp_path / "cancer.csv"
        source.write_bytes(breast_cancer_csv())
        shutil.copy(source, home / "data" / "data" / "copied" / "cancer.csv")  # no command

        def finished() -> dict | None:
            runs = httpx.get(f"{base}/ui/api/state").json()["runs"]
            return next((r for r in runs if r["status"] != "running"), None)

        run = _wait_for(finished, 90, "the copied file's run")
        assert run["status"] == "succeeded", run
        assert run["source"] == "data/copied/cancer.csv"
        served = httpx.get(f"{base}/endpoints/copied")
        assert served.status_code == 200 and served.json()["version"] == 1
        assert "copied" in httpx.get(f"{base}/ui/").text
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    _, err = process.communicate()
    assert code == 0, err
    assert "dashboard http://127.0.0.1" in err and "stopped" in err


def test_up_refuses_inconsistent_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    runner = CliRunner()
    home = str(tmp_path / "h")
    result = runner.invoke(app, ["up", "--home", home, "--protect-ui"])
    assert result.exit_code == 2 and "--protect-ui needs --api-key-env" in result.output
    result = runner.invoke(app, ["up", "--home", home, "--api-key-env", "NO_SUCH_KEY_VAR"])
    assert result.exit_code == 2 and "NO_SUCH_KEY_VAR is not set" in result.output
