"""Opening an upload: its hash (and, on the local store, its ETag check) runs beside the read."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from automlops.config import Manifest
from automlops.errors import PermanentError
from automlops.events import S3Event, S3EventRecord
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.stages.preprocess import preprocess
from automlops.tabular.schema import DatasetSchema
from support import upload

MANIFEST = Manifest(dataset="r", target="y", positive="yes", time_budget_s=1)
GOOD = b"a,b,y\n" + b"".join(
    f"{i},{i % 3},{'yes' if i % 2 else 'no'}\n".encode() for i in range(60)
)


def _next_record(runtime: LocalRuntime) -> S3EventRecord:
    [message] = runtime.queue.receive(runtime.settings.queues.events)
    runtime.queue.delete(runtime.settings.queues.events, message.receipt_handle)
    [record] = S3Event.model_validate_json(message.body).records
    return record


def test_the_lineage_hash_is_the_uploads(tmp_path: Path) -> None:
    runtime = open_runtime(tmp_path / "home")
    key = upload(runtime, MANIFEST, "r.csv", GOOD)
    result = preprocess(_next_record(runtime), runtime.ports())
    schema = DatasetSchema.model_validate_json(
        runtime.store.get(runtime.settings.buckets.automl_data, result.outputs[-1])
    )
    assert schema.source_key == key
    assert schema.source_sha256 == hashlib.sha256(GOOD).hexdigest()
    runtime.close()


def test_a_replaced_upload_is_reported_before_its_unreadable_content(tmp_path: Path) -> None:
    # The replacement has too few rows to train on: reading it fails, but what the run must
    # say is that its bytes are not the announced ones (the replacement's run says the rest).
    runtime = open_runtime(tmp_path / "home")
    upload(runtime, MANIFEST, "r.csv", GOOD)
    record = _next_record(runtime)
    upload(runtime, MANIFEST, "r.csv", b"a,b,y\n")  # no data rows: the reader refuses it
    with pytest.raises(PermanentError, match="was replaced after this notification"):
        preprocess(record, runtime.ports())
    runtime.close()
