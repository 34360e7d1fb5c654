"""Hostile model archives: nothing is written outside, nothing in them runs, nothing is followed.

Loading reads members in memory by name (never `extractall`), takes regular files with plain
names only and hands the model bytes to the learner's own format reader (never pickle).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from poison_cases import ARTIFACT_CASES, ArtifactCase, lightgbm_text
from reliability_support import (
    automlops_command,
    files_under,
    record,
    registry_docs,
    subprocess_env,
)

from automlops import keys
from automlops.errors import PermanentError
from automlops.local.runtime import open_runtime
from automlops.local.worker import Worker
from automlops.ml.artifact import METADATA, TRANSFORM, ModelArtifact
from automlops.ml.predictor import Predictor
from automlops.registry import ModelVersion, VersionStatus
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


def test_a_metadata_member_over_its_own_limit_is_refused() -> None:
    """JSON members are parsed whole in memory: they get a far smaller limit than the model."""
    big = b'{"pad": "' + b" " * (65 * 1024 * 1024) + b'"}'
    hostile = _tarball([(METADATA, big), (TRANSFORM, b"{}")])
    with pytest.raises(PermanentError, match=r"metadata\.json is .* over the limit"):
        ModelArtifact.from_tar_gz(hostile)
    record("artifacts", {"attack": "a 65 MiB metadata.json", "result": "refused"})


def test_archives_with_too_many_members_are_refused() -> None:
    hostile = _tarball([(f"f{i}", b"x") for i in range(100)])
    with pytest.raises(PermanentError, match="over 64 members"):
        ModelArtifact.from_tar_gz(hostile)
    record("artifacts", {"attack": "100 members (archive bomb)", "result": "refused"})


# Crafted artifacts through the real worker and server, each in a child process: a native
# abort in the model library kills that child, and the test sees it as a signal death.

_SERVE_PROBE = """
import json, sys
from fastapi.testclient import TestClient
from automlops.local.runtime import open_runtime
runtime = open_runtime(sys.argv[1])
client = TestClient(runtime.create_app())
dataset = sys.argv[2]
codes = [
    client.get(f"/endpoints/{dataset}/versions/1").status_code,
    client.post(f"/endpoints/{dataset}/versions/1/invocations", json={"instances": [{}]})
    .status_code,
    client.get(f"/endpoints/{dataset}").status_code,
]
print(json.dumps(codes))
"""


def _crafted(case: ArtifactCase, artifact: ModelArtifact) -> bytes:
    """The hostile model.tar.gz of `case`, built from a real artifact's members."""
    meta = artifact.metadata
    transform = artifact.transform.model_dump_json().encode()
    if case.kind == "truncated":
        whole = artifact.to_tar_gz()
        return whole[: len(whole) // 2]
    if case.kind.startswith("lightgbm-"):
        width = artifact.transform.compile().width
        metadata = meta.model_copy(update={"learner": "lightgbm", "model_file": "model.lgb.txt"})
        text = (
            lightgbm_text(width, pad=True)
            if case.kind == "lightgbm-abort"
            else lightgbm_text(width, index=2**31 - 1)
        )
        model = ("model.lgb.txt", text)
    elif case.kind == "pickle":
        metadata = meta.model_copy(update={"model_file": "model.pkl"})
        model = ("model.pkl", pickle.dumps({"weights": [1.0, 2.0]}))
    else:  # huge-member: over the member limit, a few hundred KB compressed
        metadata = meta
        return _bomb(metadata.model_dump_json().encode(), transform, meta.model_file)
    return _tarball(
        [(METADATA, metadata.model_dump_json().encode()), (TRANSFORM, transform), model]
    )


def _bomb(metadata: bytes, transform: bytes, model_file: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for name, payload in ((METADATA, metadata), (TRANSFORM, transform)):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        info = tarfile.TarInfo(model_file)
        info.size = 513 * 1024 * 1024
        tar.addfile(info, _Zeros(info.size))
    return buffer.getvalue()


class _Zeros(io.RawIOBase):
    """`size` zero bytes, read in chunks (never held whole in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # bytes-like
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


@pytest.mark.parametrize("case", ARTIFACT_CASES, ids=lambda c: c.kind)
def test_crafted_artifacts_take_no_process_down(
    trained_home: Path, tmp_path: Path, case: ArtifactCase
) -> None:
    """The worker survives, the run fails with a reason, nothing promotable is registered,
    the server answers non-5xx for the version and `promote` refuses it."""
    dataset, run_id = "crafted", "run0000000000001"
    hostile = _crafted(case, _real_artifact(trained_home))
    home = tmp_path / "home"
    runtime = open_runtime(home)
    try:
        runtime.store.put("model-output", keys.model_key(dataset, run_id), hostile)
    finally:
        runtime.close()
    env = subprocess_env()
    worker = subprocess.run(
        automlops_command("run", "--until-idle", "--home", str(home)),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert worker.returncode >= 0, f"worker died by signal {-worker.returncode}: {worker.stderr}"
    assert worker.returncode in (0, 1), worker.stderr  # 1: a run failed, as it should
    runs = json.loads(
        subprocess.run(
            automlops_command("runs", "--json", "--home", str(home)),
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    [run] = runs
    assert run["status"] == "failed" and case.message in (run["error"] or ""), run

    doc = registry_docs(home).get(dataset)
    promotable = (VersionStatus.candidate, VersionStatus.champion)
    assert doc is None or all(v.status not in promotable for v in doc.versions)

    serve = subprocess.run(
        [sys.executable, "-c", _SERVE_PROBE, str(home), dataset],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert serve.returncode == 0, f"server process died ({serve.returncode}): {serve.stderr}"
    codes = json.loads(serve.stdout.strip().splitlines()[-1])
    assert all(code < 500 for code in codes), codes

    promote = subprocess.run(
        automlops_command("promote", dataset, "1", "--home", str(home)),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert promote.returncode != 0, promote.stdout
    doc = registry_docs(home).get(dataset)
    assert doc is None or doc.champion is None
    record(
        "artifacts",
        {
            "attack": case.description,
            "result": f"refused ({case.message!r}); worker and server alive; not promotable",
            "process_deaths": int(worker.returncode < 0) + int(serve.returncode != 0),
            "server_errors": sum(code >= 500 for code in codes),
        },
    )


def test_a_version_registered_before_the_checks_cannot_be_promoted(
    trained_home: Path, tmp_path: Path
) -> None:
    # A version in the registry whose artifact would crash a loader (registered before deploy
    # checked artifacts, or its file replaced since): promotion checks it first and refuses.
    artifact = _real_artifact(trained_home)
    [case] = [c for c in ARTIFACT_CASES if c.kind == "lightgbm-indices"]
    runtime = open_runtime(tmp_path / "home")
    try:
        key = keys.model_key("old", "run0000000000000")
        runtime.store.put("model-output", key, _crafted(case, artifact))
        runtime.registry.register(
            "old",
            ModelVersion(
                version=0,
                run_id="run0000000000000",
                created_at="2026-01-01T00:00:00+00:00",
                task=artifact.metadata.task.value,
                learner="lightgbm",
                artifact_bucket="model-output",
                artifact_key=key,
                source_key="data/old/old.csv",
                source_sha256="0" * 64,
                test_key="automl/old/run0000000000000/test.parquet",
            ),
        )
    finally:
        runtime.close()
    home = str(tmp_path / "home")
    refused = subprocess.run(
        automlops_command("promote", "old", "1", "--home", home),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert case.message in refused.stderr
    runtime = open_runtime(tmp_path / "home")
    try:
        assert runtime.registry.read("old").champion is None
    finally:
        runtime.close()
