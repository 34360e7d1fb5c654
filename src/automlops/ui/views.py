"""The dashboard's read side: plain dicts for templates and the live JSON, from the workspace.

Nothing here writes. Every value stays raw (file names, column names, errors): escaping is the
templates' job, so the JSON endpoint returns the same text the pages show.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from automlops import keys
from automlops.errors import AutomlopsError
from automlops.events import S3Event
from automlops.local.runlog import RunRecord
from automlops.local.runtime import LocalRuntime
from automlops.local.sqlite_queue import dlq_name
from automlops.names import is_dataset_name
from automlops.registry import ModelVersion
from automlops.ui.progress import LiveProgress
from automlops.usecases import dead_letters as dead_letter_cases
from automlops.usecases.models import dataset_models
from automlops.usecases.models import primary_metric as primary_metric
from automlops.usecases.runs import list_runs

RUNS_SHOWN = 200
LIVE_RUNS = 50  # runs the live JSON carries


def iso(ts: float | None) -> str | None:
    """A Unix time as an ISO 8601 UTC string (the browser shows it in the viewer's zone)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


# -- runs ---------------------------------------------------------------------------------------


def source_filename(source: str | None) -> str | None:
    """The person's own file name of an upload's key (`data/<dataset>/[<upload>/]<file>`), or
    the key itself when it is not such a key (a run recorded before uploads had folders)."""
    if source is None:
        return None
    try:
        return keys.parse_source_key(source).filename
    except AutomlopsError:
        return source


def run_view(run: RunRecord, progress: LiveProgress | None = None) -> dict[str, Any]:
    """A run with its stages, their share of the run's time (timeline bars) and live text."""
    live = (progress.snapshot() if progress else {}).get(run.id)
    total = sum(s.duration_s or 0.0 for s in run.stages)
    stages = [
        {
            "name": s.name,
            "status": s.status,
            "duration_s": s.duration_s,
            "attempts": s.attempts,
            "error": s.error,
            "share": None if not total or s.duration_s is None else s.duration_s / total,
            "progress": live.text
            if live and live.stage == s.name and s.status == "running"
            else None,
        }
        for s in run.stages
    ]
    return {
        "id": run.id,
        "dataset": run.dataset,
        "source": run.source,
        "filename": source_filename(run.source),
        "status": run.status,
        "error": run.error,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "duration_s": round(total, 3),
        "model_version": run.model_version,
        "headline": None
        if run.headline_metric is None or run.headline_value is None
        else {"metric": run.headline_metric, "value": run.headline_value},
        "note": run.note,
        "stages": stages,
        "progress": None if live is None else {"stage": live.stage, "text": live.text},
    }


def runs(
    runtime: LocalRuntime,
    progress: LiveProgress | None = None,
    dataset: str | None = None,
    limit: int = RUNS_SHOWN,
) -> list[dict[str, Any]]:
    """Runs, newest first."""
    return [run_view(r, progress) for r in list_runs(runtime.runlog, dataset, limit=limit)]


def queued_uploads(runtime: LocalRuntime) -> list[dict[str, Any]]:
    """Uploads whose notification waits for a worker: runs about to appear."""
    items = []
    data_bucket = runtime.settings.buckets.data
    for message in runtime.queue.list_messages(runtime.settings.queues.events):
        try:
            records = S3Event.model_validate_json(message.body).records
        except ValueError:
            continue
        for record in records:
            if record.bucket != data_bucket:
                continue
            with contextlib.suppress(AutomlopsError):
                source = keys.parse_source_key(record.key)
                items.append(
                    {
                        "key": record.key,
                        "dataset": source.dataset,
                        "filename": source.filename,
                        "sent_at": iso(message.sent_at),
                        "attempts": message.receive_count,
                    }
                )
    return items


# -- datasets and models ------------------------------------------------------------------------


def dataset_names(runtime: LocalRuntime) -> list[str]:
    """Every dataset the workspace knows: registered or uploaded (every run starts with an
    upload, so the data bucket's folders name the datasets of all runs). A folder whose name
    breaks the name rule (an object put there by hand) names no dataset: its run failed, and
    its registry key may not even be storable (a 245-byte name plus `.json`)."""
    names = set(runtime.registry.datasets())
    for key in runtime.store.list(runtime.settings.buckets.data, "data/"):
        try:
            dataset = keys.parse_source_key(key).dataset  # a manifest's key parses too
        except AutomlopsError:
            continue
        if is_dataset_name(dataset):
            names.add(dataset)
    return sorted(names)


def version_view(entry: ModelVersion, champion: int | None) -> dict[str, Any]:
    """A model version for the models page: metrics, decisions and the gate's numbers."""
    metric = primary_metric(entry.task)
    decisions = [d.model_dump(mode="json") for d in entry.decisions]
    gate = next(
        (
            d
            for d in reversed(decisions)
            if d["status"] in ("champion", "rejected") and d["details"]
        ),
        None,
    )
    return {
        "version": entry.version,
        "status": entry.status.value,
        "is_champion": champion == entry.version,
        "created_at": entry.created_at,
        "task": entry.task,
        "learner": entry.learner,
        "metric": metric,
        "headline": entry.metrics.get(metric) if metric else None,
        "metrics": entry.metrics,
        "run_id": entry.run_id,
        "source": entry.source_key,
        "endpoint": entry.endpoint,
        "report_key": entry.report_key,
        "reason": entry.last_reason,
        "decisions": decisions,
        "comparisons": list((gate or {}).get("details", {}).get("comparisons", {}).values()),
        "floors": (gate or {}).get("details", {}).get("floors", []),
    }


def models(runtime: LocalRuntime, dataset: str) -> dict[str, Any]:
    """A dataset's registry: versions newest first, champion, what a rollback would restore."""
    listing = dataset_models(runtime.registry, dataset)
    return {
        "dataset": dataset,
        "champion": listing.champion,
        "rollback_to": listing.rollback_to,
        "versions": [
            version_view(v, listing.champion)
            for v in sorted(listing.versions, key=lambda v: -v.version)
        ],
    }


def drift(runtime: LocalRuntime, dataset: str, run_id: str | None = None) -> dict[str, Any] | None:
    """The drift.json of a run (default: the newest run of the dataset that has one)."""
    bucket = runtime.settings.buckets.automl_data
    candidates = [run_id] if run_id else [r.id for r in runtime.runlog.list(dataset, limit=100)]
    for rid in candidates:
        key = keys.drift_key(dataset, rid)
        if runtime.store.head(bucket, key) is None:
            continue
        try:
            doc = json.loads(runtime.store.get(bucket, key))
        except (ValueError, AutomlopsError):
            continue
        filename = source_filename(doc.get("source_key"))
        return {"key": key, "run_id": rid, **doc, "filename": filename}
    return None


def datasets(runtime: LocalRuntime) -> list[dict[str, Any]]:
    """One line per dataset for the overview: champion, headline metric, last run, drift."""
    items = []
    for name in dataset_names(runtime):
        doc = runtime.registry.read(name)
        champion = doc.champion_version()
        metric = primary_metric(champion.task) if champion else None
        newest = runtime.runlog.list(name, limit=1)
        last = newest[0] if newest else None
        drifted = drift(runtime, name)
        items.append(
            {
                "name": name,
                "versions": len(doc.versions),
                "champion": None
                if champion is None
                else {
                    "version": champion.version,
                    "learner": champion.learner,
                    "task": champion.task,
                    "metric": metric,
                    "value": champion.metrics.get(metric) if metric else None,
                    "report_key": champion.report_key,
                },
                "last_run": None
                if last is None
                else {
                    "id": last.id,
                    "status": last.status,
                    "updated_at": iso(last.updated_at),
                    "error": last.error,
                },
                "drift": None
                if drifted is None
                else {
                    "run_id": drifted["run_id"],
                    "drifted": drifted.get("drifted", []),
                    "action": drifted.get("action"),
                    "has_baseline": drifted.get("baseline") is not None,
                },
            }
        )
    return items


# -- dead letters -------------------------------------------------------------------------------


def _describe_body(body: str) -> str:
    """What a message is about, in a line: the object of an S3 event, or the raw body."""
    try:
        records = S3Event.model_validate_json(body).records
    except ValueError:
        records = []
    if records:
        return ", ".join(f"{r.bucket}/{r.key}" for r in records)
    try:
        doc = json.loads(body)
    except ValueError:
        return body[:200]
    if isinstance(doc, dict) and "dataset" in doc:
        return f"evaluate {doc.get('dataset')} v{doc.get('version')}"
    return body[:200]


def dead_letters(runtime: LocalRuntime) -> list[dict[str, Any]]:
    """Every dead-lettered message, oldest first."""
    return [
        {
            "id": m.id,
            "queue": dlq_name(m.source_queue),
            "source_queue": m.source_queue,
            "receive_count": m.receive_count,
            "sent_at": iso(m.sent_at),
            "error": m.error,
            "subject": _describe_body(m.body),
            "body": _pretty(m.body),
        }
        for m in dead_letter_cases.list_dead_letters(runtime.queue, runtime.settings.queues.served)
    ]


def _pretty(body: str) -> str:
    try:
        return json.dumps(json.loads(body), indent=2)
    except ValueError:
        return body


# -- change detection ---------------------------------------------------------------------------


def fingerprint(runtime: LocalRuntime, progress: LiveProgress | None = None) -> str:
    """Changes whenever anything a page shows may have changed (runs, registry, queues)."""
    digest = hashlib.sha256()
    for run in runtime.runlog.list(limit=LIVE_RUNS):
        digest.update(f"{run.id}:{run.status}:{run.updated_at}".encode())
        for stage in run.stages:
            digest.update(f"{stage.name}:{stage.status}:{stage.attempts}".encode())
    bucket = runtime.settings.buckets.model_output
    for name in runtime.registry.datasets():
        info = runtime.store.head(bucket, keys.registry_key(name))
        digest.update(f"{name}:{info.etag if info else ''}".encode())
    for queue in runtime.settings.queues.served:
        for name in (queue, dlq_name(queue)):
            digest.update(f"{name}:{runtime.queue.counts(name)}".encode())
    data_bucket = runtime.settings.buckets.data
    digest.update(str(len(runtime.store.list(data_bucket, "data/"))).encode())
    if progress is not None:
        digest.update(str(progress.changes).encode())
    return digest.hexdigest()[:16]


def state(runtime: LocalRuntime, progress: LiveProgress | None = None) -> dict[str, Any]:
    """The live JSON: what the pages poll every few seconds."""
    return {
        "fingerprint": fingerprint(runtime, progress),
        "now": iso(datetime.now(UTC).timestamp()),
        "runs": runs(runtime, progress, limit=LIVE_RUNS),
        "queued": queued_uploads(runtime),
        "datasets": datasets(runtime),
        "dead_letters": len(dead_letters(runtime)),
    }
