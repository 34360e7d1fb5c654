"""Validate an untrusted model.tar.gz where a native crash cannot take the caller down.

Model libraries (LightGBM, XGBoost) are C++: a crafted model can make them call
`std::terminate` or read out of bounds, killing the process that loads it. `checked_artifact`
runs the pure checks here, then the first load and a test prediction in a child interpreter
(`python -m automlops.ml.artifact_probe`, the archive on its stdin) with a timeout. A child that
dies by a signal, exits non-zero or runs out of time means an invalid artifact, with the reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from automlops.errors import PermanentError
from automlops.ml.artifact import ModelArtifact
from automlops.ml.artifact_check import InvalidArtifact, check_contents, check_loaded

PROBE_TIMEOUT_S = 120.0
_REFUSED = 3  # the child's exit status when it refused the artifact (reason on stdout)


def checked_artifact(
    data: bytes, source: str, *, timeout_s: float = PROBE_TIMEOUT_S
) -> ModelArtifact:
    """The artifact in `data` once it passed every check; `InvalidArtifact` saying why not.

    Structure and member sizes (`ModelArtifact.from_tar_gz`) and feature indices
    (`check_contents`) are checked in this process; loading and a test prediction in a child.
    """
    artifact = ModelArtifact.from_tar_gz(data, source)
    try:
        check_contents(artifact)
    except InvalidArtifact as exc:
        raise InvalidArtifact(f"{source}: {exc}") from None
    _probe_in_child(data, source, timeout_s)
    return artifact


def _probe_in_child(data: bytes, source: str, timeout_s: float) -> None:
    # The child imports this very package, wherever it was imported from here.
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "automlops.ml.artifact_probe", source],
            input=data,
            capture_output=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InvalidArtifact(
            f"{source}: the model did not load and predict within {timeout_s:.0f} s"
        ) from None
    if done.returncode == 0:
        return
    if done.returncode == _REFUSED:
        raise InvalidArtifact(f"{source}: {done.stdout.decode(errors='replace').strip()}")
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        problem = f"loading the model crashed its process ({name})"
    else:
        problem = f"loading the model crashed its process (exit status {done.returncode})"
    detail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
    raise InvalidArtifact(f"{source}: {problem}" + (f": {' | '.join(detail)}" if detail else ""))


def _main(source: str) -> int:
    """The child: load the archive on stdin and predict one row; 0 when that worked."""
    from automlops.ml.predictor import Predictor

    try:
        predictor = Predictor(ModelArtifact.from_tar_gz(sys.stdin.buffer.read(), source))
    except PermanentError as exc:
        print(f"could not load the model: {exc}")
        return _REFUSED
    except Exception as exc:
        print(f"could not load the model: {exc!r}"[:1000])
        return _REFUSED
    try:
        check_loaded(predictor)
    except InvalidArtifact as exc:
        print(str(exc))
        return _REFUSED
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1] if len(sys.argv) > 1 else "model.tar.gz"))
