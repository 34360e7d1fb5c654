"""Stage 4: score the candidate and the champion through their endpoints, report, decide.

The gate compares both models on two sets of rows: the new upload's test split, and the
champion's own test split (rows the champion was already proven on: new data can be wrong too).
The candidate is rejected when it is worse beyond noise on either, or fails the manifest's
thresholds; otherwise it becomes the champion. Each evaluation leaves report.json, REPORT.md,
report.html and its plots in the model-monitoring bucket.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import orjson
import polars as pl

from automlops import keys
from automlops.config import Manifest, Task
from automlops.errors import ConflictError, PermanentError
from automlops.events import EvaluationMessage, SqsRecord
from automlops.manifests import load_manifest
from automlops.ml.artifact import ModelArtifact, ModelMetadata
from automlops.ml.evaluation import metrics
from automlops.ml.evaluation.gate import (
    ROW_SET_TITLES,
    Comparison,
    GateDecision,
    compare,
    decide,
)
from automlops.ports import ModelHost, ObjectStore, Ports
from automlops.registry import (
    ChampionChanged,
    EvaluationOutcome,
    ModelVersion,
    Registry,
    RegistryDoc,
    VersionStatus,
)
from automlops.reports.model_facts import model_facts
from automlops.reports.report import (
    ChampionSummary,
    DecisionSummary,
    EvaluationReport,
)
from automlops.serving import wire
from automlops.stages.result import StageResult
from automlops.tabular.schema import DatasetSchema

# Requests to an endpoint are sized by their JSON bytes, not only by rows: serverless
# endpoints take bodies up to 4 MB (instances 6 MB), and 1,000 rows of a wide file pass that.
# 3.5 MB leaves headroom for the runtime API's own framing.
MAX_REQUEST_BYTES = 3_500_000
BATCH_ROWS = 1000
_IMPORTANCES_KEPT = 30
# Test rows explained for the report's mean |contribution| (a seeded sample): enough for a
# stable ranking at a fraction of a second (TreeSHAP costs a few to a few dozen predictions a
# row: docs/benchmarks-explain.md).
EXPLAINED_MAX_ROWS = 1_000
# Test splits up to this many rows are scored wholly through the endpoints. Bigger ones (a
# big upload's 10 %) are scored in this process with the same artifact and code the endpoint
# runs, and the endpoint answers a seeded sample of ENDPOINT_CHECK_ROWS of them, which must
# agree: every metric is still computed on all rows, at a fraction of the HTTP/JSON cost.
ENDPOINT_MAX_ROWS = 20_000
ENDPOINT_CHECK_ROWS = 2_000
_AGREEMENT_TOLERANCE = 1e-5
# Plots draw a seeded sample of this many rows at most (curves look the same; matplotlib does
# not scale to millions of points). Metrics and the confusion matrix use all rows.
PLOT_MAX_ROWS = 50_000
# Comparisons of one candidate when other evaluations keep changing the champion meanwhile;
# then the message is retried later (ConflictError), never decided on a stale comparison.
DECISION_ATTEMPTS = 5


def identify(record: SqsRecord, ports: Ports) -> keys.RunRef:
    """The run an evaluation message belongs to, as the message says."""
    message = read_message(record)
    return keys.RunRef(message.dataset, message.run_id)


def read_message(record: SqsRecord) -> EvaluationMessage:
    """The evaluation message in an SQS record; PermanentError when it is malformed."""
    try:
        message = EvaluationMessage.model_validate_json(record.body)
    except ValueError as exc:
        raise PermanentError(
            f"evaluation message {record.message_id} is malformed: {exc}"
        ) from None
    return message


def score_endpoint(
    host: ModelHost, endpoint: str, features: pl.DataFrame, meta: ModelMetadata
) -> np.ndarray:
    """Call an endpoint with raw rows in batches.

    Returns P(positive) (binary), probabilities in `meta`'s label order (multiclass) or values.
    """
    outputs: list[np.ndarray] = []
    for rows in request_batches(features.to_dicts()):
        answer = wire.invoke(host, endpoint, rows)
        if meta.task is Task.regression:
            outputs.append(answer.values())
        elif meta.task is Task.binary:
            outputs.append(answer.probability(meta.target.labels[1]))
        else:
            outputs.append(answer.probabilities(meta.target.labels))
    if not outputs:
        return np.empty(0)
    return np.concatenate(outputs)


def request_batches(
    rows: list[dict[str, Any]],
    *,
    max_bytes: int = MAX_REQUEST_BYTES,
    max_rows: int = BATCH_ROWS,
) -> Iterator[list[dict[str, Any]]]:
    """Consecutive runs of `rows` whose JSON invocation body (`wire.json_body`) is at most
    `max_bytes` long and holds at most `max_rows` rows; PermanentError for a row that alone
    is too big to send."""
    envelope = len(wire.json_body([]))
    batch: list[dict[str, Any]] = []
    size = envelope
    for row in rows:
        # The row as json_body encodes it, and the comma before it.
        row_bytes = len(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY)) + 1
        if envelope + row_bytes > max_bytes:
            raise PermanentError(
                f"a test row takes {row_bytes} bytes as JSON: more than the {max_bytes} an "
                "endpoint request may hold"
            )
        if batch and (size + row_bytes > max_bytes or len(batch) >= max_rows):
            yield batch
            batch, size = [], envelope
        batch.append(row)
        size += row_bytes
    if batch:
        yield batch


def score_rows(
    host: ModelHost,
    endpoint: str,
    artifact: ModelArtifact,
    features: pl.DataFrame,
    meta: ModelMetadata,
    *,
    seed: int = 0,
) -> np.ndarray:
    """Outputs of a model version for `features`, shaped as `score_endpoint` returns them.

    Small row sets go through the endpoint. Above ENDPOINT_MAX_ROWS the version's artifact
    scores them here and the endpoint scores a sample, which must give the same outputs
    (PermanentError otherwise: the endpoint does not serve what the artifact holds).
    """
    if features.height <= ENDPOINT_MAX_ROWS:
        return score_endpoint(host, endpoint, features, meta)
    local = _score_artifact(artifact, features, meta)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(features.height, size=ENDPOINT_CHECK_ROWS, replace=False))
    served = score_endpoint(host, endpoint, features[rows], meta)
    gap = float(np.max(np.abs(served - local[rows]))) if len(rows) else 0.0
    if not gap <= _AGREEMENT_TOLERANCE:
        raise PermanentError(
            f"endpoint {endpoint} disagrees with its artifact by up to {gap:.3g} on "
            f"{len(rows)} sampled test rows"
        )
    return local


def _score_artifact(
    artifact: ModelArtifact, features: pl.DataFrame, meta: ModelMetadata
) -> np.ndarray:
    """What `score_endpoint` returns, computed with the artifact in this process."""
    from automlops.ml.predictor import Predictor

    predictor = Predictor(artifact, nthread=2)
    out = predictor.predict(features)
    if meta.task is Task.regression:
        assert out.values is not None
        return out.values.astype(np.float64)
    assert out.proba is not None
    column = {label: i for i, label in enumerate(predictor.labels)}
    if meta.task is Task.binary:
        return out.proba[:, column[meta.target.labels[1]]].astype(np.float64)
    zeros = np.zeros(features.height)
    return np.column_stack(
        [out.proba[:, column[lab]] if lab in column else zeros for lab in meta.target.labels]
    ).astype(np.float64)


def plot_sample(
    y: np.ndarray, pred: np.ndarray, champion_pred: np.ndarray | None, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """At most PLOT_MAX_ROWS of the rows (a seeded sample, in order) for the plots."""
    if len(y) <= PLOT_MAX_ROWS:
        return y, pred, champion_pred
    rows = np.sort(np.random.default_rng(seed).choice(len(y), PLOT_MAX_ROWS, replace=False))
    return y[rows], pred[rows], None if champion_pred is None else champion_pred[rows]


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


@dataclass(frozen=True)
class RowSet:
    """Labelled rows both models are scored on."""

    name: str  # new_test | champion_test
    key: str
    features: pl.DataFrame
    y: np.ndarray
    left_out: int = 0  # rows whose label the candidate has never seen


def read_rows(store: ObjectStore, bucket: str, key: str, meta: ModelMetadata, name: str) -> RowSet:
    """A split as features and truth encoded the candidate's way."""
    frame = pl.read_parquet(io.BytesIO(store.get(bucket, key)))
    y = meta.target.encode(frame.get_column(meta.target.name), key)
    keep = np.ones(len(y), dtype=bool)
    if meta.task is not Task.regression:
        keep = y >= 0  # a class the candidate cannot predict: not a like-for-like comparison
    features = frame.drop(meta.target.name)
    if not keep.all():
        features = features.filter(pl.Series(keep))
    return RowSet(name, key, features, y[keep], int((~keep).sum()))


@dataclass(frozen=True)
class ScoredModel:
    """A model version as evaluate scores it: its endpoint, its artifact, and the metadata its
    outputs are read with (the champion's is viewed in the candidate's label order)."""

    endpoint: str
    artifact: ModelArtifact
    meta: ModelMetadata

    def score(self, ports: Ports, features: pl.DataFrame) -> np.ndarray:
        """This version's outputs for `features` (see `score_rows`)."""
        return score_rows(
            ports.host, self.endpoint, self.artifact, features, self.meta, seed=ports.settings.seed
        )


@dataclass(frozen=True)
class CandidateScore:
    """The candidate's outputs and metrics on the new upload's test split."""

    rows: RowSet
    pred: np.ndarray
    metrics: dict[str, float]
    confusion: list[list[int]]


@dataclass(frozen=True)
class PairedScores:
    """Both models' outputs on one row set."""

    rows: RowSet
    candidate: np.ndarray
    champion: np.ndarray


@dataclass
class ChampionEvidence:
    """What scoring the champion on the same rows found (empty when there is no comparable
    champion): its summary, its outputs on the new test rows (for the plots), the gate's
    comparison per row set, and why the candidate cannot replace it, if it cannot."""

    summary: ChampionSummary | None = None
    pred: np.ndarray | None = None
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    row_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    unscorable: str | None = None


def evaluate(record: SqsRecord, ports: Ports) -> StageResult:
    """Evaluate a candidate, compare it with the champion, write the reports, promote or reject."""
    message = read_message(record)
    run = keys.RunRef(message.dataset, message.run_id)
    store, settings = ports.store, ports.settings
    registry = Registry(store, settings.buckets.model_output)
    doc = registry.read(message.dataset)
    entry = doc.get(message.version)
    if entry.status is not VersionStatus.candidate and entry.report_key is not None:
        return StageResult(run=run, duplicate=True, model_version=entry.version, final=True)

    artifact = _artifact(store, entry)
    candidate = ScoredModel(message.endpoint, artifact, artifact.metadata)
    manifest = load_manifest(store, settings.buckets.data, message.dataset)
    scored = _score_candidate(ports, message, candidate)
    gate, report_key = _compare_and_decide(
        ports, registry, doc, message, entry, candidate, scored, manifest
    )
    primary = metrics.PRIMARY_METRIC[candidate.meta.task.value]
    files = keys.report_files(report_key)
    return StageResult(
        run=run,
        outputs=[files["json"], files["markdown"], files["html"]],
        model_version=entry.version,
        headline=(primary, scored.metrics[primary]),
        final=True,
        note=f"{_status(gate).value}: {gate.reason}",
    )


def _compare_and_decide(
    ports: Ports,
    registry: Registry,
    doc: RegistryDoc,
    message: EvaluationMessage,
    entry: ModelVersion,
    candidate: ScoredModel,
    scored: CandidateScore,
    manifest: Manifest,
) -> tuple[GateDecision, str]:
    """Compare the candidate with the champion, report, and record the decision in the
    registry over that same champion; the decision and the key of report.json.

    When another evaluation changed the champion meanwhile, the decision is refused
    (ChampionChanged) and the candidate is compared again with the new champion; after
    DECISION_ATTEMPTS such races, ConflictError (the message is retried later).
    """
    date = ports.clock().strftime("%Y-%m-%d")
    prefix = keys.report_prefix(message.dataset, date, message.run_id)
    for _ in range(DECISION_ATTEMPTS):
        champion = doc.champion_version()
        evidence = ChampionEvidence()
        previous = (
            None if champion is None or champion.version == entry.version else champion.version
        )
        incomparable = None
        if champion is not None and previous is not None:
            incomparable = _incomparable(ports.store, champion, candidate.meta)
            if incomparable is None:
                evidence = _score_champion(ports, message, candidate, scored, champion, manifest)
        gate = _decide(scored, manifest, evidence, previous, incomparable)
        details = gate.details(evidence.row_sets)
        report = _report(ports, message, entry, candidate, scored, evidence, gate, details)
        # Written before the decision lands: a lost race's report is overwritten by the next
        # comparison's, under the same keys.
        report_key = _write_reports(
            ports, prefix, report, scored.rows.y, scored.pred, evidence.pred
        )
        outcome = EvaluationOutcome(
            metrics=scored.metrics,
            report_key=report_key,
            promote=gate.promote,
            reason=gate.reason,
            details=details,
        )
        try:
            registry.decide(message.dataset, entry.version, outcome, compared_with=doc.champion)
        except ChampionChanged as exc:
            ports.progress(f"{exc}; comparing again")
            doc = registry.read(message.dataset)
            continue
        return gate, report_key
    raise ConflictError(
        f"{message.dataset!r}: the champion changed during each of {DECISION_ATTEMPTS} "
        f"comparisons of version {entry.version}; the evaluation will be retried"
    )


def _score_candidate(
    ports: Ports, message: EvaluationMessage, candidate: ScoredModel
) -> CandidateScore:
    """The candidate scored on the new upload's test split; PermanentError when it is empty."""
    new = read_rows(ports.store, message.bucket, message.test_key, candidate.meta, "new_test")
    if len(new.y) == 0:
        raise PermanentError(f"{message.test_key}: the test split is empty")
    ports.progress(f"scoring {len(new.y)} test rows through {message.endpoint}")
    pred = candidate.score(ports, new.features)
    values, confusion = compute_metrics(candidate.meta, new.y, pred)
    return CandidateScore(new, pred, values, confusion)


def _incomparable(store: ObjectStore, champion: ModelVersion, meta: ModelMetadata) -> str | None:
    """Why the champion cannot be scored against this candidate (not served, another task,
    another target), or None when it can. A model of another target answers another
    question: its scores say nothing about this one, so the candidate starts a new line."""
    if champion.endpoint is None:
        return "it has no endpoint"
    if champion.task != meta.task.value:
        return f"it is a {champion.task} model, this one {meta.task.value}"
    # Versions registered before the registry recorded the target: their metadata has it.
    target = champion.target or _artifact(store, champion).metadata.target.name
    if target != meta.target.name:
        return (
            f"it predicts {target!r}, this candidate {meta.target.name!r}: "
            "a new target starts a new model line"
        )
    return None


def _score_champion(
    ports: Ports,
    message: EvaluationMessage,
    candidate: ScoredModel,
    scored: CandidateScore,
    champion: ModelVersion,
    manifest: Manifest,
) -> ChampionEvidence:
    """Score the champion on the candidate's rows and both models on the champion's own test
    split, and compare them on each row set."""
    assert champion.endpoint is not None
    # The champion's outputs read in the candidate's label order, at its own threshold.
    champion_artifact = _artifact(ports.store, champion)
    champion_view = champion_artifact.metadata.model_copy(update={"target": candidate.meta.target})
    incumbent = ScoredModel(champion.endpoint, champion_artifact, champion_view)
    new = scored.rows
    ports.progress(f"scoring the same rows through champion v{champion.version}")
    champion_pred = incumbent.score(ports, new.features)
    champion_values, _ = compute_metrics(champion_view, new.y, champion_pred)
    evidence = ChampionEvidence(
        summary=ChampionSummary(version=champion.version, metrics=champion_values),
        pred=champion_pred,
    )
    pairs = [PairedScores(new, scored.pred, champion_pred)]
    if champion.test_key != new.key:
        outcome = _score_champion_split(ports, message.bucket, candidate, incumbent, champion)
        if isinstance(outcome, str):
            evidence.unscorable = outcome
        elif outcome is not None:
            pairs.append(outcome)
    _compare_pairs(evidence, pairs, candidate.meta.task, manifest, ports.settings.seed)
    return evidence


def _compare_pairs(
    evidence: ChampionEvidence,
    pairs: list[PairedScores],
    task: Task,
    manifest: Manifest,
    seed: int,
) -> None:
    """The gate's comparison of both models on each row set, added to `evidence`."""
    for pair in pairs:
        evidence.comparisons[pair.rows.name] = compare(
            task,
            pair.rows.y,
            pair.candidate,
            pair.champion,
            margin=manifest.gate_margin,
            confidence=manifest.gate_confidence,
            seed=seed,
        )
        evidence.row_sets[pair.rows.name] = {
            "title": ROW_SET_TITLES[pair.rows.name],
            "key": pair.rows.key,
            "left_out_rows": pair.rows.left_out,
        }


def _score_champion_split(
    ports: Ports,
    bucket: str,
    candidate: ScoredModel,
    incumbent: ScoredModel,
    champion: ModelVersion,
) -> PairedScores | str | None:
    """Both models on the champion's own test split; the reason the candidate cannot replace
    the champion when it cannot score those rows; None when the split has no usable rows."""
    old = read_rows(ports.store, bucket, champion.test_key, candidate.meta, "champion_test")
    if not len(old.y):
        return None
    ports.progress(f"scoring champion v{champion.version}'s {len(old.y)} test rows")
    try:
        cand_old = candidate.score(ports, old.features)
    except PermanentError as exc:
        # Rows of the kind the champion serves today that the candidate refuses:
        # it cannot replace the champion, whatever it scores on its own rows.
        return f"cannot score the champion's own test split: {exc}"
    return PairedScores(old, cand_old, incumbent.score(ports, old.features))


def _decide(
    scored: CandidateScore,
    manifest: Manifest,
    evidence: ChampionEvidence,
    previous: int | None,
    incomparable: str | None = None,
) -> GateDecision:
    """The gate's decision; never a promotion when the candidate cannot score the rows of
    the champion it would replace."""
    gate = decide(
        scored.metrics,
        manifest.min_metrics,
        evidence.comparisons,
        previous,
        incomparable=incomparable,
    )
    if evidence.unscorable:
        gate = replace(gate, promote=False, reason=evidence.unscorable)
    return gate


def _status(gate: GateDecision) -> VersionStatus:
    """The status the gate's decision gives the candidate."""
    return VersionStatus.champion if gate.promote else VersionStatus.rejected


def _report(
    ports: Ports,
    message: EvaluationMessage,
    entry: ModelVersion,
    candidate: ScoredModel,
    scored: CandidateScore,
    evidence: ChampionEvidence,
    gate: GateDecision,
    details: dict[str, Any],
) -> EvaluationReport:
    """The evaluation's report: the candidate's scores, the champion's, the decision, lineage."""
    meta = candidate.meta
    run = keys.RunRef(message.dataset, message.run_id)
    return EvaluationReport(
        dataset=message.dataset,
        version=entry.version,
        run_id=run.run_id,
        created_at=ports.clock().isoformat(),
        task=meta.task.value,
        learner=meta.learner,
        selection=meta.selection,
        refit=meta.refit,
        endpoint=message.endpoint,
        test_key=message.test_key,
        rows=len(scored.rows.y),
        labels=meta.target.labels,
        threshold=meta.threshold,
        metrics=scored.metrics,
        confusion_matrix=scored.confusion,
        champion=evidence.summary,
        comparison=details["comparisons"].get("new_test"),
        comparisons=list(details["comparisons"].values()),
        floors=details["floors"],
        decision=DecisionSummary(status=_status(gate).value, reason=gate.reason),
        importances=_importances(candidate.artifact),
        facts=model_facts(meta, _schema(ports, meta), scored.rows.y, scored.pred),
        **_contributions(candidate.artifact, scored.rows.features, ports.settings.seed),
        drift=_drift_summary(ports.store, message.bucket, run),
        lineage={
            "source": entry.source_key,
            "source_sha256": entry.source_sha256,
            "schema": meta.lineage.schema_key,
            "drift": keys.drift_key(run.dataset, run.run_id),
            "artifact": entry.artifact_key,
            "training_run": run.run_id,
        },
    )


def _schema(ports: Ports, meta: ModelMetadata) -> DatasetSchema | None:
    """The schema document of the model's run (its column decisions), None when gone."""
    bucket, key = ports.settings.buckets.automl_data, meta.lineage.schema_key
    if not key or ports.store.head(bucket, key) is None:
        return None
    return DatasetSchema.model_validate_json(ports.store.get(bucket, key))


def _artifact(store: ObjectStore, entry: ModelVersion) -> ModelArtifact:
    return ModelArtifact.from_tar_gz(
        store.get(entry.artifact_bucket, entry.artifact_key), entry.artifact_key
    )


def _importances(artifact: ModelArtifact) -> dict[str, float]:
    """The model's own feature importances, largest first (empty if it has none)."""
    from automlops.ml.predictor import Predictor

    scores = Predictor(artifact).importances()
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    return {name: float(value) for name, value in ranked[:_IMPORTANCES_KEPT] if value > 0}


def _contributions(artifact: ModelArtifact, features: pl.DataFrame, seed: int) -> dict[str, Any]:
    """The report's mean |contribution| per raw column (per class), on at most
    EXPLAINED_MAX_ROWS test rows: `EvaluationReport.contributions` and its unit."""
    from automlops.ml.explain.importance import mean_abs
    from automlops.ml.predictor import Predictor

    if features.height > EXPLAINED_MAX_ROWS:
        rows = np.random.default_rng(seed).choice(
            features.height, EXPLAINED_MAX_ROWS, replace=False
        )
        features = features[np.sort(rows)]
    explanation = Predictor(artifact, nthread=2).explain_frame(features, k=0).explanation
    unit = explanation.raw_score.value
    return {"contributions": mean_abs(explanation), "contributions_unit": unit}


def _drift_summary(store: ObjectStore, bucket: str, run: keys.RunRef) -> dict[str, Any] | None:
    """The run's drift.json (written by preprocess), with its key, if there is one."""
    key = keys.drift_key(run.dataset, run.run_id)
    if store.head(bucket, key) is None:
        return None
    return {"key": key, **orjson.loads(store.get(bucket, key))}


def _write_reports(
    ports: Ports,
    prefix: str,
    report: EvaluationReport,
    y: np.ndarray,
    pred: np.ndarray,
    champion_pred: np.ndarray | None,
) -> str:
    """Store the report's files under `prefix`; returns the key of report.json."""
    # Imported here: matplotlib and jinja2 are only needed by this stage.
    from automlops.reports.bundle import REPORT_JSON, report_bundle

    files = report_bundle(report, *plot_sample(y, pred, champion_pred, seed=ports.settings.seed))
    ports.progress(f"writing the report with {len(report.plots)} plots")
    bucket = ports.settings.buckets.model_monitoring
    for filename, data in files.items():
        ports.store.put(bucket, prefix + filename, data)
    return prefix + REPORT_JSON
