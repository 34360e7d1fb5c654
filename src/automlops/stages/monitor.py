"""The monitor stage: how the champion's live traffic and quality compare with what it learned.

For one dataset and its champion, over a time window of captured traffic (`stages.traffic`):
data drift of the served rows against the champion's training split (the upload drift code,
`ml.evaluation.drift`, one implementation), prediction drift (the answers against the
training target's distribution), volume and refused requests per hour, and, where labels came
back, the live primary metric with a bootstrap confidence interval against the champion's
test-split value. The report is written to the monitoring bucket as monitor.json and a small
monitor.html (`keys.monitor_prefix`). It decides nothing: a retrain policy or an alert reads
`MonitorReport.alerts` (the seam left for them).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import jinja2
import numpy as np
from pydantic import BaseModel, Field

from automlops import keys
from automlops.config import Task
from automlops.errors import NotFoundError
from automlops.ml.columns.target import TargetSpec
from automlops.ml.evaluation import drift
from automlops.ml.evaluation.gate import bootstrap_weights, primary
from automlops.ml.evaluation.metrics import HIGHER_IS_BETTER
from automlops.ports import Ports
from automlops.registry import ModelVersion, Registry
from automlops.reports.escaping import html_finalize, inert_json
from automlops.serving import wire

# The monitor reads the champion's training data as the upload's drift check does.
from automlops.stages.drift_check import read_sample, training_view
from automlops.stages.traffic import (
    LabelJoin,
    Traffic,
    ingest_feedback_files,
    join_labels,
    read_labels,
    read_traffic,
)
from automlops.tabular.schema import DatasetSchema

DEFAULT_WINDOW = timedelta(hours=24)
ERROR_RATE_ALERT = 0.05  # refused requests above this share of the window's requests
MIN_LABELS = 30  # live metrics are reported from this many labelled rows on
RESAMPLES = 500
CONFIDENCE = 0.95

log = logging.getLogger(__name__)


class HourVolume(BaseModel):
    """Traffic of one UTC hour."""

    hour: str  # yyyy-mm-ddThh
    requests: int
    rows: int
    errors: int


class LiveMetric(BaseModel):
    """The champion's primary metric on the labelled captured rows, against its test split."""

    metric: str
    value: float
    low: float  # bootstrap interval at `confidence`
    high: float
    confidence: float
    rows: int
    test_value: float | None  # the champion's value on its test split (None: not recorded)
    below_test: bool  # the whole interval is worse than the test value
    accuracy: float | None = None  # classification: share of labels the answer got right


class MonitorReport(BaseModel):
    """monitor.json: one look at a dataset's live traffic and quality."""

    dataset: str
    created_at: str
    champion: int | None
    window_start: str
    window_end: str
    requests: int = 0
    rows: int = 0
    errors: int = 0
    error_rate: float = 0.0
    unreadable: int = 0
    volume: list[HourVolume] = Field(default_factory=list)
    data_drift: drift.DriftReport | None = None
    prediction_drift: drift.ColumnDrift | None = None
    labels: LabelJoin = Field(default_factory=LabelJoin)
    live: LiveMetric | None = None
    alerts: list[str] = Field(default_factory=list)  # what a person (or a policy) should see
    notes: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class MonitorResult:
    """The report and where it was written."""

    report: MonitorReport
    json_key: str
    html_key: str


def monitor(
    ports: Ports,
    dataset: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> MonitorResult:
    """Monitor `dataset`'s champion over [since, until) (default: the last 24 hours) and
    write the report; NotFoundError when the dataset has no champion."""
    store, buckets = ports.store, ports.settings.buckets
    now = ports.clock()
    until = until or now
    since = since or until - DEFAULT_WINDOW
    champion = Registry(store, buckets.model_output).read(dataset).champion_version()
    if champion is None:
        raise NotFoundError(f"dataset {dataset!r} has no champion to monitor")
    schema = DatasetSchema.model_validate_json(
        store.get(buckets.automl_data, keys.schema_key(dataset, champion.run_id))
    )
    target = schema.target
    report = MonitorReport(
        dataset=dataset,
        created_at=now.isoformat(),
        champion=champion.version,
        window_start=since.isoformat(),
        window_end=until.isoformat(),
    )
    traffic = read_traffic(
        store, buckets.model_monitoring, dataset, champion.version, since, until, target.task.value
    )
    _volume(report, traffic)
    if traffic.height:
        _drift(ports, report, champion, traffic, target)
    else:
        report.notes.append("no captured rows in the window: nothing to compare")
    ingest_feedback_files(
        store, buckets.data, buckets.model_monitoring, dataset, now, report.labels
    )
    latest = read_labels(store, buckets.model_monitoring, dataset, report.labels)
    labelled = join_labels(traffic, latest, report.labels)
    report.live = _live(report, traffic, labelled, target, champion)
    report.alerts = _alerts(report)
    prefix = keys.monitor_prefix(dataset, now)
    json_key, html_key = prefix + "monitor.json", prefix + "monitor.html"
    # HTML first, JSON last: a reader that finds the JSON finds the page too.
    store.put(buckets.model_monitoring, html_key, render_html(report).encode())
    store.put(
        buckets.model_monitoring, json_key, inert_json(report.model_dump_json(indent=1)).encode()
    )
    return MonitorResult(report=report, json_key=json_key, html_key=html_key)


@dataclass(frozen=True)
class MonitorSweep(Mapping[str, MonitorResult]):
    """One scheduled look at every dataset with a champion: the results by dataset (what the
    mapping holds) and, apart, the datasets whose monitor failed, with why."""

    results: dict[str, MonitorResult]
    failures: dict[str, str]  # dataset -> the error, one line

    def __getitem__(self, dataset: str) -> MonitorResult:
        return self.results[dataset]

    def __iter__(self) -> Iterator[str]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)


def monitor_all(ports: Ports, *, since: datetime | None = None) -> MonitorSweep:
    """`monitor` every dataset that has a champion (what a schedule runs: `automlops up`
    every N minutes, an EventBridge rule on AWS). A dataset whose monitor fails is logged and
    named in `failures`, and the others are monitored all the same."""
    registry = Registry(ports.store, ports.settings.buckets.model_output)
    results: dict[str, MonitorResult] = {}
    failures: dict[str, str] = {}
    for dataset in registry.datasets():
        try:
            if registry.read(dataset).champion is None:
                continue
            results[dataset] = monitor(ports, dataset, since=since)
        except Exception as exc:  # any failure: one bad dataset must not block the others
            log.exception("monitoring %s failed", dataset)
            failures[dataset] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
    return MonitorSweep(results=results, failures=failures)


def _volume(report: MonitorReport, traffic: Traffic) -> None:
    rows_by_hour = dict(traffic.answers.group_by("hour").len().iter_rows())
    report.volume = [
        HourVolume(
            hour=hour,
            requests=traffic.requests[hour],
            rows=rows_by_hour.get(hour, 0),
            errors=traffic.errors[hour],
        )
        for hour in sorted(traffic.requests)
    ]
    report.requests = sum(traffic.requests.values())
    report.errors = sum(traffic.errors.values())
    report.rows = traffic.height
    report.error_rate = report.errors / report.requests if report.requests else 0.0
    report.unreadable = traffic.unreadable
    if traffic.unreadable:
        report.notes.append(f"{traffic.unreadable} captured record(s) could not be read")


def _drift(
    ports: Ports,
    report: MonitorReport,
    champion: ModelVersion,
    traffic: Traffic,
    target: TargetSpec,
) -> None:
    """Data drift of the served rows and prediction drift of the answers, both against the
    champion's training split."""
    buckets = ports.settings.buckets
    train_key = keys.split_key(report.dataset, champion.run_id, "train")
    if ports.store.head(buckets.automl_data, train_key) is None:
        report.notes.append(f"the champion's training data {train_key} is gone: no drift check")
        return
    baseline, _ = read_sample(ports.store.get(buckets.automl_data, train_key), ports.settings.seed)
    kinds, known, _ = training_view(ports, report.dataset, champion.run_id, baseline)
    current = traffic.frame()
    columns, new, vanished, skipped = drift.compare_frames(
        baseline,
        current,
        {k: v for k, v in kinds.items() if k != target.name},
        known_columns=known,
    )
    report.data_drift = drift.DriftReport(
        dataset=report.dataset,
        run_id=f"monitor-{report.created_at}",
        source_key=keys.capture_prefix(report.dataset, champion.version),
        created_at=report.created_at,
        action="warn",
        baseline=drift.BaselineRef(
            version=champion.version,
            run_id=champion.run_id,
            train_key=train_key,
            rows=baseline.height,
        ),
        rows=current.height,
        columns=columns,
        new_columns=new,
        vanished_columns=vanished,
        skipped=skipped,
        drifted=[c.name for c in columns if c.drifted] + vanished,
    )
    if target.name not in baseline.columns:
        return
    if target.task is Task.regression:
        served = traffic.answers["value"].drop_nulls()
        compared = drift.numeric_drift("prediction", baseline[target.name], served)
    else:
        served = traffic.answers["label"].drop_nulls()
        if served.len() == 0:
            report.notes.append("answers carry no labels (text/csv): no prediction drift")
            return
        compared = drift.categorical_drift("prediction", baseline[target.name], served)
    compared.role = "target"
    report.prediction_drift = compared


def _live(
    report: MonitorReport,
    traffic: Traffic,
    labelled: list[tuple[int, wire.LabelRecord]],
    target: TargetSpec,
    champion: ModelVersion,
) -> LiveMetric | None:
    """The primary metric on labelled rows with a bootstrap interval (None: too few)."""
    truth, scores, right = _scored(traffic, labelled, target)
    if len(truth) < MIN_LABELS:
        if labelled:
            report.notes.append(
                f"{len(truth)} labelled row(s) usable: live metrics need {MIN_LABELS}"
            )
        return None
    name, metric, sign = primary(target.task)
    y, s = np.asarray(truth), np.asarray(scores)
    value = sign * float(metric(y, s, np.ones((1, len(y))))[0])
    if math.isnan(value):
        report.notes.append(f"live {name} is undefined on these labels (a single class?)")
        return None
    rng = np.random.default_rng(0)
    draws = np.concatenate([metric(y, s, w) for w in bootstrap_weights(len(y), RESAMPLES, rng)])
    draws = sign * draws[~np.isnan(draws)]
    alpha = (1 - CONFIDENCE) / 2
    low, high = (float(v) for v in np.quantile(draws, [alpha, 1 - alpha]))
    test_value = champion.metrics.get(name)
    higher = HIGHER_IS_BETTER[name]
    below = test_value is not None and (high < test_value if higher else low > test_value)
    return LiveMetric(
        metric=name,
        value=value,
        low=low,
        high=high,
        confidence=CONFIDENCE,
        rows=len(y),
        test_value=test_value,
        below_test=below,
        accuracy=None if right is None else float(np.mean(right)),
    )


def _scored(
    traffic: Traffic, labelled: list[tuple[int, wire.LabelRecord]], target: TargetSpec
) -> tuple[list[float], list[object], list[bool] | None]:
    """(truth, score, answer right?) of the labelled rows the primary metric can use: truth
    as 0/1 (binary), class index (multiclass) or value; score as P(positive), the probability
    row, or the value."""
    truth: list[float] = []
    scores: list[object] = []
    right: list[bool] = []
    index = {label: i for i, label in enumerate(target.labels)}
    # Only the labelled rows' answers are taken out of the columns.
    at = [row for row, _ in labelled]
    answers = traffic.answers[at] if at else traffic.answers.clear()
    served_labels, served_values = answers["label"].to_list(), answers["value"].to_list()
    p_positive, probabilities = answers["p_positive"].to_list(), traffic.probabilities_at(at)
    for n, (_, record) in enumerate(labelled):
        label, value = record.label, record.value
        if target.task is Task.regression:
            if value is None or served_values[n] is None:
                continue
            truth.append(float(value))
            scores.append(served_values[n])
            continue
        if label not in index:
            continue
        given = probabilities[n]
        if target.task is Task.binary:
            p = p_positive[n]
            if given is not None and target.positive is not None:
                p = given.get(target.positive)
            if p is None:
                continue
            truth.append(float(label == target.positive))
            scores.append(p)
        else:
            if given is None:
                continue
            truth.append(float(index[label]))
            scores.append([given.get(name, 0.0) for name in target.labels])
        if served_labels[n] is not None:
            right.append(served_labels[n] == label)
    return truth, scores, (right if right and target.task is not Task.regression else None)


def _alerts(report: MonitorReport) -> list[str]:
    alerts = []
    if report.data_drift is not None and report.data_drift.drifted:
        alerts.append(
            f"data drift in {len(report.data_drift.drifted)} column(s): "
            f"{report.data_drift.describe()}"
        )
    if report.prediction_drift is not None and report.prediction_drift.drifted:
        alerts.append(f"prediction drift: {', '.join(report.prediction_drift.reasons)}")
    if report.requests and report.error_rate > ERROR_RATE_ALERT:
        alerts.append(f"{report.error_rate:.1%} of requests refused ({report.errors})")
    live = report.live
    if live is not None and live.below_test:
        alerts.append(
            f"live {live.metric} {live.value:.3f} [{live.low:.3f}, {live.high:.3f}] on "
            f"{live.rows} labelled rows is worse than the test split's {live.test_value:.3f}"
        )
    return alerts


_HTML = jinja2.Environment(autoescape=True, finalize=html_finalize).from_string(
    """<!doctype html><html><head><meta charset="utf-8">
<title>Monitoring {{ r.dataset }}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}.alert{color:#b00}</style>
</head><body>
<h1>Monitoring {{ r.dataset }} (champion v{{ r.champion }})</h1>
<p>{{ r.window_start }} to {{ r.window_end }}: {{ r.requests }} requests, {{ r.rows }} rows,
{{ r.errors }} refused ({{ "%.1f" % (100 * r.error_rate) }} %).</p>
{% if r.alerts %}<ul>{% for a in r.alerts %}<li class="alert">{{ a }}</li>{% endfor %}</ul>
{% else %}<p>No alerts.</p>{% endif %}
{% if r.live %}<h2>Live quality</h2><p>{{ r.live.metric }} {{ "%.4f" % r.live.value }}
[{{ "%.4f" % r.live.low }}, {{ "%.4f" % r.live.high }}] on {{ r.live.rows }} labelled rows;
test split {{ r.live.test_value }}.</p>{% endif %}
<p>Labels: {{ r.labels.labels }} received, {{ r.labels.duplicates }} duplicates,
{{ r.labels.matched }} matched, {{ r.labels.unknown }} unknown ids.</p>
<h2>Volume per hour</h2><table><tr><th>hour</th><th>requests</th><th>rows</th><th>refused</th>
</tr>{% for v in r.volume %}<tr><td>{{ v.hour }}</td><td>{{ v.requests }}</td>
<td>{{ v.rows }}</td><td>{{ v.errors }}</td></tr>{% endfor %}</table>
{% if r.data_drift %}<h2>Data drift</h2><table><tr><th>column</th><th>PSI</th><th>p</th>
<th>drifted</th></tr>{% for c in r.data_drift.columns %}<tr><td>{{ c.name }}</td>
<td>{{ "%.3f" % c.psi }}</td><td>{{ "%.2g" % c.p_value }}</td><td>{{ c.reasons | join(", ") }}
</td></tr>{% endfor %}</table>{% endif %}
{% if r.prediction_drift %}<h2>Prediction drift</h2><p>PSI
{{ "%.3f" % r.prediction_drift.psi }} {{ r.prediction_drift.reasons | join(", ") }}</p>{% endif %}
{% for n in r.notes %}<p>{{ n }}</p>{% endfor %}
</body></html>
"""
)


def render_html(report: MonitorReport) -> str:
    """monitor.html: the report for people (every value escaped, formulas defused)."""
    return _HTML.render(r=report)
