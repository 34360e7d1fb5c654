"""OpenMP waiters sleep rather than spin (see automlops/__init__.py), unless the environment
says otherwise: set by the package itself, before any learner library loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PROBE = "import os, automlops; print(os.environ.get('OMP_WAIT_POLICY'))"


def _probe(env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_the_package_makes_openmp_waiters_passive() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert _probe(env)[0] == "PASSIVE"


@pytest.mark.parametrize("given", ["ACTIVE", "passive"])
def test_a_policy_the_environment_gives_wins(given: str) -> None:
    assert _probe({**os.environ, "OMP_WAIT_POLICY": given})[0] == given
