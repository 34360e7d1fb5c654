"""The dashboard's Monitoring pages: per dataset, what the monitor runs found over time (volume,
drift, the live metric against the test split), the drifted columns of the latest run and the
retrain decisions the policy took."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from automlops.errors import AutomlopsError
from automlops.local.runtime import LocalRuntime
from automlops.stages.monitor import MonitorReport
from automlops.ui import views
from automlops.ui.context import UiContext, valid_dataset
from automlops.usecases.retrain_policy import DECISION_FILE, RetrainDecision

MAX_RUNS = 48  # monitor runs shown, newest last (two days at one an hour)
_REPORT_FILE = "monitor.json"


@dataclass(frozen=True)
class MonitorRun:
    """One monitor run: its report, where it is, and the retrain decision it led to."""

    report: MonitorReport
    html_key: str
    decision: RetrainDecision | None


@dataclass(frozen=True)
class Series:
    """One time series as an inline SVG polyline (points already scaled to the box)."""

    title: str
    points: str
    low: float | None
    high: float | None
    last: float | None
    reference: str = ""  # a horizontal line's points (the test-split value), "" for none
    dots: tuple[tuple[float, float], ...] = ()  # each measured run (one run draws no line)
    counts: bool = False  # whole numbers (shown without decimals)


def monitor_runs(runtime: LocalRuntime, dataset: str, limit: int = MAX_RUNS) -> list[MonitorRun]:
    """The newest `limit` monitor runs of `dataset`, oldest first; unreadable ones skipped."""
    bucket = runtime.settings.buckets.model_monitoring
    listed = runtime.store.list(bucket, f"monitoring/{dataset}/")
    reports = [k for k in listed if k.endswith("/" + _REPORT_FILE)][-limit:]
    decisions = {k.rsplit("/", 1)[0] for k in listed if k.endswith("/" + DECISION_FILE)}
    runs = []
    for key in reports:
        prefix = key.rsplit("/", 1)[0]
        with contextlib.suppress(AutomlopsError, ValidationError, ValueError):
            report = MonitorReport.model_validate_json(runtime.store.get(bucket, key))
            decision = None
            if prefix in decisions:
                raw = runtime.store.get(bucket, f"{prefix}/{DECISION_FILE}")
                decision = RetrainDecision.model_validate_json(raw)
            runs.append(MonitorRun(report, f"{prefix}/monitor.html", decision))
    return runs


def series(
    title: str,
    values: list[float | None],
    reference: float | None = None,
    width: int = 320,
    height: int = 80,
    counts: bool = False,
) -> Series:
    """`values` (one per run, None where unmeasured) scaled into a width x height box."""
    known = [v for v in values if v is not None]
    if reference is not None:
        known.append(reference)
    if not known:
        return Series(title, "", None, None, None, counts=counts)
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    step = width / max(len(values) - 1, 1)

    def y(v: float) -> float:
        return round(height - (v - low) / span * height, 1)

    dots = tuple((round(i * step, 1), y(v)) for i, v in enumerate(values) if v is not None)
    points = " ".join(f"{x},{y_}" for x, y_ in dots)
    line = "" if reference is None else f"0,{y(reference)} {width},{y(reference)}"
    last = next((v for v in reversed(values) if v is not None), None)
    return Series(title, points, low, high, last, line, dots, counts)


def monitoring_view(runtime: LocalRuntime, dataset: str) -> dict[str, Any]:
    """What the dataset's Monitoring page shows."""
    runs = monitor_runs(runtime, dataset)
    reports = [r.report for r in runs]
    live = [r.live for r in reports]
    test = next((x.test_value for x in reversed(live) if x is not None), None)
    metric = next((x.metric for x in reversed(live) if x is not None), None)
    charts = [
        series("Rows served", [float(r.rows) for r in reports], counts=True),
        series("Refused share", [r.error_rate for r in reports]),
        series(
            "Drifted columns",
            [None if r.data_drift is None else float(len(r.data_drift.drifted)) for r in reports],
            counts=True,
        ),
        series(
            f"Live {metric or 'metric'} (line: test split)",
            [None if x is None else x.value for x in live],
            test,
        ),
    ]
    return {
        "runs": runs,
        "latest": runs[-1] if runs else None,
        "charts": charts,
        "decisions": [r.decision for r in runs if r.decision is not None and r.decision.reasons],
    }


def build_monitoring_pages(ui: UiContext) -> APIRouter:
    """GET /monitoring (datasets) and /monitoring/{dataset}; reading needs what every page
    needs."""
    pages = APIRouter(dependencies=[Depends(ui.require_read)])
    runtime = ui.runtime

    @pages.get("/monitoring")
    def monitoring_index(request: Request) -> Response:
        """Datasets with the alerts of their latest monitor run."""
        items = []
        for name in views.dataset_names(runtime):
            runs = monitor_runs(runtime, name, limit=1)
            items.append({"name": name, "latest": runs[-1] if runs else None})
        return ui.render(
            request, "monitoring_index.html", nav="monitoring", title="Monitoring", datasets=items
        )

    @pages.get("/monitoring/{dataset}")
    def monitoring(request: Request, dataset: str) -> Response:
        """One dataset's monitor runs over time."""
        name = valid_dataset(dataset)
        return ui.render(
            request,
            "monitoring.html",
            nav="monitoring",
            title=f"Monitoring {name}",
            dataset=name,
            **monitoring_view(runtime, name),
        )

    return pages
