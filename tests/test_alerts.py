"""The alerts the code that notices trouble makes (`usecases.alerts`), whichever sink takes them."""

from __future__ import annotations

from automlops.usecases.alerts import (
    AlertKind,
    failed_run_alert,
    gate_alert,
    monitor_alerts,
)


def test_a_monitor_report_s_lines_become_drift_and_quality_alerts() -> None:
    lines = [
        "data drift in 2 column(s): age, balance",
        "prediction drift: share of yes 0.31 vs 0.11",
        "live roc_auc 0.71 vs 0.93 on the test split (1,200 labelled rows)",
        "4.0% of requests refused (12)",
    ]
    alerts = monitor_alerts("bank", lines, 3, "monitoring/bank/t/monitor.json")
    assert [a.kind for a in alerts] == [
        AlertKind.drift,
        AlertKind.drift,
        AlertKind.quality,
        AlertKind.quality,
    ]
    assert [a.message for a in alerts] == lines
    assert {(a.dataset, a.version, a.report) for a in alerts} == {
        ("bank", 3, "monitoring/bank/t/monitor.json")
    }
    assert monitor_alerts("bank", [], 3, None) == []


def test_a_gate_alert_says_promoted_or_rejected_from_the_evaluation_note() -> None:
    promoted = gate_alert("bank", 4, "champion: first model of the dataset", "run-1")
    rejected = gate_alert("bank", 5, "rejected: roc_auc 0.90 is not above 0.93", "run-2")
    assert promoted is not None and rejected is not None
    assert (promoted.kind, promoted.decision, promoted.version) == (AlertKind.gate, "promoted", 4)
    assert (rejected.decision, rejected.run_id) == ("rejected", "run-2")
    assert rejected.message == "v5: rejected: roc_auc 0.90 is not above 0.93"
    # A note that is no gate decision (e.g. an evaluation found done already) is no alert.
    assert gate_alert("bank", 5, "", "run-2") is None
    assert gate_alert("bank", 5, "candidate: waiting", "run-2") is None


def test_a_failed_run_alert_names_the_run_and_its_error() -> None:
    alert = failed_run_alert("bank", "r-9", "the target column is missing")
    assert (alert.kind, alert.dataset, alert.run_id) == (AlertKind.run_failed, "bank", "r-9")
    assert alert.message == "run r-9 failed: the target column is missing"
    assert "no error recorded" in failed_run_alert("bank", None, None).message
