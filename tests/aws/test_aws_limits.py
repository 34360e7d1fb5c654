"""Limits the AWS stack relies on, held by the code: request bytes to an endpoint and the time
budget of every compute choice (conditional model writes: test_aws_sagemaker)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import orjson
import polars as pl
import pytest

from automlops.aws.config import AwsConfig
from automlops.aws.training import choose_compute
from automlops.config import Task
from automlops.errors import PermanentError
from automlops.serving import wire
from automlops.stages.evaluate import MAX_REQUEST_BYTES, request_batches, score_endpoint


class RecordingHost:
    """A model host answering each row with its first column, noting request sizes."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def deploy(self, dataset: str, version: int, artifact_bucket: str, artifact_key: str) -> str:
        raise AssertionError("not used")

    def invoke(self, endpoint: str, body: bytes, *, content_type: str, accept: str) -> bytes:
        self.sizes.append(len(body))
        rows = orjson.loads(body)["instances"]
        return orjson.dumps(
            {"model_version": "1", "predictions": [{"value": r["c000"]} for r in rows]}
        )


def test_a_400_column_file_is_scored_in_requests_under_the_payload_limit() -> None:
    rng = np.random.default_rng(0)
    rows, columns = 1_000, 400
    features = pl.DataFrame({f"c{i:03d}": rng.normal(size=rows) * 1e6 for i in range(columns)})
    one_request = len(wire.json_body(features.to_dicts()))
    assert one_request > 4_000_000  # 1,000 rows in one request would exceed the 4 MB limit
    host = RecordingHost()
    meta = SimpleNamespace(task=Task.regression)
    values = score_endpoint(host, "e", features, meta)  # type: ignore[arg-type]
    assert values.tolist() == features.get_column("c000").to_list()  # all rows, in order
    assert len(host.sizes) > 1
    assert max(host.sizes) <= MAX_REQUEST_BYTES < 4 * 1024 * 1024
    # Batches are full: no request smaller than needed but the last one.
    row_bytes = one_request / rows
    assert all(size > MAX_REQUEST_BYTES - 2 * row_bytes for size in host.sizes[:-1])


def test_request_batches_bound_rows_too_and_refuse_a_row_too_big() -> None:
    rows = [{"a": i} for i in range(2_500)]
    batches = list(request_batches(rows))
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert [r for b in batches for r in b] == rows
    with pytest.raises(PermanentError, match="more than the 100 an endpoint request may hold"):
        list(request_batches([{"a": "x" * 200}], max_bytes=100))


def _schema(budget: float) -> SimpleNamespace:
    return SimpleNamespace(
        rows=SimpleNamespace(train=100, validation=20),
        manifest=SimpleNamespace(time_budget_s=budget),
    )


def _config(**values: object) -> AwsConfig:
    base = {
        "bucket_data": "d",
        "bucket_automl_data": "a",
        "bucket_model_output": "m",
        "bucket_model_monitoring": "r",
        "queue_evaluation": "q",
    }
    return AwsConfig.model_validate({**base, **values})


def test_the_time_budget_guard_holds_for_every_compute_choice() -> None:
    config = _config()
    # Requested in-function training with a budget Lambda cannot finish: refused, not timed out
    # on every attempt.
    with pytest.raises(PermanentError, match="900 s"):
        choose_compute(_schema(1200), 0, config, "function")  # type: ignore[arg-type]
    assert choose_compute(_schema(60), 0, config, "function").compute == "function"  # type: ignore[arg-type]
    # The automatic choice moves a long budget to a training job.
    assert choose_compute(_schema(1200), 0, config, None).compute == "sagemaker"  # type: ignore[arg-type]
    # A training job's budget must fit its maximum runtime.
    short = _config(training_max_runtime_s=600)
    with pytest.raises(PermanentError, match="maximum runtime"):
        choose_compute(_schema(1200), 0, short, "sagemaker")  # type: ignore[arg-type]


def test_the_upload_limit_follows_the_function_memory() -> None:
    from automlops.aws.config import load_config

    env = {
        "AUTOMLOPS_BUCKET_DATA": "d",
        "AUTOMLOPS_BUCKET_AUTOML_DATA": "a",
        "AUTOMLOPS_BUCKET_MODEL_OUTPUT": "m",
        "AUTOMLOPS_BUCKET_MODEL_MONITORING": "r",
        "AUTOMLOPS_QUEUE_EVALUATION": "q",
    }
    assert load_config(env).settings().max_upload_bytes == 1024**3
    small = load_config({**env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024"})
    assert small.settings().max_upload_bytes == 1024 * 1024**2 // 3
    big = load_config({**env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "10240"})
    assert big.settings().max_upload_bytes == 1024**3  # never above the general limit
