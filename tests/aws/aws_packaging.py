"""Packaging the deployment with the Serverless Framework v3, offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = ROOT / "deploy" / "aws"
SLS_ENV = {
    "SLS_TELEMETRY_DISABLED": "1",
    "SLS_NOTIFICATIONS_MODE": "off",
    "SLS_DEPRECATION_DISABLE": "*",
}


def _serverless() -> Path:
    binary = DEPLOY_DIR / "node_modules" / ".bin" / "serverless"
    if not binary.exists():
        # `make test-aws` installs it first; running pytest alone installs it here.
        if shutil.which("npm") is None:
            pytest.fail("npm is needed to install the Serverless Framework (deploy/aws)")
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=DEPLOY_DIR, check=True
        )
    return binary


# What a packaging run reads from the service directory (it needs nothing else).
_SERVICE_FILES = ("serverless.yml", "package.json", "package-lock.json")


def package(stage: str, out: Path, *params: str) -> subprocess.CompletedProcess[str]:
    """`serverless package --stage <stage>` into `out` (offline: no credentials needed).

    Run from a private copy of the service directory: the framework clears and writes
    `.serverless/` beside serverless.yml, so two packagings at once (test workers) would delete
    each other's files."""
    command = [str(_serverless()), "package", "--stage", stage, "--package", str(out)]
    command += [f"--param={p}" for p in params]
    env = {**os.environ, **SLS_ENV}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(name, None)  # prove it needs none
    with tempfile.TemporaryDirectory(prefix="automlops-sls-") as service:
        for name in _SERVICE_FILES:
            shutil.copy2(DEPLOY_DIR / name, Path(service) / name)
        (Path(service) / "node_modules").symlink_to(DEPLOY_DIR / "node_modules")
        return subprocess.run(
            command, cwd=service, env=env, capture_output=True, text=True, timeout=180
        )
