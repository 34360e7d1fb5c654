"""Deploy records the target a version predicts, so evaluate can tell a champion of another
target from the registry alone, without loading the champion's model file."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from automlops.local.runtime import open_runtime
from automlops.ml.artifact import ModelArtifact
from automlops.stages import evaluate
from support import DEMO_DATASET


class _NoReads:
    """A store that fails the test on any use: nothing may be read from it."""

    def __getattr__(self, name: str) -> NoReturn:
        raise AssertionError(f"the store was used ({name})")


def test_deploy_records_the_target_and_evaluate_reads_it_from_the_registry(
    trained_home: Path,
) -> None:
    runtime = open_runtime(trained_home)
    try:
        champion = runtime.registry.read(DEMO_DATASET).get(1)
        artifact = ModelArtifact.from_tar_gz(
            runtime.store.get(champion.artifact_bucket, champion.artifact_key)
        )
    finally:
        runtime.close()
    assert champion.target == "diagnosis" == artifact.metadata.target.name
    # A candidate of another target: judged incomparable without touching the store.
    meta = artifact.metadata
    other = meta.model_copy(update={"target": meta.target.model_copy(update={"name": "area"})})
    reason = evaluate._incomparable(_NoReads(), champion, other)  # type: ignore[arg-type]
    assert reason is not None and "a new target starts a new model line" in reason
    assert evaluate._incomparable(_NoReads(), champion, meta) is None  # type: ignore[arg-type]
