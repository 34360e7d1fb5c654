"""The monitor on AWS (moto): captured traffic in both key layouts (the inference server's own
capture written to S3, SageMaker data capture's), feedback CSVs under feedback/<dataset>/ of
the data bucket, and the scheduled monitor function, run as EventBridge runs it, with only the
calls its role allows."""

from __future__ import annotations

import base64
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from aws_cfn import Provisioned
from aws_invoker import CallRecorder, FakeContext, LambdaInvoker, LocalSageMakerRuntime
from aws_stack import ACCOUNT, REGION, Call, Stack, allowed
from fastapi.testclient import TestClient
from test_aws_alerts import emitted

from automlops import keys
from automlops.aws import handlers
from automlops.aws.config import AwsConfig
from automlops.aws.container import endpoint_capture
from automlops.aws.hosting import data_capture_config
from automlops.aws.runtime import AwsRuntime
from automlops.aws.sagemaker import (
    VARIANT,
    SageMakerModelHost,
    live_endpoint_name,
    resource_name,
)
from automlops.config import CaptureSettings, Manifest, RetrainPolicy
from automlops.demo import breast_cancer_csv
from automlops.local.runtime import open_runtime
from automlops.local.store import DirectoryStore
from automlops.manifests import save_manifest
from automlops.registry import Registry, RegistryDoc
from automlops.serving import sagemaker as serving_sagemaker
from automlops.serving import wire
from automlops.serving.app import create_app
from automlops.serving.capture import CaptureWriter
from automlops.serving.models import ModelCache
from automlops.serving.sagemaker import (
    CUSTOM_ATTRIBUTES_HEADER,
    ENV_CAPTURE_BUCKET,
    NO_CAPTURE_ATTRIBUTE,
    create_sagemaker_app,
)
from automlops.stages.traffic import read_traffic
from support import DEMO_DATASET

Deployed = tuple[AwsRuntime, LambdaInvoker, LocalSageMakerRuntime, CallRecorder]
MONITOR = "MonitorLambdaFunction"
TARGET = "diagnosis"
SHIFTED = ["mean_radius", "mean_area", "worst_perimeter", "mean_texture"]


def _copy_trained(trained_home: Path, rt: AwsRuntime, invoker: LambdaInvoker) -> None:
    """The trained workspace's processed data, model files and registry, as the AWS pipeline
    would leave them (v1 champion); the notifications of the copy are dropped."""
    local = open_runtime(trained_home)
    buckets = rt.config.settings().buckets
    try:
        source = local.settings.buckets.automl_data
        for key in local.store.list(source):
            rt.store.put(buckets.automl_data, key, local.store.get(source, key))
        doc = local.registry.read(DEMO_DATASET)
        for version in doc.versions:
            data = local.store.get(version.artifact_bucket, version.artifact_key)
            rt.store.put(buckets.model_output, version.artifact_key, data)
            version.artifact_bucket = buckets.model_output
        registry = keys.registry_key(DEMO_DATASET)
        rt.store.put(buckets.model_output, registry, doc.model_dump_json().encode())
    finally:
        local.close()
    assert RegistryDoc.model_validate_json(rt.store.get(buckets.model_output, registry)).champion
    for _, url, _, _ in invoker.sources:
        invoker.sqs.purge_queue(QueueUrl=url)


def _rows(n: int, seed: int) -> pl.DataFrame:
    return pl.read_csv(io.BytesIO(breast_cancer_csv())).sample(n, seed=seed)


def _body(captured: bytes, content_type: str, encoding: str, mode: str) -> dict[str, str]:
    data = base64.b64encode(captured).decode() if encoding == "BASE64" else captured.decode()
    return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}


def _sagemaker_line(
    request: bytes, answer: bytes, at: datetime, encoding: str, ident: str | None
) -> bytes:
    """One request as SageMaker data capture writes it (no dataset, version or status)."""
    metadata = {"eventId": str(uuid.uuid4()), "inferenceTime": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if ident is not None:
        metadata["inferenceId"] = ident
    record = {
        "captureData": {
            "endpointInput": _body(request, wire.JSON, encoding, "INPUT"),
            "endpointOutput": _body(answer, wire.JSON, encoding, "OUTPUT"),
        },
        "eventMetadata": metadata,
        "eventVersion": "0",
    }
    return orjson.dumps(record) + b"\n"


def _sagemaker_key(endpoint: str, at: datetime) -> str:
    """SageMaker's key under the destination `data_capture_config` gives it."""
    stem = keys.capture_prefix(DEMO_DATASET, 1)
    return f"{stem}{endpoint}/{VARIANT}/{at:%Y/%m/%d/%H}/{at:%M-%S-%f}-{uuid.uuid4()}.jsonl"


def _serve_from_s3(rt: AwsRuntime) -> tuple[TestClient, CaptureWriter]:
    """The inference server over the stack's buckets, capturing to the monitoring bucket."""
    settings = rt.config.settings()
    settings.capture = CaptureSettings(flush_interval_s=3600)
    registry = Registry(rt.store, settings.buckets.model_output)
    app = create_app(ModelCache(rt.store, registry), settings=settings)
    assert isinstance(app.state.capture, CaptureWriter)
    return TestClient(app), app.state.capture


def _scheduled_event() -> dict[str, Any]:
    """What an EventBridge schedule sends its target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/automlops-dev-monitor"],
        "detail": {},
    }


def test_the_scheduled_monitor_reads_both_capture_layouts_and_the_feedback_prefix(
    deployed: Deployed,
    trained_home: Path,
    provisioned: Provisioned,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rt, invoker, _, recorder = deployed
    stack = provisioned.stack
    # The dataset's retrain policy: every 50 labelled rows, appended to the champion's upload
    # (stored before the copy, whose end drops the notifications these writes send).
    buckets = rt.config.settings().buckets
    local = open_runtime(trained_home)
    try:
        champion = local.registry.read(DEMO_DATASET).champion_version()
        assert champion is not None
        training_upload = local.store.get(local.settings.buckets.data, champion.source_key)
    finally:
        local.close()
    rt.store.put(buckets.data, champion.source_key, training_upload)
    policy = RetrainPolicy(every_labels=50, with_training_file=True)
    save_manifest(
        rt.store, buckets.data, Manifest(dataset=DEMO_DATASET, target=TARGET, retrain=policy)
    )
    _copy_trained(trained_home, rt, invoker)

    # The inference server's own capture, written to S3: 40 rows in 2 requests.
    client, writer = _serve_from_s3(rt)
    served = _rows(40, seed=11)
    server_ids: list[str] = []
    for start in (0, 20):
        chunk = served.slice(start, 20).drop(TARGET)
        answer = client.post(
            f"/endpoints/{DEMO_DATASET}/invocations",
            content=wire.json_body(chunk.to_dicts()),
            headers={"content-type": wire.JSON},
        )
        assert answer.status_code == 200, answer.text
        ident = answer.headers[wire.INFERENCE_ID_HEADER]
        server_ids += [f"{ident}#{i}" for i in range(chunk.height)]
    assert writer.flush() == 2

    # SageMaker data capture of the live endpoint: 60 shifted rows in 3 requests, bodies as
    # text and as base64, one with the caller's InferenceId; answers from the same model.
    live = live_endpoint_name(rt.config.name_prefix, DEMO_DATASET)
    shifted = _rows(60, seed=12).with_columns(pl.col(c) * 3 for c in SHIFTED)
    now = datetime.now(UTC).replace(microsecond=0)
    lines = b""
    for n, encoding in enumerate(("JSON", "BASE64", "BASE64")):
        chunk = shifted.slice(20 * n, 20).drop(TARGET)
        request = wire.json_body(chunk.to_dicts())
        answer = client.post(
            f"/endpoints/{DEMO_DATASET}/versions/1/invocations",  # not captured by the app
            content=request,
            headers={"content-type": wire.JSON},
        )
        assert answer.status_code == 200, answer.text
        ident = "caller-7" if n == 2 else None
        lines += _sagemaker_line(
            request, answer.content, now - timedelta(minutes=n), encoding, ident
        )
    rt.store.put(buckets.model_monitoring, _sagemaker_key(live, now), lines)

    # Labels as a CSV dropped under feedback/<dataset>/: no notification routes it anywhere.
    truth = shifted[TARGET].to_list()
    labelled = [(f"caller-7#{i}", truth[40 + i]) for i in range(20)]
    labelled += list(zip(server_ids, served[TARGET].to_list(), strict=True))
    csv = "id,label\n" + "".join(f"{i},{y}\n" for i, y in labelled)
    feedback_key = keys.feedback_prefix(DEMO_DATASET) + "labels day 1.csv"
    rt.store.put(buckets.data, feedback_key, csv.encode())
    assert invoker.pending() == 0

    recorder.function = MONITOR
    try:
        result = handlers.monitor(_scheduled_event(), FakeContext(function_name=MONITOR))
    finally:
        recorder.function = "test"
    # Its findings are alert metrics of the dataset (CloudWatch alarms on the drift metric).
    metrics = [d for d in emitted(capsys.readouterr().out) if d.get("dataset") == DEMO_DATASET]
    assert "Drift" in {d["metric"][1] for d in metrics}

    key = result["reports"][DEMO_DATASET]
    report = json.loads(rt.store.get(buckets.model_monitoring, key))
    assert key.startswith(f"monitoring/{DEMO_DATASET}/") and report["champion"] == 1
    assert (report["requests"], report["rows"], report["errors"], report["unreadable"]) == (
        5,
        100,
        0,
        0,
    )
    assert report["labels"]["files_ingested"] == [feedback_key]
    assert (report["labels"]["matched"], report["labels"]["unknown"]) == (60, 0)
    assert set(SHIFTED) & set(report["data_drift"]["drifted"])
    assert result["alerts"][DEMO_DATASET] == len(report["alerts"]) > 0

    # 60 labelled rows >= 50: the policy wrote them, after the champion's training rows, as a
    # new upload of the dataset, whose S3 notification starts the pipeline (and the gate).
    upload_key = result["retrains"][DEMO_DATASET]
    assert upload_key.startswith(keys.uploads_prefix(DEMO_DATASET)) and upload_key.endswith(".csv")
    retrain = pl.read_csv(io.BytesIO(rt.store.get(buckets.data, upload_key)))
    original = pl.read_csv(io.BytesIO(training_upload))
    assert retrain.height == original.height + 60
    assert invoker.pending() == 1
    assert "RetrainTriggered" in {d["metric"][1] for d in metrics}

    # The monitor's role allowed every call it made.
    statements = stack.statements(stack.role_of(MONITOR))
    calls = recorder.calls[MONITOR]
    assert calls and [c for c in calls if not allowed(statements, c)] == []


def test_the_monitor_role_and_schedule(stack: Stack) -> None:
    (rule,) = (
        r
        for r in stack.of_type("AWS::Events::Rule").values()
        if r["Properties"]["Targets"][0]["Arn"].get("Fn::GetAtt", [None])[0] == MONITOR
    )
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    assert stack.handler_of(MONITOR) == "automlops.aws.handlers.monitor"
    statements = stack.statements(stack.role_of(MONITOR))
    bucket = stack.names

    def may(action: str, bucket_id: str, key: str) -> bool:
        return allowed(statements, Call(action, f"arn:aws:s3:::{bucket[bucket_id]}/{key}"))

    assert may("s3:GetObject", "ModelMonitoringBucket", "capture/d/v1/x/AllTraffic/f.jsonl")
    assert may("s3:PutObject", "ModelMonitoringBucket", "monitoring/d/20260101T000000Z/m.json")
    assert may("s3:PutObject", "ModelMonitoringBucket", "labels/d/x-csv-etag.jsonl")
    assert may("s3:GetObject", "DataBucket", "feedback/d/f.csv")
    # The retrain policy: the manifest and a champion's upload read, a retrain upload written.
    assert may("s3:GetObject", "DataBucket", "data/d/manifest.json")
    assert may("s3:PutObject", "DataBucket", "data/d/20260101T000000Z-1a2b3c4d/retrain.csv")
    assert may("s3:GetObject", "ModelMonitoringBucket", "monitoring/d/20260101T000000Z/x.json")
    # No capture written, no feedback or registry or model touched.
    assert not may("s3:PutObject", "ModelMonitoringBucket", "capture/d/v1/x.jsonl.gz")
    assert not may("s3:PutObject", "DataBucket", "feedback/d/f.csv")
    assert not may("s3:PutObject", "ModelOutputBucket", "registry/d.json")
    assert not may("s3:GetObject", "ModelOutputBucket", "d/r/output/model.tar.gz")


def test_one_reader_two_layouts_and_the_endpoint_filter(deployed: Deployed) -> None:
    rt = deployed[0]
    bucket = rt.config.bucket_model_monitoring
    prefix, at = rt.config.name_prefix, datetime.now(UTC).replace(microsecond=0)
    live = live_endpoint_name(prefix, DEMO_DATASET)
    candidate = resource_name(prefix, DEMO_DATASET, 1)
    rows = [{"mean_radius": "1.5"}, {"mean_radius": "2.5"}]
    request = wire.json_body(rows)
    answer = b'{"model_version": "1", "predictions": [{"value": 1.0}, {"value": 2.0}]}'
    csv_request, csv_answer = b"mean_radius\n3.5\n", b"7.0\n"
    line = _sagemaker_line(request, answer, at, "BASE64", "a")
    csv_line = orjson.loads(_sagemaker_line(csv_request, csv_answer, at, "JSON", "b"))
    for part in ("endpointInput", "endpointOutput"):
        csv_line["captureData"][part]["encoding"] = "CSV"
    rt.store.put(bucket, _sagemaker_key(live, at), line + orjson.dumps(csv_line) + b"\n")
    rt.store.put(
        bucket, _sagemaker_key(candidate, at), _sagemaker_line(request, answer, at, "JSON", "c")
    )
    # Neither layout, or outside the window: not read.
    rt.store.put(bucket, keys.capture_prefix(DEMO_DATASET, 1) + "stray.json", b"{}")
    old = at - timedelta(days=3)
    rt.store.put(
        bucket, _sagemaker_key(live, old), _sagemaker_line(request, answer, old, "JSON", "d")
    )

    def read(endpoint: str | None) -> Any:
        since, until = at - timedelta(hours=1), at + timedelta(seconds=1)
        return read_traffic(
            rt.store, bucket, DEMO_DATASET, 1, since, until, "regression", endpoint=endpoint
        )

    everything, live_only = read(None), read(live)
    assert (everything.objects, sum(everything.requests.values())) == (2, 3)
    assert (live_only.objects, sum(live_only.requests.values())) == (1, 2)
    assert live_only.ids == ["a#0", "a#1", "b"]
    assert live_only.values == [1.0, 2.0, 7.0]
    assert live_only.frame()["mean_radius"].to_list() == ["1.5", "2.5", "3.5"]
    assert live_only.unreadable == 0


def test_the_live_config_captures_to_the_version_prefix_where_sagemaker_allows(
    deployed: Deployed,
) -> None:
    rt = deployed[0]
    bucket, capture = rt.config.bucket_model_monitoring, CaptureSettings(sample_rate=0.25)
    serverless = {"VariantName": VARIANT, "ModelName": "m", "ServerlessConfig": {}}
    assert data_capture_config(serverless, bucket, DEMO_DATASET, 3, capture) is None
    instances = {
        "VariantName": VARIANT,
        "ModelName": "m",
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
    }
    off = CaptureSettings(enabled=False)
    assert data_capture_config(instances, bucket, DEMO_DATASET, 3, off) is None
    config = data_capture_config(instances, bucket, DEMO_DATASET, 3, capture)
    assert config is not None
    assert config["DestinationS3Uri"] == f"s3://{bucket}/capture/{DEMO_DATASET}/v3"
    assert config["InitialSamplingPercentage"] == 25
    assert {o["CaptureMode"] for o in config["CaptureOptions"]} == {"Input", "Output"}
    # SageMaker's API takes it as is.
    rt.host.sagemaker.create_model(
        ModelName="m",
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/sagemaker",
        PrimaryContainer={"Image": rt.config.sagemaker_image or "image"},
    )
    rt.host.sagemaker.create_endpoint_config(
        EndpointConfigName="automlops-dev-capture",
        ProductionVariants=[instances],
        DataCaptureConfig=config,
    )
    described = rt.host.sagemaker.describe_endpoint_config(
        EndpointConfigName="automlops-dev-capture"
    )
    assert described["DataCaptureConfig"]["DestinationS3Uri"] == config["DestinationS3Uri"]


# -- capture in the serving container -------------------------------------------------------


def _container_env(rt: AwsRuntime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Host v1 (the model hosting creates, with its container environment), and give this
    process that environment and the model directory, as SageMaker gives the container."""
    buckets = rt.config.settings().buckets
    entry = Registry(rt.store, buckets.model_output).read(DEMO_DATASET).get(1)
    name = rt.host.ensure_version(DEMO_DATASET, 1, entry.artifact_bucket, entry.artifact_key)
    environment = rt.host.sagemaker.describe_model(ModelName=name)["PrimaryContainer"][
        "Environment"
    ]
    assert environment[ENV_CAPTURE_BUCKET] == buckets.model_monitoring
    assert (environment["AUTOMLOPS_DATASET"], environment["AUTOMLOPS_MODEL_VERSION"]) == (
        DEMO_DATASET,
        "1",
    )
    assert environment["AUTOMLOPS_CAPTURE"] == "1"
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUTOMLOPS_CAPTURE_FLUSH_S", "3600")  # no timer write in the test
    model_dir = tmp_path / "opt-ml-model"
    model_dir.mkdir()
    data = rt.store.get(entry.artifact_bucket, entry.artifact_key)
    (model_dir / "model.tar.gz").write_bytes(data)
    return model_dir


def _invoke(client: TestClient, rows: pl.DataFrame, **headers: str) -> str:
    answer = client.post(
        "/invocations",
        content=wire.json_body(rows.drop(TARGET).to_dicts()),
        headers={"content-type": wire.JSON, **headers},
    )
    assert answer.status_code == 200, answer.text
    return answer.headers[wire.INFERENCE_ID_HEADER]


def test_the_endpoint_container_captures_to_s3_where_the_monitor_reads(
    deployed: Deployed,
    trained_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    provisioned: Provisioned,
) -> None:
    rt, invoker = deployed[0], deployed[1]
    _copy_trained(trained_home, rt, invoker)
    model_dir = _container_env(rt, monkeypatch, tmp_path)
    bucket = rt.config.bucket_model_monitoring
    started = datetime.now(UTC) - timedelta(seconds=1)

    writer = endpoint_capture(rt.store)
    assert writer is not None and writer.bucket == bucket
    app = create_sagemaker_app(model_dir, capture=writer)
    rows = _rows(30, seed=21)
    with TestClient(app) as client:  # the lifespan: SIGTERM's shutdown writes the buffer
        ids = [_invoke(client, rows.slice(10 * n, 10)) for n in range(2)]
        ids.append(_invoke(client, rows.slice(20, 10), **{wire.INFERENCE_ID_HEADER: "order-9"}))
        # The project's own calls (evaluation, canaries) say so and are not traffic.
        _invoke(client, rows.slice(0, 5), **{CUSTOM_ATTRIBUTES_HEADER: NO_CAPTURE_ATTRIBUTE})
        assert rt.store.list(bucket, keys.capture_prefix(DEMO_DATASET)) == []
    assert ids[2] == "order-9"

    written = rt.store.list(bucket, keys.capture_prefix(DEMO_DATASET, 1))
    assert written and all(keys.capture_key_hour(k) is not None for k in written)
    traffic = read_traffic(
        rt.store, bucket, DEMO_DATASET, 1, started, datetime.now(UTC), "classification"
    )
    assert sum(traffic.requests.values()) == 3 and traffic.height == 30
    assert traffic.ids == [f"{i}#{row}" for i in ids for row in range(10)]
    assert traffic.unreadable == 0

    # The endpoint's role may write there, and nowhere else in the monitoring bucket.
    statements = provisioned.stack.statements("SageMakerExecutionRole")
    names = provisioned.stack.names

    def may_put(bucket_id: str, key: str) -> bool:
        arn = f"arn:aws:s3:::{names[bucket_id]}/{key}"
        return allowed(statements, Call("s3:PutObject", arn))

    assert may_put("ModelMonitoringBucket", written[0])
    assert not may_put("ModelMonitoringBucket", "monitoring/d/20260101T000000Z/m.json")
    assert not may_put("ModelMonitoringBucket", "labels/d/x.jsonl")
    assert not allowed(statements, Call("s3:GetObject", f"arn:aws:s3:::{bucket}/{written[0]}"))

    # A container frozen between invocations: no lifespan, and a timer an hour away, so only
    # the request-time check can write.
    for key in written:  # a fresh start
        rt.store.client.delete_object(Bucket=bucket, Key=key)
    prefix = keys.capture_prefix(DEMO_DATASET, 1)
    monkeypatch.setattr(serving_sagemaker, "FLUSH_REQUESTS", 3)
    writer = endpoint_capture(rt.store)
    assert writer is not None
    client = TestClient(create_sagemaker_app(model_dir, capture=writer))
    rows = _rows(6, seed=22)
    for n in range(2):
        _invoke(client, rows.slice(n, 1))
    assert rt.store.list(bucket, prefix) == []
    _invoke(client, rows.slice(2, 1))  # the third request: the buffer is due, written first
    assert len(rt.store.list(bucket, prefix)) == 1
    assert writer.stats().written == 3 and writer.stats().buffered == 0

    # By age: an older buffer than the flush interval is written at the next request.
    now = [1000.0]
    due = serving_sagemaker.CaptureFlush(writer, clock=lambda: now[0])
    _invoke(client, rows.slice(3, 1))
    assert not due.due()
    now[0] += writer.settings.flush_interval_s
    assert due.due() and due.flush_if_due() == 1
    assert writer.stats().written == 4


def test_capture_follows_the_switches_as_locally(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = DirectoryStore(tmp_path, ["monitoring"])  # nothing is written: any store does
    config = AwsConfig(
        bucket_data="d",
        bucket_automl_data="a",
        bucket_model_output="m",
        bucket_model_monitoring="monitoring",
        queue_evaluation="q",
    )
    host = SageMakerModelHost(config, sagemaker_client=None, runtime_client=None)
    monkeypatch.delenv(ENV_CAPTURE_BUCKET, raising=False)
    assert endpoint_capture(store) is None  # no bucket named: a model hosted before capture
    monkeypatch.setenv(ENV_CAPTURE_BUCKET, "monitoring")
    monkeypatch.setenv("AUTOMLOPS_CAPTURE_RATE", "0.25")
    writer = endpoint_capture(store)
    assert writer is not None and writer.settings.sample_rate == 0.25
    monkeypatch.setenv("AUTOMLOPS_CAPTURE", "0")
    assert endpoint_capture(store) is None
    # What hosting puts in a model's environment follows the deploying function's switches.
    assert host.environment(DEMO_DATASET, 2)["AUTOMLOPS_CAPTURE"] == "0"
    monkeypatch.setenv("AUTOMLOPS_CAPTURE", "1")
    environment = host.environment(DEMO_DATASET, 2)
    assert environment["AUTOMLOPS_CAPTURE_RATE"] == "0.25"
    assert environment[ENV_CAPTURE_BUCKET] == "monitoring"
