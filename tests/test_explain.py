"""Explanations: additive per-row contributions by raw column, checked against shap and the
models' own predictions on every learner and task."""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import pytest
from fastapi.testclient import TestClient

from automlops.config import Task
from automlops.demo import breast_cancer_csv
from automlops.local.runtime import open_runtime
from automlops.ml.artifact import InputColumn, Lineage, ModelArtifact, ModelMetadata
from automlops.ml.batch import BatchScorer, Chunk, ScoreOptions
from automlops.ml.columns.target import TargetSpec
from automlops.ml.columns.transform import ColumnKind, FittedTransform, fit_column
from automlops.ml.explain.gap import additivity_gap, linked, raw_scores
from automlops.ml.explain.importance import mean_abs
from automlops.ml.explain.records import RawScore, rank
from automlops.ml.explain.table import explanation_frame
from automlops.ml.learners.base import FitJob, Model
from automlops.ml.learners.catalog import learner
from automlops.ml.learners.ensemble import EnsembleModel, Member
from automlops.ml.learners.lightgbm_model import LightGBMModel
from automlops.ml.learners.xgboost_model import XGBoostModel
from automlops.ml.predictor import Predictor
from automlops.reports.plots import contribution_plot
from automlops.serving import wire
from automlops.serving.invocation import INLINE_EXPLAIN_BYTES, ApiError, answer
from support import DEMO_DATASET

N_ROWS = 400
LABELS = {Task.binary: ["no", "yes"], Task.multiclass: ["a", "b", "c"], Task.regression: []}
KINDS = {
    "amount": ColumnKind.numeric,
    "colour": ColumnKind.categorical,
    "day": ColumnKind.datetime,
    "noise": ColumnKind.numeric,
}


def raw_frame(seed: int = 0, n: int = N_ROWS) -> pl.DataFrame:
    """Four raw columns: a number with gaps (median fill + indicator), a category (one-hot),
    a date (several parts) and noise."""
    rng = np.random.default_rng(seed)
    amount = rng.normal(size=n)
    amount[rng.random(n) < 0.1] = np.nan
    days = rng.integers(0, 700, size=n)
    return pl.DataFrame(
        {
            "amount": amount,
            "colour": rng.choice(["red", "green", "blue", "grey"], size=n),
            "day": [str(np.datetime64("2023-01-01") + int(d)) for d in days],
            "noise": rng.normal(size=n),
        }
    ).with_columns(pl.col("amount").fill_nan(None))


def target(frame: pl.DataFrame, task: Task) -> np.ndarray:
    score = (
        frame["amount"].fill_null(0.0).to_numpy()
        + (frame["colour"] == "red").to_numpy() * 1.5
        + (pl.Series(frame["day"]).str.slice(5, 2).cast(pl.Int32).to_numpy() > 6) * 0.8
    )
    if task is Task.regression:
        return score
    if task is Task.binary:
        return (score > 0.5).astype(np.float64)
    return np.digitize(score, [0.0, 1.0]).astype(np.float64)


@functools.cache
def fitted(task: Task, name: str) -> tuple[Predictor, Model]:
    """A predictor over a real transform and a model fitted on it (tiny, fast)."""
    frame = raw_frame()
    transform = FittedTransform(columns=[fit_column(frame[c], k) for c, k in KINDS.items()])
    x = transform.apply(frame)
    y = target(frame, task)
    k = max(len(LABELS[task]), 1)
    job = FitJob(task, k, (x, y), (x[:0], y[:0]), seed=0, nthread=1)
    if name == "ensemble":
        members = [Member(w, fitted(task, m)[1]) for w, m in [(0.5, "xgboost"), (0.3, "lightgbm")]]
        model: Model = EnsembleModel([*members, Member(0.2, fitted(task, "linear")[1])])
    else:
        params: dict[str, Any] = {"rounds": 30} if name != "linear" else {}
        model = learner(name).fit(params, job)
    meta = ModelMetadata(
        dataset="toy",
        run_id="r",
        created_at="2026-01-01T00:00:00Z",
        task=task,
        target=TargetSpec(name="y", task=task, labels=LABELS[task], positive="yes"),
        inputs=[InputColumn(name=c, kind=k.value) for c, k in KINDS.items()],
        feature_names=transform.feature_names,
        learner=model.learner,
        model_file=model.model_file,
        lineage=Lineage(
            source_bucket="b",
            source_key="k",
            source_sha256="0",
            schema_key="s",
            transform_key="t",
            split_keys={},
            training_run="r",
        ),
    )
    artifact = ModelArtifact(metadata=meta, transform=transform, model=model.save())
    return Predictor(artifact), model


TASKS = [Task.binary, Task.multiclass, Task.regression]
LEARNERS = ["xgboost", "lightgbm", "linear"]


@pytest.mark.parametrize("name", LEARNERS)
@pytest.mark.parametrize("task", TASKS)
def test_base_plus_contributions_is_the_raw_score(task: Task, name: str) -> None:
    predictor, _ = fitted(task, name)
    rows = raw_frame(seed=1, n=60)
    explained = predictor.explain_frame(rows)
    explanation, predictions = explained.explanation, explained.predictions
    assert explanation.exact
    assert explanation.columns == tuple(KINDS)  # raw columns, not one-hot or date parts
    summed = explanation.base + explanation.values.sum(axis=2)
    if task is Task.regression:
        assert predictions.values is not None
        np.testing.assert_allclose(summed[:, 0], predictions.values, atol=1e-4)
    else:
        assert predictions.proba is not None
        proba = predictions.proba[:, 1] if task is Task.binary else predictions.proba
        np.testing.assert_allclose(linked(task, summed), proba, atol=1e-6)
        # In raw units too, on rows whose probabilities are not saturated in float64.
        clear = ((proba > 1e-9) & (proba < 1 - 1e-9)).reshape(len(proba), -1).all(axis=1)
        if task is Task.multiclass:
            summed = summed - summed.mean(axis=1, keepdims=True)  # softmax ignores a shift
        np.testing.assert_allclose(summed[clear], raw_scores(task, proba)[clear], atol=1e-4)
    assert explanation.values.shape == (
        60,
        max(1, len(LABELS[task]) * (task is Task.multiclass)),
        4,
    )


@pytest.mark.parametrize("name", LEARNERS)
def test_the_one_hot_and_date_parts_are_summed_per_column(name: str) -> None:
    predictor, model = fitted(Task.binary, name)
    rows = raw_frame(seed=2, n=20)
    features = predictor.encoder.encode_frame(rows)
    by_feature = model.contributions(features, Task.binary).values
    by_column = predictor.explain_frame(rows).explanation.values
    names = predictor.transform.feature_names
    colour = [i for i, f in enumerate(names) if f.startswith("colour=")]
    day = [i for i, f in enumerate(names) if f.startswith("day__")]
    assert len(colour) == 4 and len(day) >= 2
    np.testing.assert_allclose(by_column[:, 0, 1], by_feature[:, 0, colour].sum(axis=1))
    np.testing.assert_allclose(by_column[:, 0, 2], by_feature[:, 0, day].sum(axis=1))
    # The signal columns outweigh the noise column on average.
    importance = mean_abs(predictor.explain_frame(raw_frame(seed=3)).explanation)["yes"]
    assert importance["noise"] < max(importance["amount"], importance["colour"])


# shap warns that its LightGBM binary output changed shape: handled below.
@pytest.mark.filterwarnings("ignore:LightGBM binary classifier:UserWarning")
@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
@pytest.mark.parametrize("task", TASKS)
def test_tree_contributions_agree_with_shap(task: Task, name: str) -> None:
    shap = pytest.importorskip("shap")
    predictor, model = fitted(task, name)
    features = predictor.encoder.encode_frame(raw_frame(seed=4, n=50))
    ours = model.contributions(features, task)
    assert isinstance(model, XGBoostModel | LightGBMModel)
    explainer = shap.TreeExplainer(model.booster)
    theirs = np.asarray(explainer.shap_values(features), dtype=np.float64)
    if theirs.ndim == 2:
        theirs = theirs[:, None, :]
    elif theirs.shape[1] != ours.values.shape[1]:  # (rows, features, classes)
        theirs = theirs.transpose(0, 2, 1)
    np.testing.assert_allclose(ours.values, theirs, atol=1e-4)
    expected = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64))
    np.testing.assert_allclose(ours.base, np.broadcast_to(expected, ours.base.shape), atol=1e-4)


def test_linear_contributions_are_coefficient_times_centred_value() -> None:
    predictor, model = fitted(Task.regression, "linear")
    features = predictor.encoder.encode_frame(raw_frame(seed=5, n=10))
    ours = model.contributions(features, Task.regression)
    mean, scale, coef = (getattr(model, a) for a in ("mean", "scale", "coef"))
    np.testing.assert_allclose(ours.values[:, 0, :], (features - mean) / scale * coef[0])
    # At the training means every contribution is 0 and the score is the base.
    at_mean = model.contributions(np.asarray(mean, dtype=np.float32)[None, :], Task.regression)
    np.testing.assert_allclose(at_mean.values, 0.0, atol=1e-5)


def test_regression_ensemble_is_exact() -> None:
    predictor, model = fitted(Task.regression, "ensemble")
    rows = raw_frame(seed=6, n=80)
    explained = predictor.explain_frame(rows)
    assert explained.explanation.exact
    features = predictor.encoder.encode_frame(rows)
    gap = additivity_gap(
        Task.regression, model.contributions(features, Task.regression), model.predict(features)
    )
    assert gap.raw_max < 1e-4


@pytest.mark.parametrize("task", [Task.binary, Task.multiclass])
def test_classifier_ensemble_approximates_the_log_odds_of_its_mean_probability(task: Task) -> None:
    """Contributions sum exactly to the weighted mean of the members' raw scores; that
    approximates the raw score of the mean probability, by a measured, bounded gap."""
    predictor, model = fitted(task, "ensemble")
    assert isinstance(model, EnsembleModel)
    features = predictor.encoder.encode_frame(raw_frame(seed=7, n=200))
    combined = model.contributions(features, task)
    assert not combined.exact and not predictor.explain_frame(raw_frame(n=3)).explanation.exact
    members = [(m.weight, m.model.contributions(features, task)) for m in model.members]
    np.testing.assert_allclose(
        combined.raw_score, sum(w * c.raw_score for w, c in members), atol=1e-9
    )
    gap = additivity_gap(task, combined, model.predict(features))
    # Measured on these rows, with members overfitted to a noiseless target (linear logits
    # near +-15 beside the trees' +-4, the worst case for averaging probabilities): binary
    # mean 0.68 log-odds, the implied probability at most 0.14 from the ensemble's.
    assert 0 < gap.raw_mean < 1.0
    assert gap.probability_max < 0.2
    # Members that agree: the mean of raw scores is the raw score of the mean.
    twice = EnsembleModel([Member(0.5, model.members[0].model)] * 2)
    same = additivity_gap(task, twice.contributions(features, task), twice.predict(features))
    assert same.raw_max < 1e-4 and same.probability_max < 1e-6


def test_top_k_ranks_by_magnitude() -> None:
    values = np.array([[[0.1, -3.0, 2.0, 0.0]]])
    assert rank(values, 2).tolist() == [[[1, 2]]]
    assert rank(values, None).tolist() == [[[1, 2, 0, 3]]]
    assert rank(values, 0).shape == (1, 1, 0)
    wide = np.random.default_rng(0).normal(size=(5, 2, 100))
    np.testing.assert_array_equal(rank(wide, 7), rank(wide, None)[..., :7])
    predictor, _ = fitted(Task.multiclass, "lightgbm")
    explanation = predictor.explain_frame(raw_frame(n=5), k=2).explanation
    columns, kept = explanation.top()
    assert columns.shape == kept.shape == (5, 3, 2)
    assert explanation.raw_score is RawScore.softmax_logit and explanation.outputs == (
        "a",
        "b",
        "c",
    )
    assert (np.abs(kept[..., 0]) >= np.abs(kept[..., 1])).all()


def test_rows_and_frame_paths_agree_and_empty_batches_explain_nothing() -> None:
    predictor, _ = fitted(Task.binary, "xgboost")
    frame = raw_frame(seed=8, n=5)
    rows = [{k: (None if v is None else v) for k, v in r.items()} for r in frame.to_dicts()]
    a = predictor.explain_rows(rows, k=3).explanation
    b = predictor.explain_frame(frame, k=3).explanation
    np.testing.assert_allclose(a.values, b.values, atol=1e-6)
    empty = predictor.explain_rows([], k=3).explanation
    assert empty.values.shape == (0, 1, 4) and empty.order.shape == (0, 1, 3)


# -- serving ---------------------------------------------------------------------------------


def invoke(predictor: Predictor, payload: Any, accept: str = wire.JSON) -> Any:
    content, _ = answer(predictor, 1, orjson.dumps(payload), wire.JSON, accept)
    return orjson.loads(content)


def test_explain_in_the_body_answers_with_each_rows_contributions() -> None:
    predictor, _ = fitted(Task.multiclass, "xgboost")
    rows = raw_frame(seed=9, n=3).to_dicts()
    plain = invoke(predictor, {"instances": rows})["predictions"]
    assert all("explanation" not in item for item in plain)
    answered = invoke(predictor, {"instances": rows, "explain": 2})["predictions"]
    full = invoke(predictor, {"instances": rows, "explain": True})["predictions"]
    for item, whole, probabilities in zip(answered, full, plain, strict=True):
        assert item["probabilities"] == probabilities["probabilities"]
        why = wire.Explanation.model_validate(item["explanation"])
        assert why.raw_score == "softmax logit" and why.exact
        assert list(why.outputs) == ["a", "b", "c"]
        scores = []
        for label, output in wire.Explanation.model_validate(whole["explanation"]).outputs.items():
            assert [c.value for c in why.outputs[label].contributions] == [
                c.value for c in output.contributions[:2]
            ]
            assert {c.column for c in output.contributions} == set(KINDS)
            scores.append(output.base + sum(c.value for c in output.contributions))
        softmax = np.exp(scores) / np.exp(scores).sum()
        np.testing.assert_allclose(
            softmax, list(probabilities["probabilities"].values()), atol=1e-6
        )
    # The client builds such bodies and reads such answers.
    body = wire.json_body(rows, explain=2)
    assert wire.read_response(answer(predictor, 1, body, wire.JSON, wire.JSON)[0]).predictions


@pytest.mark.parametrize("value", [0, -1, 2.5, "3", [1], list(range(1000))])
def test_a_bad_explain_value_is_refused(value: Any) -> None:
    predictor, _ = fitted(Task.regression, "linear")
    with pytest.raises(ApiError) as refused:
        invoke(predictor, {"instances": [{"amount": 1}], "explain": value})
    assert refused.value.status == 400 and "explain" in str(refused.value)


def test_explain_is_not_asked_by_false_null_or_a_column_named_explain() -> None:
    predictor, _ = fitted(Task.regression, "linear")
    for payload in (
        {"instances": [{"amount": 1}], "explain": False},
        {"instances": [{"amount": 1}], "explain": None},
        {"instances": [{"amount": 1, "explain": 3}]},
    ):
        assert "explanation" not in invoke(predictor, payload)["predictions"][0]
    with pytest.raises(ApiError, match="JSON answer"):
        invoke(predictor, {"instances": [{"amount": 1}], "explain": True}, accept=wire.CSV)


def test_the_http_api_explains_and_documents_it(trained_home: Path) -> None:
    runtime = open_runtime(trained_home)
    try:
        client = TestClient(runtime.create_app(), raise_server_exceptions=False)
        rows = pl.read_csv(io.BytesIO(breast_cancer_csv())).drop("diagnosis").head(2).to_dicts()
        path = f"/endpoints/{DEMO_DATASET}/invocations"
        response = client.post(path, json={"instances": rows, "explain": 3})
        assert response.status_code == 200, response.text
        for item in wire.read_response(response.content).predictions:
            assert isinstance(item, wire.ClassPrediction) and item.explanation is not None
            assert item.explanation.raw_score == "log-odds"
            [(label, output)] = item.explanation.outputs.items()
            assert label == "malignant" and len(output.contributions) == 3
        # More rows than INLINE_EXPLAIN_BYTES holds: answered in a worker thread.
        more = pl.read_csv(io.BytesIO(breast_cancer_csv())).drop("diagnosis").head(8).to_dicts()
        assert len(orjson.dumps({"instances": more})) > INLINE_EXPLAIN_BYTES
        whole = client.post(path, json={"instances": more, "explain": True}).json()
        assert len(whole["predictions"]) == 8
        for item in whole["predictions"]:
            output = item["explanation"]["outputs"]["malignant"]
            score = output["base"] + sum(c["value"] for c in output["contributions"])
            p = item["probabilities"]["malignant"]
            assert 1 / (1 + math.exp(-score)) == pytest.approx(p, abs=1e-6)
        assert client.post(path, json={"instances": rows, "explain": 0}).status_code == 400
        document = client.get("/openapi.json").json()
        route = document["paths"]["/endpoints/{dataset}/invocations"]
        body = route["post"]["requestBody"]["content"][wire.JSON]["schema"]
        assert "explain" in body["properties"]
        schemas = document["components"]["schemas"]
        assert {"Explanation", "OutputExplanation", "Contribution"} <= set(schemas)
        assert "explanation" in schemas["ClassPrediction"]["properties"]
    finally:
        runtime.close()


# -- the report ------------------------------------------------------------------------------


def test_the_report_shows_mean_contributions_per_column(trained_home: Path) -> None:
    runtime = open_runtime(trained_home)
    try:
        entry = runtime.registry.read(DEMO_DATASET).get(1)
        assert entry.report_key is not None
        report = orjson.loads(runtime.store.get("model-monitoring", entry.report_key))
        png = entry.report_key.replace("report.json", "contributions.png")
        assert runtime.store.get("model-monitoring", png).startswith(b"\x89PNG")
    finally:
        runtime.close()
    [(label, means)] = report["contributions"].items()
    assert label == "malignant" and report["contributions_unit"] == "log-odds"
    assert len(means) > 5 and list(means.values()) == sorted(means.values(), reverse=True)
    assert {p["filename"] for p in report["plots"]} >= {"contributions.png"}


def test_the_per_class_contribution_plot_draws() -> None:
    predictor, _ = fitted(Task.multiclass, "lightgbm")
    importance = mean_abs(predictor.explain_frame(raw_frame(seed=10, n=50)).explanation)
    assert set(importance) == {"a", "b", "c"}
    assert contribution_plot(importance, "softmax logit").startswith(b"\x89PNG")


def test_an_explanation_as_table_columns() -> None:
    predictor, _ = fitted(Task.multiclass, "xgboost")
    explanation = predictor.explain_frame(raw_frame(seed=11, n=4), k=2).explanation
    table = explanation_frame(explanation)
    assert table.height == 4 and table.columns[:5] == [
        "base[a]",
        "column_1[a]",
        "contribution_1[a]",
        "column_2[a]",
        "contribution_2[a]",
    ]
    order, kept = explanation.top()
    assert table["column_1[b]"].to_list() == [list(KINDS)[i] for i in order[:, 1, 0]]
    np.testing.assert_allclose(table["contribution_2[c]"].to_numpy(), kept[:, 2, 1])
    binary = explanation_frame(
        fitted(Task.binary, "linear")[0].explain_frame(raw_frame(n=3), k=1).explanation
    )
    assert binary.columns == ["base", "column_1", "contribution_1"] and binary.height == 3


def test_batch_scoring_explains_the_predicted_class_of_each_row() -> None:
    predictor, _ = fitted(Task.multiclass, "xgboost")
    frame = raw_frame(seed=12, n=30).rename({"noise": "base"})  # an input named like an output
    frame = frame.with_columns(pl.col("base").alias("noise"))
    chunk = Chunk(0, 0, frame.cast({"amount": pl.String, "base": pl.String}).to_arrow())
    scorer = BatchScorer(predictor, ScoreOptions(explain=2), frame.columns)
    out = scorer.output(chunk, scorer.score(chunk, []).predictions)
    assert out.column_names[frame.width :] == [
        "prediction",
        *[f"probability_{label}" for label in LABELS[Task.multiclass]],
        "base_",  # the input's `base` is kept as it was
        "column_1",
        "contribution_1",
        "column_2",
        "contribution_2",
    ]
    whole = predictor.explain_frame(frame, k=2)
    chosen = whole.predictions.label_index
    assert chosen is not None and len(set(chosen.tolist())) > 1  # several classes explained
    rows = np.arange(frame.height)
    order, kept = whole.explanation.top()
    columns = np.array(whole.explanation.columns)
    assert out.column("column_1").to_pylist() == columns[order[rows, chosen, 0]].tolist()
    np.testing.assert_allclose(out.column("contribution_2").to_numpy(), kept[rows, chosen, 1])
    np.testing.assert_allclose(out.column("base_").to_numpy(), whole.explanation.base[rows, chosen])
    # The chosen class is the predicted one, and the plain scorer gives the same predictions.
    plain = BatchScorer(predictor, ScoreOptions(), frame.columns)
    assert out.column("prediction") == plain.output(
        chunk, plain.score(chunk, []).predictions
    ).column("prediction")
