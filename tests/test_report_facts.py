"""Reports a reader can judge: the trivial baseline beside every metric, the threshold and why,
how many trials ran, the column decisions and the importance table, in REPORT.md and
report.html alike."""

from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from automlops import keys
from automlops.config import Manifest, Task
from automlops.events import S3Event, S3EventRecord
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.manifests import save_manifest
from automlops.ml.artifact import ModelArtifact
from automlops.ml.evaluation.metrics import baseline_metrics, binary_metrics
from automlops.ml.predictor import Predictor
from automlops.reports.html import render_html
from automlops.reports.model_facts import ThresholdChoice, model_facts
from automlops.reports.report import DecisionSummary, EvaluationReport, render_markdown
from automlops.stages.preprocess import preprocess
from automlops.stages.train import train
from automlops.tabular.schema import DatasetSchema


def test_the_baseline_is_the_best_constant_on_the_rows() -> None:
    y = np.array([0, 0, 0, 1] * 25)
    binary = baseline_metrics(Task.binary, y)
    assert binary["accuracy"] == 0.75 and binary["roc_auc"] == 0.5 and binary["f1"] == 0.0
    classes = np.array([2, 2, 2, 0, 1] * 20)
    multi = baseline_metrics(Task.multiclass, classes, 3)
    assert multi["accuracy"] == pytest.approx(0.6) and multi["macro_f1"] == pytest.approx(0.25)
    values = np.arange(10.0)
    reg = baseline_metrics(Task.regression, values)
    assert reg["r2"] == 0.0 and reg["rmse"] == pytest.approx(float(values.std()))


def test_an_f1_threshold_below_the_majority_says_so() -> None:
    choice = ThresholdChoice(
        threshold=0.2,
        metric="f1",
        chosen_on="the validation split's predictions",
        accuracy=0.8,
        accuracy_at_half=0.9,
        majority_accuracy=0.88,
    )
    assert choice.below_majority
    reason = choice.reason()
    assert "maximise F1" in reason and "0.9000 at 0.5" in reason and "below the majority" in reason
    fine = choice.model_copy(update={"accuracy": 0.95})
    assert "below the majority" not in fine.reason()


def _next_record(runtime: LocalRuntime) -> S3EventRecord:
    [message] = runtime.queue.receive(runtime.settings.queues.events)
    [record] = S3Event.model_validate_json(message.body).records
    runtime.queue.delete(runtime.settings.queues.events, message.receipt_handle)
    return record


def _tiny_csv(rows: int = 400) -> bytes:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 2))
    colour = rng.choice(["red", "green", "blue"], rows)
    signal = x[:, 0] + (colour == "red") + rng.normal(0, 0.7, rows)
    frame = pl.DataFrame(
        {
            "size": x[:, 0].round(3),
            "weight": x[:, 1].round(3),
            "colour": colour,
            "comment|=x": ["same"] * rows,  # a hostile name; constant, so dropped
            "churn": np.where(signal > 1.2, "yes", "no"),  # about a quarter positive
        }
    )
    return frame.write_csv().encode()


def test_a_tiny_runs_report_shows_what_a_reader_needs(tmp_path: Path) -> None:
    runtime = open_runtime(tmp_path)
    try:
        manifest = Manifest(
            dataset="tiny",
            target="churn",
            positive="yes",
            time_budget_s=1,
            learners=["linear", "lightgbm"],
        )
        save_manifest(runtime.store, runtime.settings.buckets.data, manifest)
        key = keys.source_key("tiny", "tiny.csv")
        runtime.store.put(runtime.settings.buckets.data, key, _tiny_csv())
        preprocess(_next_record(runtime), runtime.ports())
        record = _next_record(runtime)
        result = train(record, runtime.ports())
        [model_key] = result.outputs
        buckets = runtime.settings.buckets
        artifact = ModelArtifact.from_tar_gz(runtime.store.get(buckets.model_output, model_key))
        schema = DatasetSchema.model_validate_json(runtime.store.get(record.bucket, record.key))
        test = pl.read_parquet(
            io.BytesIO(runtime.store.get(record.bucket, schema.split_keys["test"]))
        )
    finally:
        runtime.close()
    meta = artifact.metadata
    assert "trials" in (result.note or "")
    predictor = Predictor(artifact)
    y = meta.target.encode(test.get_column("churn"), "test")
    proba = predictor.predict(test.drop("churn")).proba
    assert proba is not None
    pred = proba[:, predictor.labels.index("yes")]
    facts = model_facts(meta, schema, y, pred)
    assert meta.threshold is not None
    report = EvaluationReport(
        dataset="tiny",
        version=1,
        run_id=meta.run_id,
        created_at=meta.created_at,
        task=meta.task.value,
        learner=meta.learner,
        selection=meta.selection,
        refit=meta.refit,
        endpoint="local",
        test_key=schema.split_keys["test"],
        rows=len(y),
        labels=meta.target.labels,
        threshold=meta.threshold,
        metrics=binary_metrics(y, pred, meta.threshold),
        decision=DecisionSummary(status="champion", reason="first model"),
        importances=predictor.importances(),
        facts=facts,
    )
    # report.json keeps the facts typed: a reader of the file gets them back.
    assert EvaluationReport.model_validate_json(report.model_dump_json()) == report
    majority = f"{max(np.mean(y), 1 - np.mean(y)):.4f}"
    trials = facts.trials
    assert trials is not None and trials.total == len(meta.trials) > 0
    markdown, page = render_markdown(report), html.unescape(render_html(report))
    for text in (markdown, page):
        assert "trivial baseline" in text and majority in text  # the baseline's accuracy
        assert "chosen to maximise F1" in text and "at 0.5" in text  # the threshold's reason
        assert f"{trials.total} trials: {trials.complete} complete" in text
        assert "Most important features" in text
    # The column table: every column, the dropped one with its reason, the target.
    assert "| size | " in markdown and "| colour | " in markdown
    assert "| comment\\|=x | " in markdown  # escaped: a user's name cannot open a cell
    dropped = next(c for c in facts.columns if c.name == "comment|=x")
    assert dropped.action == "dropped" and dropped.reason
    assert "<td>comment|=x</td>" in page and f"<td>{dropped.reason}</td>" in page
    assert "<td>target</td>" in page
    # The importance table lists the model's features in both documents.
    top = max(report.importances, key=lambda name: report.importances[name])
    assert f"| {top} | " in markdown.replace("\\_", "_") and f"<td>{top}</td>" in page
