"""Retrain by policy: whether what the monitor saw calls for a new model, and starting it.

A retrain is nothing special: the labelled captured rows (optionally appended to the champion's
training upload) are written as a new upload of the dataset through the upload use case, so the
pipeline runs and the champion/challenger gate decides as for any upload. Each look at the
policy leaves a `RetrainDecision` beside the monitor report that prompted it
(`monitoring/<dataset>/<stamp>/retrain.json`); a triggered one names its upload,
`data/<dataset>/retrain-<stamp>.csv`, whose stamp leads back to the decision (lineage: capture
window -> upload -> run -> version). The newest such upload starts the cool-down.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field

from automlops import keys
from automlops.config import RetrainPolicy, Settings
from automlops.errors import NotFoundError
from automlops.ports import ObjectStore
from automlops.usecases.upload import Uploaded, UploadOptions, upload

DECISION_FILE = "retrain.json"
_UPLOAD_PREFIX = "retrain-"
_STAMP = "%Y%m%dT%H%M%S.%fZ"  # keys.monitor_prefix's stamp: one decision per monitor run
# Stamped to the second before 2026-11-30: such uploads still count for the cool-down.
_UPLOAD_NAME = re.compile(r"^retrain-(\d{8}T\d{6}(?:\.\d{6})?Z)\.csv$")


class Signals(BaseModel):
    """What one monitor run saw, in the policy's terms."""

    drifted: list[str] = Field(default_factory=list)  # drifted input columns
    metric: str | None = None  # the live primary metric, when enough labels came back
    live_value: float | None = None
    test_value: float | None = None  # the champion's value on its test split
    higher_is_better: bool = True
    live_rows: int = 0  # labelled rows the live metric was computed on
    new_labelled_rows: int = 0  # labelled captured rows since the last retrain (the data)


class RetrainDecision(BaseModel):
    """One look at a dataset's retrain policy, with its reasons."""

    dataset: str
    decided_at: str
    champion: int | None
    window_start: str  # the captured traffic the labelled rows come from
    window_end: str
    triggered: bool = False
    reasons: list[str] = Field(default_factory=list)  # each trigger that fired
    held_back: str | None = None  # why a trigger that fired did not retrain
    labelled_rows: int = 0  # rows the retrain upload carries from the captured traffic
    with_training_file: str | None = None  # the training upload the rows were appended to
    monitor_report: str | None = None  # monitor.json of the run that decided
    upload_key: str | None = None  # data/<dataset>/retrain-<stamp>.csv when triggered


def decide(
    policy: RetrainPolicy,
    signals: Signals,
    decision: RetrainDecision,
    last_retrain: datetime | None,
) -> RetrainDecision:
    """`decision` with the triggers that fire on `signals`, and whether to act on them: not
    within the cool-down after `last_retrain`, not without labelled rows to train on."""
    reasons = []
    watched = set(policy.on_drift)
    drifted = [c for c in signals.drifted if "*" in watched or c in watched]
    if drifted:
        reasons.append(f"drift in key column(s) {', '.join(drifted)}")
    if (
        policy.on_metric_drop is not None
        and signals.metric is not None
        and signals.live_value is not None
        and signals.test_value is not None
        and signals.live_rows >= policy.min_labels
    ):
        drop = signals.test_value - signals.live_value
        drop = drop if signals.higher_is_better else -drop
        if drop > policy.on_metric_drop:
            reasons.append(
                f"live {signals.metric} {signals.live_value:.4f} on {signals.live_rows} labelled "
                f"rows is {drop:.4f} worse than the test split's {signals.test_value:.4f} "
                f"(margin {policy.on_metric_drop})"
            )
    if policy.every_labels is not None and signals.new_labelled_rows >= policy.every_labels:
        reasons.append(
            f"{signals.new_labelled_rows} new labelled rows (every {policy.every_labels})"
        )
    held_back = None
    at = datetime.fromisoformat(decision.decided_at)
    if reasons and last_retrain is not None:
        ready = last_retrain + timedelta(hours=policy.cooldown_hours)
        if at < ready:
            held_back = (
                f"cooling down: the last retrain was at {last_retrain.isoformat()}, the next "
                f"may start at {ready.isoformat()}"
            )
    if reasons and held_back is None and signals.new_labelled_rows == 0:
        held_back = "no labelled captured rows to train on"
    return decision.model_copy(
        update={
            "reasons": reasons,
            "held_back": held_back,
            "triggered": bool(reasons) and held_back is None,
            "labelled_rows": signals.new_labelled_rows,
        }
    )


def decision_key(dataset: str, decided_at: datetime) -> str:
    """Where a decision is recorded: beside the monitor report of the same run."""
    return keys.monitor_prefix(dataset, decided_at) + DECISION_FILE


def upload_filename(decided_at: datetime) -> str:
    """The retrain upload's file name, stamped like the decision that started it."""
    return f"{_UPLOAD_PREFIX}{decided_at.astimezone(UTC):{_STAMP}}.csv"


def decided_at_of(source_key: str) -> datetime | None:
    """The decision time an upload key names (None: not a retrain upload)."""
    match = _UPLOAD_NAME.match(source_key.rsplit("/", 1)[-1])
    if match is None:
        return None
    stamp = match.group(1)
    layout = _STAMP if "." in stamp else "%Y%m%dT%H%M%SZ"
    return datetime.strptime(stamp, layout).replace(tzinfo=UTC)


@dataclass(frozen=True)
class LastRetrain:
    """The newest retrain of a dataset: when it was decided (the cool-down runs from it) and
    the end of the traffic window its rows came from (later rows are new)."""

    decided_at: datetime
    rows_until: datetime


def last_retrain(store: ObjectStore, settings: Settings, dataset: str) -> LastRetrain | None:
    """The newest retrain upload of `dataset` and its decision (None: never retrained)."""
    # Each upload lies in its own folder: the retrain uploads are found by their file name.
    listed = store.list(settings.buckets.data, keys.uploads_prefix(dataset))
    uploads = [(decided_at_of(k), k) for k in listed if k.endswith(".csv")]
    stamped = [(at, key) for at, key in uploads if at is not None]
    if not stamped:
        return None
    at, key = max(stamped)
    decision = decision_of(store, settings, dataset, key)
    until = at if decision is None else datetime.fromisoformat(decision.window_end)
    return LastRetrain(decided_at=at, rows_until=until)


def start_retrain(
    store: ObjectStore, settings: Settings, decision: RetrainDecision, csv: bytes
) -> Uploaded:
    """Write `csv` (the labelled rows, with the target column) as a new upload of the dataset,
    through the upload use case and under the stored manifest; its arrival starts the run."""
    decided_at = datetime.fromisoformat(decision.decided_at)
    return upload(
        store,
        settings.buckets.data,
        upload_filename(decided_at),
        csv,
        UploadOptions(dataset=decision.dataset),
    )


def record(store: ObjectStore, settings: Settings, decision: RetrainDecision) -> str:
    """Store `decision` beside its monitor report; returns its key."""
    key = decision_key(decision.dataset, datetime.fromisoformat(decision.decided_at))
    store.put(settings.buckets.model_monitoring, key, decision.model_dump_json(indent=1).encode())
    return key


def decision_of(
    store: ObjectStore, settings: Settings, dataset: str, source_key: str
) -> RetrainDecision | None:
    """The decision that wrote the upload `source_key` (None: not a retrain upload, or its
    decision is gone)."""
    at = decided_at_of(source_key)
    if at is None:
        return None
    try:
        raw = store.get(settings.buckets.model_monitoring, decision_key(dataset, at))
    except NotFoundError:
        return None
    return RetrainDecision.model_validate_json(raw)
