"""The closed loop: retrain policy decisions, webhook alerts, and the demo-loop scenario through
the real server, the pipeline and the gate."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest
from fastapi.testclient import TestClient

from automlops.config import Manifest, RetrainPolicy
from automlops.demo import breast_cancer_csv, loop_scenario
from automlops.local.runtime import LocalRuntime
from automlops.manifests import load_manifest, save_manifest
from automlops.serving import wire
from automlops.ui.up import build_app, monitor_schedule
from automlops.usecases import retrain_policy
from automlops.usecases.alerts import Alert, AlertKind, AlertSender, Delivery, deliver
from automlops.usecases.lineage import trace
from automlops.usecases.loop import notify_run, turn
from automlops.usecases.retrain_policy import RetrainDecision, Signals, decide
from support import DEMO_DATASET

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class Webhook:
    """A local webhook: answers each POST with the next status of `statuses` (then 200) and
    keeps the bodies it took."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.bodies: list[dict[str, object]] = []
        self.hits = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                hook.hits += 1
                status = hook.statuses.pop(0) if hook.statuses else 200
                if status == 200:
                    hook.bodies.append(json.loads(body))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def decision() -> RetrainDecision:
    return RetrainDecision(
        dataset="d",
        decided_at=NOW.isoformat(),
        champion=1,
        window_start=(NOW - timedelta(hours=1)).isoformat(),
        window_end=NOW.isoformat(),
    )


def test_the_policy_is_off_by_default_and_each_trigger_fires_on_its_own_signal() -> None:
    seen = Signals(
        drifted=["age", "income"],
        metric="roc_auc",
        live_value=0.70,
        test_value=0.80,
        live_rows=50,
        new_labelled_rows=50,
    )
    off = Manifest(dataset="d").retrain
    assert not off.enabled
    assert not decide(off, seen, decision(), None).triggered

    drift = decide(RetrainPolicy(on_drift=["income", "zip"]), seen, decision(), None)
    assert drift.triggered and drift.reasons == ["drift in key column(s) income"]
    assert not decide(RetrainPolicy(on_drift=["zip"]), seen, decision(), None).triggered
    assert decide(RetrainPolicy(on_drift=["*"]), seen, decision(), None).triggered

    drop = RetrainPolicy(on_metric_drop=0.05, min_labels=50)
    assert decide(drop, seen, decision(), None).reasons[0].startswith("live roc_auc 0.7000")
    assert not decide(drop.model_copy(update={"min_labels": 51}), seen, decision(), None).reasons
    assert not decide(RetrainPolicy(on_metric_drop=0.2), seen, decision(), None).reasons
    # A metric where lower is better drops when it rises.
    loss = seen.model_copy(update={"higher_is_better": False, "live_value": 0.9})
    assert decide(drop, loss, decision(), None).triggered

    assert decide(RetrainPolicy(every_labels=50), seen, decision(), None).triggered
    assert not decide(RetrainPolicy(every_labels=51), seen, decision(), None).triggered


def test_the_cool_down_and_missing_rows_hold_a_trigger_back() -> None:
    policy = RetrainPolicy(on_drift=["*"], cooldown_hours=6)
    seen = Signals(drifted=["age"], new_labelled_rows=10)
    held = decide(policy, seen, decision(), NOW - timedelta(hours=5))
    assert held.reasons and not held.triggered and "cooling down" in (held.held_back or "")
    assert decide(policy, seen, decision(), NOW - timedelta(hours=7)).triggered
    empty = decide(policy, seen.model_copy(update={"new_labelled_rows": 0}), decision(), None)
    assert not empty.triggered and empty.held_back == "no labelled captured rows to train on"


def test_upload_names_lead_back_to_their_decision() -> None:
    name = retrain_policy.upload_filename(NOW)
    assert name == "retrain-20261130T120000.000000Z.csv"
    assert retrain_policy.decided_at_of(f"data/d/{name}") == NOW
    # In its upload's own folder, and as named before stamps had microseconds.
    assert retrain_policy.decided_at_of(f"data/d/20261130-120000-ab12cd34/{name}") == NOW
    assert retrain_policy.decided_at_of("data/d/retrain-20261130T120000Z.csv") == NOW
    assert retrain_policy.decided_at_of("data/d/cancer.csv") is None
    decided = retrain_policy.decision_key("d", NOW)
    assert decided == "monitoring/d/20261130T120000.000000Z/retrain.json"


def test_webhook_delivery_retries_with_back_off_and_gives_up_bounded() -> None:
    alert = Alert(kind=AlertKind.drift, dataset="d", message="drift in age")
    waits: list[float] = []
    flaky = Webhook([503, 500])
    try:
        assert deliver(flaky.url, alert, Delivery(attempts=3, backoff_s=0.5), sleep=waits.append)
        assert waits == [0.5, 1.0] and flaky.hits == 3
        assert flaky.bodies[0]["kind"] == "drift" and flaky.bodies[0]["message"] == "drift in age"
        waits.clear()
        flaky.statuses = [400]  # the webhook refuses the body: not retried
        assert not deliver(flaky.url, alert, Delivery(attempts=3), sleep=waits.append)
        assert waits == [] and flaky.hits == 4
    finally:
        flaky.close()
    dead = "http://127.0.0.1:9/hook"  # the discard port: nothing listens
    waits.clear()
    assert not deliver(dead, alert, Delivery(attempts=3, timeout_s=1), sleep=waits.append)
    assert len(waits) == 2


def test_the_sender_never_blocks_and_counts_what_it_drops() -> None:
    sender = AlertSender(None, capacity=1)
    alert = Alert(kind=AlertKind.gate, dataset="d", message="v2: champion")
    assert not sender.send(alert)  # nowhere to send it
    assert sender.stats.queued == 0
    stuck = AlertSender("http://127.0.0.1:9/hook", policy=Delivery(attempts=1), capacity=1)
    sent = [stuck.send(alert) for _ in range(50)]
    assert sent[0] and stuck.stats.dropped >= 1 and stuck.stats.queued + stuck.stats.dropped == 50
    stuck.close()


@pytest.fixture
def runtime(trained_copy: LocalRuntime) -> LocalRuntime:
    return trained_copy


def test_demo_loop_drift_flags_retrains_and_the_gate_promotes(
    runtime: LocalRuntime, webhook: Webhook
) -> None:
    sender = AlertSender(webhook.url)
    lines: list[str] = []
    outcome = loop_scenario(
        runtime, DEMO_DATASET, breast_cancer_csv(), lines.append, rows=200, sender=sender
    )
    sender.close()
    stable, drifted = outcome.stable, outcome.drifted
    # Stable traffic: nothing flagged, the policy looked and held still.
    assert stable.monitor.report.alerts == [] and stable.upload is None
    assert stable.decision is not None and not stable.decision.triggered
    assert stable.monitor.json_key != outcome.drifted.monitor.json_key  # each step's report
    # Drifted traffic: the key columns drift, the live metric drops, a retrain starts.
    report = drifted.monitor.report
    assert report.data_drift is not None
    assert {"mean_radius", "mean_area"} <= set(report.data_drift.drifted)
    assert report.live is not None and report.live.below_test
    decision = drifted.decision
    assert decision is not None and decision.triggered and decision.labelled_rows == 200
    assert decision.reasons[0] == "drift in key column(s) mean_radius, mean_area"
    assert decision.reasons[1].startswith("live roc_auc")
    assert drifted.upload is not None and drifted.upload.key == decision.upload_key
    assert decision.with_training_file == f"data/{DEMO_DATASET}/cancer.csv"
    # The gate promoted the retrained model; its lineage leads back to the decision.
    assert outcome.champion_before == 1 and outcome.champion_after == 2
    v2 = runtime.registry.read(DEMO_DATASET).get(2)
    assert v2.source_key == decision.upload_key
    found = retrain_policy.decision_of(runtime.store, runtime.settings, DEMO_DATASET, v2.source_key)
    assert found == decision
    traced = trace(runtime.store, runtime.settings, DEMO_DATASET, 2)
    assert traced.source.key == v2.source_key and traced.trigger == decision
    assert trace(runtime.store, runtime.settings, DEMO_DATASET, 1).trigger is None
    # Another look within the cool-down holds the retrain back.
    again = loop_scenario(runtime, DEMO_DATASET, breast_cancer_csv(), lines.append, rows=40)
    assert again.drifted.upload is None and again.drifted.decision is not None
    assert "cooling down" in (again.drifted.decision.held_back or "")
    kinds = [body["kind"] for body in webhook.bodies]
    assert {"drift", "quality", "retrain", "gate"} <= set(kinds), kinds
    # The dashboard's Monitoring page shows each step.
    client = TestClient(build_app(runtime))
    page = client.get(f"/ui/monitoring/{DEMO_DATASET}")
    assert page.status_code == 200
    text = page.text
    assert "drift in key column(s) mean_radius, mean_area" in text
    assert decision.upload_key is not None and decision.upload_key in text
    assert "Live vs test metrics" in text and "<polyline" in text
    index = client.get("/ui/monitoring")
    assert index.status_code == 200 and f"/ui/monitoring/{DEMO_DATASET}" in index.text
    assert client.get("/ui/monitoring/nope").status_code == 200  # not monitored yet
    assert "Not monitored yet" in client.get("/ui/monitoring/nope").text


def test_up_runs_the_monitor_on_its_schedule_and_alerts_on_run_ends(
    runtime: LocalRuntime, webhook: Webhook
) -> None:
    sender = AlertSender(webhook.url)
    stop = threading.Event()
    schedule = threading.Thread(target=monitor_schedule, args=(runtime, stop, 0.05, sender))
    schedule.start()
    bucket = runtime.settings.buckets.model_monitoring
    try:
        for _ in range(400):  # a turn writes monitor.json; give a busy machine 20 s
            if any(k.endswith("monitor.json") for k in runtime.store.list(bucket, "monitoring/")):
                break
            stop.wait(0.05)
    finally:
        stop.set()
        schedule.join()
    assert any(k.endswith("monitor.json") for k in runtime.store.list(bucket, "monitoring/"))
    failed = runtime.runlog.list(DEMO_DATASET, limit=1)[0].model_copy(
        update={"status": "failed", "error": "boom"}
    )
    notify_run(runtime.ports(), sender, failed)
    sender.close()
    assert webhook.bodies[-1]["kind"] == "run_failed" and "boom" in str(webhook.bodies[-1])


def test_a_refused_retrain_upload_is_recorded_not_raised(runtime: LocalRuntime) -> None:
    bucket = runtime.settings.buckets.data
    manifest = load_manifest(runtime.store, bucket, DEMO_DATASET)
    # The manifest now names a target the captured rows do not have: the upload is refused.
    changed = {"retrain": RetrainPolicy(every_labels=3), "target": "outcome"}
    save_manifest(runtime.store, bucket, manifest.model_copy(update=changed))
    app = runtime.create_app()
    frame = pl.read_csv(io.BytesIO(breast_cancer_csv())).head(3)
    with TestClient(app) as client:
        ids = [
            client.post(
                f"/endpoints/{DEMO_DATASET}/invocations", json={"instances": [row]}
            ).headers[wire.INFERENCE_ID_HEADER]
            for row in frame.drop("diagnosis").to_dicts()
        ]
        body = [{"id": i, "label": y} for i, y in zip(ids, frame["diagnosis"], strict=True)]
        assert client.post(f"/endpoints/{DEMO_DATASET}/feedback", json=body).status_code == 200
    done = turn(runtime.ports(), DEMO_DATASET)
    assert done.upload is None and done.decision is not None and not done.decision.triggered
    assert done.decision.reasons == ["3 new labelled rows (every 3)"]
    assert "the upload was refused: target column 'outcome'" in (done.decision.held_back or "")
    stored = runtime.store.get(runtime.settings.buckets.model_monitoring, done.decision_key or "")
    assert RetrainDecision.model_validate_json(stored) == done.decision
