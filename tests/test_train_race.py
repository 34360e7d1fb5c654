"""Two workers training one run: the model file the first wrote is never replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from automlops import keys
from automlops.events import object_created
from automlops.local.runtime import open_runtime
from automlops.ports import ObjectInfo
from automlops.stages.train import train
from support import DEMO_DATASET


def test_a_second_training_of_a_run_leaves_the_first_model_file(
    trained_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = open_runtime(trained_home)
    try:
        entry = runtime.registry.read(DEMO_DATASET).get(1)
        assert entry is not None
        bucket, model_key = entry.artifact_bucket, entry.artifact_key
        first = runtime.store.get(bucket, model_key)
        schema_key = keys.schema_key(DEMO_DATASET, entry.run_id)
        info = runtime.store.head("automl-data", schema_key)
        assert info is not None
        event = object_created(
            "automl-data", schema_key, size=info.size, etag=info.etag, configuration_id="train"
        )
        real_head = runtime.store.head
        looked: list[str] = []

        def head_missing_the_model(b: str, k: str) -> ObjectInfo | None:
            # The race: this worker's first look came before the other one's model file landed.
            if (b, k) == (bucket, model_key) and not looked:
                looked.append(k)
                return None
            return real_head(b, k)

        monkeypatch.setattr(runtime.store, "head", head_missing_the_model)
        result = train(event.records[0], runtime.ports())
        assert result.duplicate and "another worker" in (result.note or "")
        assert runtime.store.get(bucket, model_key) == first
    finally:
        runtime.close()
