"""The lineage of a model version: upload -> processed splits -> training -> artifact ->
evaluation reports -> promotion decisions, assembled from the registry and the objects it names.
"""

from __future__ import annotations

import contextlib
from typing import Any

from automlops import keys
from automlops.config import Settings
from automlops.errors import AutomlopsError
from automlops.ports import ObjectStore
from automlops.registry import Registry


def trace_version(
    store: ObjectStore, settings: Settings, dataset: str, version: int
) -> dict[str, Any]:
    """Everything known about how `version` of `dataset` came to be and what was decided."""
    from automlops.ml.artifact import ModelArtifact  # the ML stack, only when tracing

    buckets = settings.buckets
    doc = Registry(store, buckets.model_output).read(dataset)
    entry = doc.get(version)
    meta = None
    # A missing or unreadable artifact still leaves the registry's part of the story.
    with contextlib.suppress(AutomlopsError):
        meta = ModelArtifact.from_tar_gz(
            store.get(entry.artifact_bucket, entry.artifact_key), entry.artifact_key
        ).metadata
    schema_key = meta.lineage.schema_key if meta else keys.schema_key(dataset, entry.run_id)
    drift_key = keys.drift_key(dataset, entry.run_id)
    processed: dict[str, Any] = {
        "bucket": buckets.automl_data,
        "schema": schema_key,
        "transform": meta.lineage.transform_key if meta else None,
        "splits": meta.lineage.split_keys if meta else {"test": entry.test_key},
        "drift": drift_key if store.head(buckets.automl_data, drift_key) else None,
    }
    evaluation: dict[str, Any] | None = None
    if entry.report_key:
        files = keys.report_files(entry.report_key)
        prefix = entry.report_key.removesuffix("report.json")
        evaluation = {
            "bucket": buckets.model_monitoring,
            "report_json": files["json"],
            "report_md": files["markdown"],
            "report_html": files["html"],
            "plots": [
                k for k in store.list(buckets.model_monitoring, prefix) if k.endswith(".png")
            ],
            "metrics": entry.metrics,
        }
    return {
        "dataset": dataset,
        "version": version,
        "status": entry.status.value,
        "is_champion": doc.champion == version,
        "source": {
            "bucket": meta.lineage.source_bucket if meta else buckets.data,
            "key": entry.source_key,
            "sha256": entry.source_sha256,
        },
        "processed": processed,
        "training": {
            "run_id": entry.run_id,
            "created_at": meta.created_at if meta else entry.created_at,
            "learner": entry.learner,
            "params": meta.params if meta else {},
            "best_iteration": meta.best_iteration if meta else None,
            "threshold": meta.threshold if meta else None,
            "metrics": meta.metrics if meta else {},
            "trials": meta.trials if meta else [],
        },
        "artifact": {
            "bucket": entry.artifact_bucket,
            "key": entry.artifact_key,
            "endpoint": entry.endpoint,
        },
        "evaluation": evaluation,
        "decisions": [d.model_dump() for d in entry.decisions],
    }


def format_trace(trace: dict[str, Any]) -> str:
    """The trace for people: one block per step, in pipeline order."""
    source, processed = trace["source"], trace["processed"]
    training, artifact = trace["training"], trace["artifact"]
    champion = " (serving)" if trace["is_champion"] else ""
    lines = [
        f"{trace['dataset']} v{trace['version']}: {trace['status']}{champion}",
        "",
        f"source     {source['bucket']}/{source['key']}",
        f"           sha256 {source['sha256']}",
        f"processed  {processed['bucket']}/{processed['schema']}",
    ]
    lines += [f"           {name:<10} {key}" for name, key in processed["splits"].items()]
    if processed["drift"]:
        lines.append(f"           {'drift':<10} {processed['drift']}")
    trials = training["trials"]
    states: dict[str, int] = {}
    for trial in trials:
        states[str(trial.get("state", "?"))] = states.get(str(trial.get("state", "?")), 0) + 1
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    lines += [
        f"training   run {training['run_id']} at {training['created_at']}",
        f"           learner {training['learner']}, {len(trials)} trials"
        + (f" ({counts})" if counts else ""),
    ]
    members = training["params"].get("members") or []
    if members:
        lines.append(
            "           members "
            + ", ".join(
                f"{m.get('learner', '?')} #{m.get('trial', '?')} {m.get('weight', 0):.2f}"
                for m in members
            )
        )
    for trial in trials[:20]:
        score = trial.get("score")
        shown = "-" if score is None else f"{score:.4f}"
        lines.append(
            f"           #{trial.get('number', '?'):<3} {trial.get('learner', '?'):<9} "
            f"{trial.get('state', '?'):<9} score {shown}"
        )
    if len(trials) > 20:
        lines.append(f"           … {len(trials) - 20} more (--json lists all)")
    lines.append(f"artifact   {artifact['bucket']}/{artifact['key']}")
    if artifact["endpoint"]:
        lines.append(f"           endpoint {artifact['endpoint']}")
    evaluation = trace["evaluation"]
    if evaluation:
        lines.append(f"reports    {evaluation['bucket']}/{evaluation['report_html']}")
        lines.append(f"           {evaluation['bucket']}/{evaluation['report_json']}")
        lines.append(f"           {len(evaluation['plots'])} plots")
    else:
        lines.append("reports    not evaluated yet")
    lines.append("decisions")
    for decision in trace["decisions"]:
        lines.append(f"  {decision['at']}  {decision['status']:<9} {decision['reason']}")
    if not trace["decisions"]:
        lines.append("  none yet")
    return "\n".join(lines) + "\n"
