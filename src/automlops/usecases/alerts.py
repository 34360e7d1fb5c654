"""Alerts: what a person should hear about (drift, a live quality drop, a retrain, a gate
decision, a failed run), made here from what the code that notices them knows, and sent to an
`AlertSink`: locally a webhook, on AWS CloudWatch metrics (`aws.alert_metrics`).

Webhook delivery is off the caller's path: `AlertSender.send` queues and returns at once; a
background thread posts, retrying a refused or unreachable webhook with doubling back-off a
bounded number of times. A full queue drops the alert and counts it, so a dead webhook never
slows a stage.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, Protocol

import httpx
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)


class AlertKind(StrEnum):
    """What an alert is about."""

    drift = "drift"
    quality = "quality"
    retrain = "retrain"
    gate = "gate"
    run_failed = "run_failed"


class Alert(BaseModel):
    """The webhook's JSON body."""

    kind: AlertKind
    dataset: str
    message: str
    at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())
    version: int | None = None  # the model version it concerns
    run_id: str | None = None
    report: str | None = None  # the key of the report that says more
    decision: Literal["promoted", "rejected"] | None = None  # a gate alert's outcome


class AlertSink(Protocol):
    """Where alerts go: `send` never blocks the caller nor raises for a failed delivery;
    `url` is the dataset's own webhook (manifest), which a sink without webhooks ignores."""

    def send(self, alert: Alert, url: str | None = None) -> bool: ...


# The stage note of an evaluation starts with the status its gate gave the candidate.
_GATE_OUTCOMES: dict[str, Literal["promoted", "rejected"]] = {
    "champion": "promoted",
    "rejected": "rejected",
}


def monitor_alerts(
    dataset: str, lines: list[str], version: int | None, report: str | None
) -> list[Alert]:
    """The alerts of a monitor report's alert lines: a live metric drop or refused requests
    are quality, the rest (data and prediction drift) drift."""
    return [
        Alert(
            kind=AlertKind.quality
            if line.startswith("live") or "refused" in line
            else AlertKind.drift,
            dataset=dataset,
            message=line,
            version=version,
            report=report,
        )
        for line in lines
    ]


def gate_alert(dataset: str, version: int, note: str, run_id: str | None = None) -> Alert | None:
    """The alert of an evaluation's outcome, from its stage note (`<status>: <reason>`, as
    `stages.evaluate` writes it); None for a note that is no gate decision."""
    status, _, _ = note.partition(":")
    decision = _GATE_OUTCOMES.get(status.strip())
    if decision is None:
        return None
    return Alert(
        kind=AlertKind.gate,
        dataset=dataset,
        message=f"v{version}: {note}",
        version=version,
        run_id=run_id,
        decision=decision,
    )


def failed_run_alert(dataset: str, run_id: str | None, error: str | None) -> Alert:
    """The alert of a run that failed for good."""
    return Alert(
        kind=AlertKind.run_failed,
        dataset=dataset,
        message=f"run {run_id or '(unnamed)'} failed: {error or 'no error recorded'}",
        run_id=run_id,
    )


@dataclass(frozen=True)
class Delivery:
    """How hard one alert is pushed: attempts in all, the first back-off (doubled each time),
    and each POST's timeout. The defaults give up within about half a minute."""

    attempts: int = 4
    backoff_s: float = 0.5
    timeout_s: float = 5.0


def deliver(
    url: str,
    alert: Alert,
    policy: Delivery = Delivery(),
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """POST `alert` to `url` until it is taken (2xx) or the attempts run out; a 4xx other than
    429 is the webhook refusing the body, not retried. True when delivered."""
    body = alert.model_dump_json().encode()
    headers = {"content-type": "application/json"}
    delay = policy.backoff_s
    for attempt in range(1, policy.attempts + 1):
        try:
            answer = httpx.post(url, content=body, headers=headers, timeout=policy.timeout_s)
            if answer.is_success:
                return True
            if 400 <= answer.status_code < 500 and answer.status_code != 429:
                log.warning("alert webhook %s refused the alert: %s", url, answer.status_code)
                return False
            problem = f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            problem = type(exc).__name__
        if attempt < policy.attempts:
            log.info("alert webhook %s: %s; retrying in %.1f s", url, problem, delay)
            sleep(delay)
            delay *= 2
    log.warning("alert webhook %s: gave up after %d attempts", url, policy.attempts)
    return False


@dataclass
class AlertStats:
    """What happened to the alerts sent so far."""

    queued: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0  # the queue was full


class AlertSender:
    """Queues alerts for a background thread that delivers them (`deliver`); `default_url`
    receives the alerts sent without a URL of their own (none: they are not sent)."""

    def __init__(
        self,
        default_url: str | None = None,
        *,
        policy: Delivery = Delivery(),
        capacity: int = 1000,
    ) -> None:
        self.default_url = default_url
        self.policy = policy
        self.stats = AlertStats()
        self._queue: queue.Queue[tuple[str, Alert] | None] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def send(self, alert: Alert, url: str | None = None) -> bool:
        """Queue `alert` for `url` (else the default); False when there is nowhere to send it
        or the queue is full. Never blocks."""
        target = url or self.default_url
        if target is None:
            return False
        try:
            self._queue.put_nowait((target, alert))
        except queue.Full:
            with self._lock:
                self.stats.dropped += 1
            return False
        with self._lock:
            self.stats.queued += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="automlops-alerts", daemon=True
                )
                self._thread.start()
        return True

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            ok = deliver(item[0], item[1], self.policy)
            with self._lock:
                if ok:
                    self.stats.delivered += 1
                else:
                    self.stats.failed += 1
            self._queue.task_done()
        self._queue.task_done()

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (waiting at most `timeout_s`), then stop the thread."""
        thread = self._thread
        if thread is None:
            return
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
                break
            except queue.Full:
                if time.monotonic() >= deadline:
                    return
        thread.join(max(0.0, deadline - time.monotonic()))
        if not thread.is_alive():
            self._thread = None
