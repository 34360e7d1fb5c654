"""preprocess reads a local upload in pieces: the file itself goes to polars, never its bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from automlops.config import Manifest
from automlops.events import S3Event
from automlops.local.runtime import LocalRuntime
from automlops.local.store import DirectoryStore
from automlops.stages import preprocess as stage
from automlops.tabular import csv_reader
from support import upload

ROWS = "x,c,y\n" + "".join(f"{i},{'ab'[i % 2]},{i % 3 == 0}\n" for i in range(60))


def test_a_local_upload_is_read_from_its_file_not_as_bytes(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = upload(runtime, Manifest(dataset="big", target="y"), "big.csv", ROWS.encode())
    [message] = runtime.queue.receive(runtime.settings.queues.events)
    [record] = S3Event.model_validate_json(message.body).records
    real_get = DirectoryStore.get

    def get(self: DirectoryStore, bucket: str, name: str) -> bytes:
        assert name != key, "the upload was read whole"
        return real_get(self, bucket, name)

    given: list[object] = []
    real_read = csv_reader.read_csv_file

    def read(data: Path | bytes, source: str, **options: bool):  # type: ignore[no-untyped-def]
        given.append(data)
        return real_read(data, source, **options)

    monkeypatch.setattr(DirectoryStore, "get", get)
    monkeypatch.setattr(stage, "read_csv_file", read)
    result = stage.preprocess(record, runtime.ports())
    assert isinstance(given[0], Path) and given[0].name == "big.csv"
    assert not result.duplicate and len(result.outputs) == 5
