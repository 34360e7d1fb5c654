"""Handlers and adapters against moto, without training: event shapes, partial batch
failures, conditional writes, keys with spaces and accents."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_invoker import CallRecorder, FakeContext, LambdaInvoker, LocalSageMakerRuntime

from automlops.aws import handlers
from automlops.aws.runtime import AwsRuntime
from automlops.errors import ConflictError, NotFoundError
from automlops.events import EvaluationMessage, object_created
from automlops.registry import Registry
from automlops.routing import Stage

Deployed = tuple[AwsRuntime, LambdaInvoker, LocalSageMakerRuntime, CallRecorder]
ODD_KEY = "data/bank/new data (2) é.csv"


def _sqs_record(message_id: str, body: str, receive_count: int = 1) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"rh-{message_id}",
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receive_count)},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:automlops-dev-evaluation",
        "awsRegion": "us-east-1",
    }


def test_s3_store_round_trips_odd_keys_and_tags(deployed: Deployed) -> None:
    rt = deployed[0]
    bucket = rt.config.bucket_data
    info = rt.store.put(bucket, ODD_KEY, b"a,b\n1,2\n")
    assert rt.store.get(bucket, ODD_KEY) == b"a,b\n1,2\n"
    head = rt.store.head(bucket, ODD_KEY)
    assert head is not None and head.etag == info.etag and head.size == 8
    assert rt.store.list(bucket, "data/bank/") == [ODD_KEY]
    rt.store.put_tags(bucket, ODD_KEY, {"run": "é 1"})
    assert rt.store.get_tags(bucket, ODD_KEY) == {"run": "é 1"}
    assert rt.store.head(bucket, "data/bank/missing.csv") is None
    with pytest.raises(NotFoundError):
        rt.store.get(bucket, "data/bank/missing.csv")


def test_conditional_writes_make_registry_updates_compare_and_swap(deployed: Deployed) -> None:
    rt = deployed[0]
    bucket, key = rt.config.bucket_model_output, "registry/x.json"
    first = rt.store.put_if(bucket, key, b"1", if_match=None)
    with pytest.raises(ConflictError):
        rt.store.put_if(bucket, key, b"2", if_match=None)  # If-None-Match: * on an existing key
    second = rt.store.put_if(bucket, key, b"2", if_match=first.etag)
    with pytest.raises(ConflictError):
        rt.store.put_if(bucket, key, b"3", if_match=first.etag)  # stale ETag
    with pytest.raises(ConflictError):
        rt.store.put_if(bucket, "registry/none.json", b"3", if_match=second.etag)
    assert rt.store.get(bucket, key) == b"2"
    registry = Registry(rt.store, bucket)
    registry.update("y", lambda doc: setattr(doc, "champion", 7))
    assert registry.read("y").champion == 7


def test_direct_s3_events_are_url_decoded_and_routed(deployed: Deployed) -> None:
    rt = deployed[0]
    # A key outside the stage's trigger is ignored; the encoded upload key is decoded.
    stray = object_created(
        rt.config.bucket_data, "elsewhere/x.csv", size=1, etag="e", configuration_id="c"
    )
    event = json.loads(stray.model_dump_json(by_alias=True))
    assert handlers.preprocess(event, FakeContext("preprocess")) == {"processed": 1}
    upload = object_created(rt.config.bucket_data, ODD_KEY, size=1, etag="e", configuration_id="c")
    raw = json.loads(upload.model_dump_json(by_alias=True))
    assert raw["Records"][0]["s3"]["object"]["key"] == "data/bank/new+data+%282%29+%C3%A9.csv"
    # The object is absent: a transient failure, raised so Lambda retries the async event.
    with pytest.raises(RuntimeError, match="1 record"):
        handlers.preprocess(raw, FakeContext("preprocess"))


@pytest.mark.usefixtures("deployed")
def test_sqs_batches_report_only_transient_failures() -> None:
    missing_version = EvaluationMessage(
        dataset="nobody", version=3, run_id="r", endpoint="e", test_key="k", bucket="b"
    ).model_dump_json()
    event = {
        "Records": [
            _sqs_record("malformed", "{not json"),  # permanent: logged, acknowledged
            _sqs_record("transient", missing_version),  # the registry lacks it: retried
        ]
    }
    result = handlers.evaluate(event, FakeContext("evaluate"))
    assert result == {"batchItemFailures": [{"itemIdentifier": "transient"}]}


def test_s3_test_events_and_foreign_keys_in_sqs_are_acknowledged(deployed: Deployed) -> None:
    rt = deployed[0]
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"})
    foreign = object_created(
        rt.config.bucket_model_output, "registry/x.json", size=1, etag="e", configuration_id="c"
    ).model_dump_json(by_alias=True)
    event = {"Records": [_sqs_record("t", test_event), _sqs_record("f", foreign)]}
    assert handlers.handle(Stage.deploy, event, rt) == {"batchItemFailures": []}


def test_unreadable_sqs_bodies_are_retried_into_the_dead_letter_queue(deployed: Deployed) -> None:
    rt = deployed[0]
    event = {"Records": [_sqs_record("garbage", "not json at all", receive_count=4)]}
    assert handlers.handle(Stage.train, event, rt) == {
        "batchItemFailures": [{"itemIdentifier": "garbage"}]
    }


def test_cold_start_builds_the_runtime_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, deployed: Deployed
) -> None:
    rt = deployed[0]
    handlers.configure(None)
    for name, value in {
        "AUTOMLOPS_BUCKET_DATA": rt.config.bucket_data,
        "AUTOMLOPS_BUCKET_AUTOML_DATA": rt.config.bucket_automl_data,
        "AUTOMLOPS_BUCKET_MODEL_OUTPUT": rt.config.bucket_model_output,
        "AUTOMLOPS_BUCKET_MODEL_MONITORING": rt.config.bucket_model_monitoring,
        "AUTOMLOPS_QUEUE_EVALUATION": rt.config.queue_evaluation,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AUTOMLOPS_SSM_PREFIX", raising=False)
    built = handlers.current_runtime()
    assert built.config.settings() == rt.config.settings().model_copy(
        update={"retry_base_s": built.config.retry_base_s}
    )
    handlers.configure(rt)


def test_operator_commands_find_the_stage_by_ssm(
    deployed: Deployed, session: Any, moto: str, tmp_path: Any
) -> None:
    from automlops.aws import ops
    from automlops.usecases.models import list_models
    from automlops.usecases.upload import UploadOptions, upload

    rt = deployed[0]
    config = ops.stage_config("dev", session, endpoint_url=moto)
    assert config.bucket_data == rt.config.bucket_data
    csv = tmp_path / "new data é.csv"
    csv.write_bytes(b"a,b\n1,2\n")
    done = upload(rt.store, config.bucket_data, csv.name, csv, UploadOptions("tiny", target="b"))
    # The file name rule (automlops.names), in the upload's own folder.
    assert done.key.startswith("data/tiny/") and done.key.endswith("/new_data_.csv")
    assert (
        ops.models_document(
            config, list_models(ops.Stage(config, session, rt.store, rt.queue).registry)
        )
        == []
    )
    rt.store.put(config.bucket_model_monitoring, "tiny/r/report.json", b"{}")
    done = ops.teardown(config, session, endpoint_url=moto)
    assert f"bucket {config.bucket_data} emptied" in done
    assert rt.store.list(config.bucket_data) == []
    assert rt.store.list(config.bucket_model_monitoring) == []
