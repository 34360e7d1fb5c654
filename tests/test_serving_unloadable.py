"""A registered version whose artifact cannot be loaded answers 503 with the reason, never 500.

Such versions predate the deploy check or had their artifact replaced; serving must not trust
the registry alone.
"""

from __future__ import annotations

import io
import pickle
import tarfile

from fastapi.testclient import TestClient

from automlops.local.runtime import LocalRuntime
from automlops.registry import ModelVersion


def _pickle_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        payload = pickle.dumps({"weights": [1.0]})
        info = tarfile.TarInfo("model.pkl")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def test_an_unloadable_version_answers_503_with_a_reason(runtime: LocalRuntime) -> None:
    key = "broken/run0000000000001/model.tar.gz"
    runtime.store.put("model-output", key, _pickle_archive())
    entry = runtime.registry.register(
        "broken",
        ModelVersion(
            version=0,
            run_id="run0000000000001",
            created_at="2026-01-01T00:00:00+00:00",
            task="binary",
            learner="xgboost",
            artifact_bucket="model-output",
            artifact_key=key,
            source_key="data/x.csv",
            source_sha256="0" * 64,
            test_key="automl/broken/test.parquet",
        ),
    )
    runtime.registry.promote("broken", entry.version, "forced for the test")
    client = TestClient(runtime.create_app())
    answers = [
        client.get("/endpoints/broken/versions/1"),
        client.post("/endpoints/broken/versions/1/invocations", json={"instances": [{}]}),
        client.get("/endpoints/broken"),
        client.post("/endpoints/broken/invocations", json={"instances": [{}]}),
    ]
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert "cannot be loaded" in answer.json()["error"]
        assert "metadata.json" in answer.json()["error"]  # the reason, not just a status
    assert client.get("/endpoints/broken/versions/2").status_code == 404
    assert client.get("/ping").status_code == 200
