"""Hostile model archives: nothing is written outside, nothing in them runs, nothing is followed.

Loading reads members in memory by name (never `extractall`), takes regular files with plain
names only and hands the model bytes to the learner's own format reader (never pickle).
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import pytest
from reliability_support import files_under, record

from automlops import keys
from automlops.errors import PermanentError
from automlops.local.runtime import open_runtime
from automlops.local.worker import Worker
from automlops.ml.artifact import METADATA, TRANSFORM, ModelArtifact
from automlops.ml.predictor import Predictor
from support import DEMO_DATASET


class _Payload:
    """Unpickling this writes a file: proof that pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.write_text, (self.marker, "pickle ran"))


def _real_artifact(trained_home: Path) -> ModelArtifact:
    runtime = open_runtime(trained_home)
    try:
        entry = runtime.registry.read(DEMO_DATASET).get(1)
        data = runtime.store.get(entry.artifact_bucket, entry.artifact_key)
    finally:
        runtime.close()
    return ModelArtifact.from_tar_gz(data)


def _tarball(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, payload = member
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _members(artifact: ModelArtifact) -> dict[str, bytes]:
    return {
        METADATA: artifact.metadata.model_dump_json().encode(),
        TRANSFORM: artifact.transform.model_dump_json().encode(),
        artifact.metadata.model_file: artifact.model,
    }


def test_traversal_names_and_links_are_ignored(trained_home: Path, tmp_path: Path) -> None:
    good = _members(_real_artifact(trained_home))
    outside = tmp_path / "outside.txt"
    hostile = _tarball(
        [
            ("../escaped.txt", b"written above the folder"),
            (str(outside), b"written by absolute path"),
            ("a/../../escaped2.txt", b"written above, the long way"),
            _link("shadow", "/etc/passwd", tarfile.SYMTYPE),
            _link("hard", "/etc/passwd", tarfile.LNKTYPE),
            *good.items(),
        ]
    )
    before = files_under(tmp_path)
    cwd_before = set(os.listdir("."))
    artifact = ModelArtifact.from_tar_gz(hostile)
    assert artifact.model == good[artifact.metadata.model_file]
    Predictor(artifact)  # and it loads as a model
    assert files_under(tmp_path) == before and not outside.exists()
    assert set(os.listdir(".")) == cwd_before
    record(
        "artifacts",
        {
            "attack": "../, absolute, symlink and hard-link members",
            "result": "ignored; nothing written",
        },
    )


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE], ids=["symlink", "hardlink"])
def test_linked_members_are_never_followed(trained_home: Path, tmp_path: Path, kind: bytes) -> None:
    good = _members(_real_artifact(trained_home))
    planted = tmp_path / "planted-metadata.json"
    planted.write_bytes(good[METADATA])  # a valid file the link points at
    hostile = _tarball(
        [
            _link(METADATA, str(planted), kind),
            *[(name, data) for name, data in good.items() if name != METADATA],
        ]
    )
    with pytest.raises(PermanentError, match=r"lacks metadata\.json"):
        ModelArtifact.from_tar_gz(hostile)
    record(
        "artifacts",
        {
            "attack": f"metadata.json as a {'symlink' if kind == tarfile.SYMTYPE else 'hard link'}",
            "result": "refused: not followed",
        },
    )


def test_a_pickled_model_never_runs_through_the_pipeline(
    trained_home: Path, tmp_path: Path
) -> None:
    """A pickle dropped where deploy picks models up: the run fails and the pickle never runs."""
    artifact = _real_artifact(trained_home)
    marker = tmp_path / "pwned.txt"
    metadata = artifact.metadata.model_copy(update={"model_file": "model.pkl", "run_id": "evil"})
    hostile = _tarball(
        [
            (METADATA, metadata.model_dump_json().encode()),
            (TRANSFORM, artifact.transform.model_dump_json().encode()),
            ("model.pkl", pickle.dumps(_Payload(marker))),
        ]
    )
    runtime = open_runtime(tmp_path / "home")
    try:
        runtime.store.put("model-output", keys.model_key("evil", "run0000000000000"), hostile)
        finished: list = []
        Worker(runtime, on_run_end=finished.append).run_until_idle()
        [run] = finished
        assert run.status == "failed"
        assert run.stages[-1].attempts == 1  # refused as permanent, not retried
    finally:
        runtime.close()
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do, as long as it refuses
        Predictor(ModelArtifact.from_tar_gz(hostile))
    assert not marker.exists()
    record(
        "artifacts", {"attack": "pickle as the model file", "result": "refused; pickle never ran"}
    )


def test_archives_with_too_many_members_are_refused() -> None:
    hostile = _tarball([(f"f{i}", b"x") for i in range(100)])
    with pytest.raises(PermanentError, match="over 64 members"):
        ModelArtifact.from_tar_gz(hostile)
    record("artifacts", {"attack": "100 members (archive bomb)", "result": "refused"})
