"""Stage 4: score the new version through its endpoint, report, and decide on promotion."""

from __future__ import annotations

import io

import numpy as np
import orjson
import polars as pl

from automlops import keys
from automlops.config import Task
from automlops.errors import PermanentError
from automlops.events import EvaluationMessage, SqsRecord
from automlops.manifests import load_manifest
from automlops.ml import metrics
from automlops.ml.artifact import ModelArtifact, ModelMetadata
from automlops.ml.gate import Comparison, compare
from automlops.ports import ModelHost, Ports
from automlops.registry import Registry, VersionStatus
from automlops.reports.report import (
    ChampionSummary,
    DecisionSummary,
    EvaluationReport,
    render_markdown,
)
from automlops.stages.result import StageResult

BATCH_ROWS = 1000


def locate(record: SqsRecord) -> tuple[keys.RunRef, EvaluationMessage]:
    try:
        message = EvaluationMessage.model_validate_json(record.body)
    except ValueError as exc:
        raise PermanentError(
            f"evaluation message {record.message_id} is malformed: {exc}"
        ) from None
    return keys.RunRef(message.dataset, message.run_id), message


def score_endpoint(
    host: ModelHost, endpoint: str, features: pl.DataFrame, meta: ModelMetadata
) -> np.ndarray:
    """Call an endpoint with raw rows in batches.

    Returns P(positive) (binary), probabilities in `meta`'s label order (multiclass) or values.
    """
    outputs: list[np.ndarray] = []
    for start in range(0, features.height, BATCH_ROWS):
        rows = features.slice(start, BATCH_ROWS).to_dicts()
        body = orjson.dumps({"instances": rows}, option=orjson.OPT_SERIALIZE_NUMPY)
        response = orjson.loads(
            host.invoke(endpoint, body, content_type="application/json", accept="application/json")
        )
        items = response["predictions"]
        if meta.task is Task.regression:
            outputs.append(np.array([item["value"] for item in items], dtype=np.float64))
        elif meta.task is Task.binary:
            positive = meta.target.labels[1]
            outputs.append(np.array([item["probabilities"][positive] for item in items]))
        else:
            labels = meta.target.labels
            outputs.append(
                np.array(
                    [[item["probabilities"].get(lab, 0.0) for lab in labels] for item in items]
                )
            )
    if not outputs:
        return np.empty(0)
    return np.concatenate(outputs)


def compute_metrics(
    meta: ModelMetadata, y: np.ndarray, pred: np.ndarray
) -> tuple[dict[str, float], list[list[int]]]:
    """Flat metrics and the confusion matrix (classification) at the model's threshold."""
    if meta.task is Task.binary:
        threshold = 0.5 if meta.threshold is None else meta.threshold
        values = metrics.binary_metrics(y, pred, threshold)
        predicted = (pred >= threshold).astype(int)
        return values, metrics.confusion(y, predicted, 2)
    if meta.task is Task.multiclass:
        k = len(meta.target.labels)
        return metrics.multiclass_metrics(y, pred), metrics.confusion(y, pred.argmax(axis=1), k)
    return metrics.regression_metrics(y, pred), []


def evaluate(record: SqsRecord, ports: Ports) -> StageResult:
    """Evaluate a candidate on its test split, compare with the champion, promote or reject."""
    run, message = locate(record)
    store, settings = ports.store, ports.settings
    registry = Registry(store, settings.buckets.model_output)
    doc = registry.read(message.dataset)
    entry = doc.get(message.version)
    if entry.status is not VersionStatus.candidate and entry.report_key is not None:
        return StageResult(run=run, duplicate=True, model_version=entry.version, final=True)

    meta = ModelArtifact.from_tar_gz(
        store.get(entry.artifact_bucket, entry.artifact_key), entry.artifact_key
    ).metadata
    manifest = load_manifest(store, settings.buckets.data, message.dataset)
    test = pl.read_parquet(io.BytesIO(store.get(message.bucket, message.test_key)))
    if test.height == 0:
        raise PermanentError(f"{message.test_key}: the test split is empty")
    y = meta.target.encode(test.get_column(meta.target.name), message.test_key)
    features = test.drop(meta.target.name)

    ports.progress(f"scoring {test.height} test rows through {message.endpoint}")
    pred = score_endpoint(ports.host, message.endpoint, features, meta)
    values, confusion = compute_metrics(meta, y, pred)

    champion = doc.champion_version()
    champion_summary: ChampionSummary | None = None
    comparison: Comparison | None = None
    if champion is not None and champion.version != entry.version and champion.endpoint:
        champion_meta = ModelArtifact.from_tar_gz(
            store.get(champion.artifact_bucket, champion.artifact_key), champion.artifact_key
        ).metadata
        ports.progress(f"scoring the same rows through champion v{champion.version}")
        champion_pred = score_endpoint(ports.host, champion.endpoint, features, champion_meta)
        champion_values, _ = compute_metrics(champion_meta, y, champion_pred)
        champion_summary = ChampionSummary(version=champion.version, metrics=champion_values)
        comparison = compare(
            meta.task,
            y,
            pred,
            champion_pred,
            margin=manifest.gate_margin,
            confidence=manifest.gate_confidence,
            seed=settings.seed,
        )

    status, reason = _decide(values, comparison, manifest.min_metrics, champion_summary)
    report = EvaluationReport(
        dataset=message.dataset,
        version=entry.version,
        run_id=run.run_id,
        created_at=ports.clock().isoformat(),
        task=meta.task.value,
        endpoint=message.endpoint,
        test_key=message.test_key,
        rows=test.height,
        labels=meta.target.labels,
        threshold=meta.threshold,
        metrics=values,
        confusion_matrix=confusion,
        champion=champion_summary,
        comparison=None if comparison is None else comparison.as_dict(),
        decision=DecisionSummary(status=status.value, reason=reason),
        lineage={
            "source": entry.source_key,
            "source_sha256": entry.source_sha256,
            "artifact": entry.artifact_key,
            "training_run": run.run_id,
        },
    )
    date = ports.clock().strftime("%Y-%m-%d")
    prefix = keys.report_prefix(message.dataset, date, run.run_id)
    bucket = settings.buckets.model_monitoring
    store.put(bucket, prefix + "REPORT.md", render_markdown(report).encode())
    report_key = prefix + "report.json"
    store.put(bucket, report_key, report.model_dump_json(indent=1).encode())

    registry.record_evaluation(message.dataset, entry.version, values, report_key)
    details = {} if comparison is None else comparison.as_dict()
    if status is VersionStatus.champion:
        registry.promote(message.dataset, entry.version, reason, details)
    else:
        registry.reject(message.dataset, entry.version, reason, details)
    primary = metrics.PRIMARY_METRIC[meta.task.value]
    return StageResult(
        run=run,
        outputs=[report_key, prefix + "REPORT.md"],
        model_version=entry.version,
        headline=(primary, values[primary]),
        final=True,
        note=f"{status.value}: {reason}",
    )


def _decide(
    values: dict[str, float],
    comparison: Comparison | None,
    floors: dict[str, float],
    champion: ChampionSummary | None,
) -> tuple[VersionStatus, str]:
    for name, floor in floors.items():
        value = values.get(name)
        if value is None:
            return VersionStatus.rejected, f"threshold on unknown metric {name!r}"
        better_high = metrics.HIGHER_IS_BETTER.get(name, True)
        if (value < floor) if better_high else (value > floor):
            side = "below" if better_high else "above"
            return VersionStatus.rejected, f"{name} {value:.4f} is {side} the required {floor}"
    if comparison is None or champion is None:
        return VersionStatus.champion, "first model for this dataset; passes the thresholds"
    c = comparison
    summary = (
        f"{c.metric} {c.candidate:.4f} vs champion v{champion.version} {c.champion:.4f}; "
        f"difference {c.difference:+.4f}, "
        f"{c.confidence:.0%} bounds [{c.lower:+.4f}, {c.upper:+.4f}]"
    )
    if c.candidate_worse:
        return VersionStatus.rejected, f"worse than the champion beyond noise: {summary}"
    return VersionStatus.champion, f"not worse than the champion: {summary}"
