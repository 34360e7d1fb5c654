"""One turn of the loop for a dataset: monitor, alert, and retrain when its policy says so.

What `automlops monitor`, `automlops up`'s schedule, `automlops demo --loop` and the AWS
`monitor` function (EventBridge schedule) run. The monitor stage judges the traffic; the
dataset's `RetrainPolicy` (manifest) decides on its findings; a triggered retrain is a new
upload, so the pipeline and the gate take it from there. Alerts go to an `AlertSink` (locally
the manifest's webhook, else the sender's default; CloudWatch metrics on AWS) and never hold
the turn up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from automlops import keys
from automlops.config import RetrainPolicy
from automlops.local.runlog import RunRecord
from automlops.manifests import load_manifest
from automlops.ml.evaluation.metrics import HIGHER_IS_BETTER
from automlops.ports import Ports
from automlops.registry import Registry
from automlops.stages.labelled import labelled_rows, to_csv, with_training_file
from automlops.stages.monitor import MonitorReport, MonitorResult, monitor
from automlops.tabular.schema import DatasetSchema
from automlops.usecases import retrain_policy
from automlops.usecases.alerts import (
    Alert,
    AlertKind,
    AlertSink,
    failed_run_alert,
    gate_alert,
    monitor_alerts,
)
from automlops.usecases.retrain_policy import RetrainDecision, Signals
from automlops.usecases.upload import Uploaded, UploadRefused

log = logging.getLogger(__name__)


@dataclass
class LoopTurn:
    """What one turn found and did."""

    monitor: MonitorResult
    decision: RetrainDecision | None = None  # None: the dataset has no retrain policy
    decision_key: str | None = None
    upload: Uploaded | None = None
    alerts: list[Alert] = field(default_factory=list)


def turn(
    ports: Ports,
    dataset: str,
    *,
    since: datetime | None = None,
    sender: AlertSink | None = None,
) -> LoopTurn:
    """Monitor `dataset`'s champion over [since, now), alert on what it found, and apply the
    retrain policy (NotFoundError when there is no champion)."""
    result = monitor(ports, dataset, since=since)
    report = result.report
    manifest = load_manifest(ports.store, ports.settings.buckets.data, dataset)
    done = LoopTurn(monitor=result)
    done.alerts += monitor_alerts(dataset, report.alerts, report.champion, result.json_key)
    if manifest.retrain.enabled:
        _retrain(ports, done, manifest.retrain)
    if sender is not None:
        for alert in done.alerts:
            sender.send(alert, manifest.alert_webhook)
    return done


@dataclass
class LoopSweep:
    """One turn per dataset with a champion, and the datasets whose turn failed (why)."""

    turns: dict[str, LoopTurn] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def turn_all(
    ports: Ports, *, since: datetime | None = None, sender: AlertSink | None = None
) -> LoopSweep:
    """`turn` for every dataset with a champion (the schedule's entry point); a dataset whose
    turn fails is logged and named in `failures`, so one cannot stop the others."""
    registry = Registry(ports.store, ports.settings.buckets.model_output)
    sweep = LoopSweep()
    for dataset in registry.datasets():
        try:
            if registry.read(dataset).champion is None:
                continue
            sweep.turns[dataset] = turn(ports, dataset, since=since, sender=sender)
        except Exception as exc:  # any failure: one bad dataset must not block the others
            log.exception("monitoring %s failed", dataset)
            sweep.failures[dataset] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
    return sweep


def _retrain(ports: Ports, done: LoopTurn, policy: RetrainPolicy) -> None:
    report = done.monitor.report
    dataset, settings = report.dataset, ports.settings
    champion = (
        Registry(ports.store, settings.buckets.model_output).read(dataset).get(report.champion or 0)
    )
    schema = DatasetSchema.model_validate_json(
        ports.store.get(settings.buckets.automl_data, keys.schema_key(dataset, champion.run_id))
    )
    last = retrain_policy.last_retrain(ports.store, settings, dataset)
    start = datetime.fromisoformat(report.window_start)
    until = datetime.fromisoformat(report.window_end)
    if last is not None and last.rows_until > start:
        start = last.rows_until  # rows up to there were the last retrain's data
    target = schema.target
    rows = labelled_rows(ports, dataset, champion, target.name, target.task, start, until)
    decision = RetrainDecision(
        dataset=dataset,
        decided_at=report.created_at,
        champion=report.champion,
        window_start=start.isoformat(),
        window_end=until.isoformat(),
        monitor_report=done.monitor.json_key,
    )
    decision = retrain_policy.decide(
        policy, signals(report, rows.height), decision, None if last is None else last.decided_at
    )
    if decision.triggered:
        decided_at = datetime.fromisoformat(report.created_at)
        if policy.with_training_file:
            csv = with_training_file(ports, champion, rows)
            decision.with_training_file = champion.source_key
        else:
            csv = to_csv(rows)
        try:
            done.upload = retrain_policy.start_retrain(ports.store, settings, decision, csv)
        except UploadRefused as exc:  # e.g. a manifest changed since: recorded, not raised
            decision.triggered, decision.held_back = False, f"the upload was refused: {exc}"
            done.decision = decision
            done.decision_key = retrain_policy.record(ports.store, settings, decision)
            return
        decision.upload_key = done.upload.key
        done.alerts.append(
            Alert(
                kind=AlertKind.retrain,
                dataset=dataset,
                message=f"retraining on {decision.labelled_rows} labelled rows: "
                + "; ".join(decision.reasons),
                version=report.champion,
                report=retrain_policy.decision_key(dataset, decided_at),
            )
        )
    done.decision = decision
    done.decision_key = retrain_policy.record(ports.store, settings, decision)


def signals(report: MonitorReport, new_labelled_rows: int) -> Signals:
    """A monitor report in the retrain policy's terms."""
    live = report.live
    return Signals(
        drifted=[] if report.data_drift is None else list(report.data_drift.drifted),
        metric=None if live is None else live.metric,
        live_value=None if live is None else live.value,
        test_value=None if live is None else live.test_value,
        higher_is_better=True if live is None else HIGHER_IS_BETTER[live.metric],
        live_rows=0 if live is None else live.rows,
        new_labelled_rows=new_labelled_rows,
    )


def run_alert(record: RunRecord) -> Alert | None:
    """The alert a finished run calls for: its failure, or the gate's decision on its model."""
    if record.status == "failed":
        return failed_run_alert(record.dataset, record.id, record.error)
    if record.status == "succeeded" and record.model_version is not None and record.note:
        return gate_alert(record.dataset, record.model_version, record.note, record.id)
    return None


def notify_run(ports: Ports, sender: AlertSink, record: RunRecord) -> None:
    """Send `run_alert(record)` to the dataset's webhook (else the sender's default)."""
    alert = run_alert(record)
    if alert is None:
        return
    try:
        url = load_manifest(ports.store, ports.settings.buckets.data, record.dataset).alert_webhook
    except Exception:  # an unreadable manifest must not cost the alert
        url = None
    sender.send(alert, url)
