"""Alerts on AWS: each kind is a CloudWatch metric (EMF in the function's log) dimensioned by
its dataset, emitted where the handlers notice it (failed runs, gate decisions, the monitor's
findings: test_aws_monitoring)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_invoker import CallRecorder, FakeContext, LambdaInvoker, LocalSageMakerRuntime

from automlops.aws import handlers
from automlops.aws.alert_metrics import CloudWatchAlerts, namespace
from automlops.aws.runtime import AwsRuntime
from automlops.events import EvaluationMessage
from automlops.keys import RunRef
from automlops.ports import Ports
from automlops.routing import Stage
from automlops.stages import StageResult
from automlops.usecases.alerts import (
    AlertKind,
    failed_run_alert,
    gate_alert,
    monitor_alerts,
)

Deployed = tuple[AwsRuntime, LambdaInvoker, LocalSageMakerRuntime, CallRecorder]


def emitted(text: str) -> list[dict[str, Any]]:
    """The EMF documents in a function's log output, with (namespace, metric, dimensions)."""
    found = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        document = json.loads(line)
        if "_aws" not in document:
            continue
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        (metric,) = directive["Metrics"]
        document["metric"] = (directive["Namespace"], metric["Name"], directive["Dimensions"])
        found.append(document)
    return found


def test_each_kind_of_alert_is_a_count_metric_of_its_dataset(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sink = CloudWatchAlerts("automlops-dev")
    alerts = [
        *monitor_alerts(
            "bank",
            ["data drift in 1 column(s): age", "live roc_auc 0.7 is worse than 0.9"],
            2,
            "monitoring/bank/t/monitor.json",
        ),
        gate_alert("emp", 3, "champion: first model", "r1"),
        gate_alert("emp", 4, "rejected: not better", "r2"),
        failed_run_alert("bank", "r3", "the target column is missing"),
    ]
    for alert in alerts:
        assert alert is not None and sink.send(alert, "https://ignored.example") is True
    retrain = monitor_alerts("bank", ["data drift in 1 column(s): age"], 2, None)[0]
    sink.send(retrain.model_copy(update={"kind": AlertKind.retrain}))
    documents = emitted(capsys.readouterr().out)
    names = [d["metric"][1] for d in documents]
    assert names == [
        "Drift",
        "QualityDrop",
        "Promoted",
        "Rejected",
        "RunFailed",
        "RetrainTriggered",
    ]
    datasets = ["bank", "bank", "emp", "emp", "bank", "bank"]
    for document, dataset in zip(documents, datasets, strict=True):
        ns, _, dimensions = document["metric"]
        assert ns == namespace("automlops-dev") == "automlops-dev/alerts"
        assert all("dataset" in d for d in dimensions) and document["dataset"] == dataset
        assert document[document["metric"][1]] == [1.0]
    assert documents[0]["report"] == "monitoring/bank/t/monitor.json"
    assert documents[3]["decision"] == "rejected" and documents[3]["version"] == 4
    assert documents[4]["message"] == "run r3 failed: the target column is missing"


def _sqs_record(message_id: str, body: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"rh-{message_id}",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:automlops-dev-evaluation",
        "awsRegion": "us-east-1",
    }


def _training_job_failed(job: str, dataset: str, run_id: str) -> dict[str, Any]:
    return {
        "version": "0",
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Training Job State Change",
        "time": "2026-01-02T03:04:05Z",
        "detail": {
            "TrainingJobName": job,
            "TrainingJobStatus": "Failed",
            "FailureReason": "AlgorithmError: MemoryError",
            "HyperParameters": {"dataset": dataset, "run_id": run_id},
        },
    }


def test_the_handlers_emit_failed_runs_and_gate_decisions(
    deployed: Deployed, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = deployed[0]
    prefix = rt.config.name_prefix
    capsys.readouterr()

    # A training job that failed: its run failed.
    context = FakeContext(function_name=f"{prefix}-trainingJobState")
    handlers.training_job_state(_training_job_failed(f"{prefix}-r7-a1", "bank", "r7"), context)
    (failed,) = emitted(capsys.readouterr().out)
    assert failed["metric"][:2] == (namespace(prefix), "RunFailed")
    assert (failed["dataset"], failed["run_id"]) == ("bank", "r7")
    assert "AlgorithmError: MemoryError" in failed["message"]

    # An evaluation decided by the gate (the stage's result as evaluate returns it), and an
    # evaluation message that cannot be read (a run failed for good, its dataset unknown).
    def decided(record: Any, ports: Ports) -> StageResult:
        run = RunRef("emp", "r8")
        return StageResult(run=run, model_version=5, final=True, note="rejected: not better")

    monkeypatch.setitem(rt.runners, Stage.evaluate, decided)
    message = EvaluationMessage(
        dataset="emp", version=5, run_id="r8", endpoint="e", test_key="k", bucket="b"
    ).model_dump_json()
    event = {"Records": [_sqs_record("m1", message), _sqs_record("m2", "{not json")]}
    assert handlers.evaluate(event, FakeContext("evaluate")) == {"batchItemFailures": []}
    gate, unreadable = emitted(capsys.readouterr().out)
    assert gate["metric"][1] == "Rejected" and (gate["dataset"], gate["version"]) == ("emp", 5)
    assert unreadable["metric"][1] == "RunFailed"
    assert unreadable["dataset"] == handlers.UNIDENTIFIED

    # An evaluation that failed on every delivery (the registry lacks its version) is
    # dead-lettered: its run failed for good. One that will be retried is no alert yet.
    missing = EvaluationMessage(
        dataset="nobody", version=3, run_id="r9", endpoint="e", test_key="k", bucket="b"
    ).model_dump_json()
    monkeypatch.setitem(rt.runners, Stage.evaluate, handlers.STAGES[Stage.evaluate].run)
    retried = _sqs_record("m4", missing)
    last = {**retried, "attributes": {"ApproximateReceiveCount": str(rt.config.max_receives)}}
    answer = handlers.evaluate({"Records": [retried, last]}, FakeContext("evaluate"))
    assert len(answer["batchItemFailures"]) == 2  # both failed; the last then moves to the DLQ
    (dead,) = emitted(capsys.readouterr().out)
    assert dead["metric"][1] == "RunFailed" and (dead["dataset"], dead["run_id"]) == (
        "nobody",
        "r9",
    )
    assert f"dead-lettered after {rt.config.max_receives} deliveries" in dead["message"]

    # A duplicate delivery of a decided evaluation is no new decision.
    def already(record: Any, ports: Ports) -> StageResult:
        return StageResult(run=RunRef("emp", "r8"), duplicate=True, model_version=5, final=True)

    monkeypatch.setitem(rt.runners, Stage.evaluate, already)
    handlers.evaluate({"Records": [_sqs_record("m3", message)]}, FakeContext("evaluate"))
    assert emitted(capsys.readouterr().out) == []
