"""The loop's local side through the real server: capture, feedback, and the monitor stage."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from automlops import keys
from automlops.cli import app as cli_app
from automlops.config import CaptureSettings, Settings
from automlops.demo import breast_cancer_csv
from automlops.local.runtime import LocalRuntime
from automlops.serving import wire
from automlops.serving.app import create_app
from automlops.serving.capture import CaptureWriter
from automlops.serving.models import ModelCache
from automlops.stages.monitor import monitor, monitor_all
from automlops.stages.traffic import LabelJoin, read_labels
from support import DEMO_DATASET

INVOKE = f"/endpoints/{DEMO_DATASET}/invocations"
FEEDBACK = f"/endpoints/{DEMO_DATASET}/feedback"
TARGET = "diagnosis"
SHIFTED = ["mean_radius", "mean_area", "worst_perimeter", "mean_texture"]


@pytest.fixture
def runtime(trained_copy: LocalRuntime) -> LocalRuntime:
    return trained_copy


def serve(runtime: LocalRuntime, **capture: Any) -> FastAPI:
    settings = Settings(capture=CaptureSettings(**{"flush_interval_s": 3600, **capture}))
    return create_app(ModelCache(runtime.store, runtime.registry), settings=settings)


def writer(app: FastAPI) -> CaptureWriter:
    capture = app.state.capture
    assert isinstance(capture, CaptureWriter)
    return capture


def cancer_rows(n: int, seed: int) -> pl.DataFrame:
    return pl.read_csv(io.BytesIO(breast_cancer_csv())).sample(n, seed=seed)


def captured(runtime: LocalRuntime) -> list[wire.CaptureRecord]:
    bucket = runtime.settings.buckets.model_monitoring
    records = []
    for key in runtime.store.list(bucket, keys.capture_prefix(DEMO_DATASET)):
        records += wire.read_capture_lines(gzip.decompress(runtime.store.get(bucket, key)))
    return records


def test_capture_writes_readable_objects_with_the_inference_ids(runtime: LocalRuntime) -> None:
    rows = cancer_rows(3, seed=1).drop(TARGET)
    app = serve(runtime)
    with TestClient(app) as client:  # leaving runs the lifespan's shutdown: the final write
        own = client.post(
            INVOKE,
            content=wire.json_body(rows.head(1).to_dicts()),
            headers={"content-type": wire.JSON, wire.INFERENCE_ID_HEADER: "caller-7"},
        )
        batch = client.post(
            INVOKE, content=wire.csv_body(rows), headers={"content-type": "text/csv"}
        )
        refused = client.post(INVOKE, content=b"{not json", headers={"content-type": wire.JSON})
    assert own.status_code == 200 and batch.status_code == 200 and refused.status_code == 400
    assert own.headers[wire.INFERENCE_ID_HEADER] == "caller-7"
    generated = batch.headers[wire.INFERENCE_ID_HEADER]
    assert len(generated) == 32
    bucket = runtime.settings.buckets.model_monitoring
    [key] = runtime.store.list(bucket, keys.capture_prefix(DEMO_DATASET))
    hour = datetime.now(UTC)
    assert key.startswith(f"capture/{DEMO_DATASET}/v1/{hour:%Y-%m-%d}/")
    assert key.endswith(".jsonl.gz")
    records = {r.eventMetadata.inferenceId: r for r in captured(runtime)}
    assert set(records) >= {"caller-7", generated} and len(records) == 3
    first = records["caller-7"]
    assert wire.read_response(first.captureData.endpointOutput.data.encode()).labels() == (
        wire.read_response(own.content).labels()
    )
    assert first.eventMetadata.modelVersion == 1
    csv_record = records[generated]
    assert csv_record.captureData.endpointInput.encoding == "CSV"
    assert pl.read_csv(io.StringIO(csv_record.captureData.endpointInput.data)).height == 3
    [bad] = [r for r in records.values() if r.eventMetadata.status == 400]
    assert bad.captureData.endpointOutput is None and "JSON" in (bad.eventMetadata.error or "")
    assert writer(app).stats().written == 3


def test_a_full_buffer_drops_and_counts_and_never_blocks(runtime: LocalRuntime) -> None:
    app = serve(runtime, buffer_size=2)
    client = TestClient(app)  # no lifespan: the writer starts on the first capture
    body = wire.json_body(cancer_rows(1, seed=2).drop(TARGET).to_dicts())
    answers = [
        client.post(INVOKE, content=body, headers={"content-type": wire.JSON}) for _ in range(5)
    ]
    assert [a.status_code for a in answers] == [200] * 5
    stats = writer(app).stats()
    assert (stats.captured, stats.dropped, stats.buffered, stats.written) == (2, 3, 2, 0)
    writer(app).close()
    assert writer(app).stats().written == 2
    assert len(captured(runtime)) == 2


def test_capture_off_and_sampling(runtime: LocalRuntime) -> None:
    assert serve(runtime, enabled=False).state.capture is None
    app = serve(runtime, sample_rate=0.0)
    client = TestClient(app)
    body = wire.json_body(cancer_rows(1, seed=3).drop(TARGET).to_dicts())
    answer = client.post(INVOKE, content=body, headers={"content-type": wire.JSON})
    assert answer.status_code == 200 and wire.INFERENCE_ID_HEADER in answer.headers
    assert writer(app).stats().captured == 0


def send(client: TestClient, frame: pl.DataFrame, per_request: int) -> list[str]:
    """Invoke with `frame`'s rows (target dropped); the feedback id of each row, in order."""
    ids = []
    for start in range(0, frame.height, per_request):
        chunk = frame.slice(start, per_request).drop(TARGET)
        answer = client.post(
            INVOKE, content=wire.json_body(chunk.to_dicts()), headers={"content-type": wire.JSON}
        )
        assert answer.status_code == 200, answer.text
        ident = answer.headers[wire.INFERENCE_ID_HEADER]
        ids += [ident] if chunk.height == 1 else [f"{ident}#{i}" for i in range(chunk.height)]
    return ids


def test_feedback_is_stored_joined_by_id_with_duplicates_and_unknown_ids_counted(
    runtime: LocalRuntime,
) -> None:
    app = serve(runtime)
    client = TestClient(app)
    frame = cancer_rows(4, seed=4)
    ids = send(client, frame, per_request=1)
    truth = frame[TARGET].to_list()
    wrong = "benign" if truth[0] == "malignant" else "malignant"
    first = [{"id": ids[0], "label": wrong}, {"id": ids[1], "label": truth[1]}]
    later = [{"id": ids[0], "label": truth[0]}, {"id": "never-served", "label": "benign"}]
    for body in (first, later):
        answer = client.post(FEEDBACK, json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["received"] == 2
    # A CSV dropped under feedback/<dataset>/ of the data bucket joins the same way.
    data = runtime.settings.buckets.data
    csv = f"id,label\n{ids[2]},{truth[2]}\n".encode()
    runtime.store.put(data, keys.feedback_prefix(DEMO_DATASET) + "day1.csv", csv)
    for bad in (b'{"id": "x"}', b'[{"id": "x"}]', b'[{"id": "x", "label": "a", "value": 1}]', b"["):
        refused = client.post(FEEDBACK, content=bad, headers={"content-type": wire.JSON})
        assert refused.status_code == 400, bad
        assert "error" in refused.json()
    assert client.post("/endpoints/nope/feedback", json=first).status_code == 404
    writer(app).flush()

    report = monitor(runtime.ports(), DEMO_DATASET).report
    join = report.labels
    assert join.files_ingested == [keys.feedback_prefix(DEMO_DATASET) + "day1.csv"]
    assert (join.labels, join.duplicates, join.distinct) == (5, 1, 4)
    assert (join.matched, join.unknown, join.unknown_ids) == (3, 1, ["never-served"])
    latest = read_labels(
        runtime.store, runtime.settings.buckets.model_monitoring, DEMO_DATASET, LabelJoin()
    )
    assert latest[ids[0]].label == truth[0]  # the later label won
    # Monitoring again reads the CSV once: no new batch, the same counts.
    again = monitor(runtime.ports(), DEMO_DATASET).report.labels
    assert again.files_ingested == [] and again.labels == 5


def test_the_monitor_flags_shifted_traffic_and_not_stable_traffic(runtime: LocalRuntime) -> None:
    app = serve(runtime)
    client = TestClient(app)
    frame = cancer_rows(240, seed=5)
    started = datetime.now(UTC)
    ids = send(client, frame, per_request=20)
    labels = [{"id": i, "label": y} for i, y in zip(ids, frame[TARGET].to_list(), strict=True)]
    assert client.post(FEEDBACK, json=labels).status_code == 200
    writer(app).flush()
    stable = monitor(runtime.ports(), DEMO_DATASET, since=started).report
    assert (stable.requests, stable.rows, stable.errors) == (12, 240, 0)
    assert stable.data_drift is not None and stable.data_drift.drifted == []
    assert stable.prediction_drift is not None and not stable.prediction_drift.drifted
    assert stable.live is not None and stable.live.rows == 240 and stable.live.metric == "roc_auc"
    assert stable.live.low <= stable.live.value <= stable.live.high
    assert not stable.live.below_test and stable.live.test_value is not None
    assert stable.alerts == []

    shifted_from = datetime.now(UTC)
    shifted = frame.with_columns(pl.col(c) * 3 for c in SHIFTED)
    send(client, shifted, per_request=20)
    writer(app).flush()
    result = monitor(runtime.ports(), DEMO_DATASET, since=shifted_from)
    report = result.report
    assert report.rows == 240 and report.data_drift is not None
    assert set(SHIFTED) <= set(report.data_drift.drifted)
    assert report.alerts and report.alerts[0].startswith("data drift")
    bucket = runtime.settings.buckets.model_monitoring
    written = runtime.store.get(bucket, result.json_key)
    assert set(SHIFTED) <= set(json.loads(written)["data_drift"]["drifted"])
    assert b"data drift" in runtime.store.get(bucket, result.html_key)


def test_monitor_command_and_schedule_entry(runtime: LocalRuntime) -> None:
    app = serve(runtime)
    send(TestClient(app), cancer_rows(3, seed=6), per_request=1)
    writer(app).flush()
    shown = CliRunner().invoke(cli_app, ["monitor", DEMO_DATASET, "--home", str(runtime.home)])
    assert shown.exit_code == 0, shown.output
    assert f"{DEMO_DATASET} v1: 3 requests, 3 rows, 0 refused" in shown.output
    as_json = CliRunner().invoke(
        cli_app, ["monitor", DEMO_DATASET, "--json", "--home", str(runtime.home)]
    )
    assert json.loads(as_json.output)["rows"] == 3
    refused = CliRunner().invoke(cli_app, ["monitor", "nope", "--home", str(runtime.home)])
    assert refused.exit_code != 0 and "no champion" in refused.output
    assert list(monitor_all(runtime.ports())) == [DEMO_DATASET]


def test_one_failing_dataset_does_not_stop_the_scheduled_sweep(runtime: LocalRuntime) -> None:
    # "aaa" sorts first and has a champion whose processed data is gone: its monitor fails.
    bucket = runtime.settings.buckets.model_output
    doc = runtime.store.get(bucket, keys.registry_key(DEMO_DATASET))
    runtime.store.put(bucket, keys.registry_key("aaa"), doc.replace(b'"cancer"', b'"aaa"'))
    sweep = monitor_all(runtime.ports())
    assert list(sweep) == [DEMO_DATASET] and sweep[DEMO_DATASET].report.champion == 1
    assert list(sweep.failures) == ["aaa"] and "NotFound" in sweep.failures["aaa"]


def test_monitor_runs_in_one_second_keep_their_own_reports() -> None:
    at = datetime(2026, 11, 30, 12, 0, 0, 1, tzinfo=UTC)
    later = at.replace(microsecond=2)
    assert keys.monitor_prefix("d", at) != keys.monitor_prefix("d", later)
    stamps = [at.replace(microsecond=0), at, later, at.replace(second=1, microsecond=0)]
    prefixes = [keys.monitor_prefix("d", t) for t in stamps]
    assert prefixes == sorted(prefixes)


def test_unreadable_capture_records_are_counted_not_fatal(runtime: LocalRuntime) -> None:
    bucket = runtime.settings.buckets.model_monitoring
    now = datetime.now(UTC)
    broken = b'not json\n{"eventMetadata": {"inferenceTime": "%s"}}\n' % now.isoformat().encode()
    runtime.store.put(
        bucket, keys.capture_key(DEMO_DATASET, 1, now, "broken"), gzip.compress(broken)
    )
    runtime.store.put(bucket, keys.capture_key(DEMO_DATASET, 1, now, "torn"), b"\x1f\x8b\x08")
    report = monitor(runtime.ports(), DEMO_DATASET).report
    assert (report.unreadable, report.rows) == (3, 0)
    assert any("could not be read" in note for note in report.notes)


def test_feedback_needs_the_api_key_like_the_other_routes(runtime: LocalRuntime) -> None:
    app = create_app(
        ModelCache(runtime.store, runtime.registry),
        api_key="sekrit",
        settings=Settings(capture=CaptureSettings(enabled=False)),
    )
    client = TestClient(app)
    body = [{"id": "a1", "label": "benign"}]
    assert client.post(FEEDBACK, json=body).status_code == 401
    assert client.post(FEEDBACK, json=body, headers={"X-API-Key": "sekrit"}).status_code == 200
