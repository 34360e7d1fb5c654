"""Alerts on AWS: one CloudWatch metric per alert, written as Embedded Metric Format log lines.

The functions' logs are already shipped to CloudWatch Logs, which turns an EMF line into a
metric datum: no API call, no permission beyond the logs the functions have. Each alert is a
count of 1 under the stack's namespace (`<prefix>/alerts`), named by its kind and dimensioned
by its dataset (Powertools adds the service), with its message, version, run and report as
properties of the log line, so a log search finds what a metric counts. The stack alarms on
the metrics that mean trouble (drift, quality drop, failed runs) summed over every dataset
(a Metrics Insights query), to the alarm topic.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from automlops.usecases.alerts import Alert, AlertKind

DIMENSION = "dataset"
# The metric each kind of alert counts (a gate decision: by its outcome).
METRIC_NAMES = {
    AlertKind.drift: "Drift",
    AlertKind.quality: "QualityDrop",
    AlertKind.retrain: "RetrainTriggered",
    AlertKind.run_failed: "RunFailed",
}
GATE_METRICS = {"promoted": "Promoted", "rejected": "Rejected"}


def namespace(name_prefix: str) -> str:
    """The stack's alert metrics' namespace (serverless.yml's alarms query it)."""
    return f"{name_prefix}/alerts"


def metric_name(alert: Alert) -> str:
    """The metric an alert counts."""
    if alert.kind is AlertKind.gate:
        return GATE_METRICS[alert.decision or "rejected"]
    return METRIC_NAMES[alert.kind]


class CloudWatchAlerts:
    """An `AlertSink` writing each alert as an EMF metric to the function's log (stdout)."""

    def __init__(self, name_prefix: str) -> None:
        self.namespace = namespace(name_prefix)

    def send(self, alert: Alert, url: str | None = None) -> bool:
        """Emit the alert's metric; `url` (a webhook) is not used on AWS. True: emitted."""
        with single_metric(
            name=metric_name(alert), unit=MetricUnit.Count, value=1, namespace=self.namespace
        ) as metric:
            metric.add_dimension(name=DIMENSION, value=alert.dataset)
            metric.add_metadata(key="alert", value=alert.kind.value)
            metric.add_metadata(key="message", value=alert.message[:1000])
            for key in ("version", "run_id", "report", "decision"):
                value = getattr(alert, key)
                if value is not None:
                    metric.add_metadata(key=key, value=value)
        return True
