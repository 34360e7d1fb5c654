"""AutoML: any tabular CSV goes through with only --target, tuned by the search."""

from __future__ import annotations

import io
import json

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from automlops.config import Manifest, Task
from automlops.local.runtime import LocalRuntime
from automlops.local.worker import Worker
from automlops.ml.learners.base import FitJob
from automlops.ml.learners.catalog import LEARNER_NAMES, learner
from automlops.ml.tuning.outcome import SelectionData
from automlops.ml.tuning.search import Tuner
from automlops.tabular.schema import DatasetSchema
from support import upload


def messy_frame(n: int = 600, seed: int = 0) -> pl.DataFrame:
    """Missing values, an ID, a date, free text, a duplicate and a constant column."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50_000, 15_000, n)
    city = rng.choice(["Lisbon", "Porto", "Faro"], n)
    days = rng.integers(0, 900, n)
    score = income / 10_000 + (city == "Porto") * 2 + days / 300 + rng.normal(0, 1, n)
    segment = np.where(score < 5.5, "low", np.where(score < 7.5, "mid", "high"))
    income_text = [None if i % 17 == 0 else f"{v:.2f}" for i, v in enumerate(income)]
    words = ["great", "service", "slow", "delivery", "friendly", "staff", "price", "ok"]
    return pl.DataFrame(
        {
            "customer_id": rng.permutation(n) + 1000,
            "signup": [str(np.datetime64("2022-01-01") + int(d)) for d in days],
            "income": income_text,
            "city": [None if i % 23 == 0 else c for i, c in enumerate(city)],
            "comment": [" ".join(rng.choice(words, 6)) + f" #{i}" for i in range(n)],
            "city_copy": [None if i % 23 == 0 else c for i, c in enumerate(city)],
            "country": ["PT"] * n,
            "segment": segment,
        }
    )


def csv_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    return buffer.getvalue()


def run_dataset(runtime: LocalRuntime, name: str, frame: pl.DataFrame, target: str) -> None:
    upload(
        runtime,
        Manifest(dataset=name, target=target, time_budget_s=2),
        f"{name}.csv",
        csv_bytes(frame),
    )
    finished: list = []
    Worker(runtime, on_run_end=finished.append).run_until_idle()
    [run] = finished
    assert run.status == "succeeded", run.error


def schema_of(runtime: LocalRuntime, dataset: str) -> DatasetSchema:
    [key] = [
        k
        for k in runtime.store.list("automl-data", f"automl/{dataset}/")
        if k.endswith("schema.json")
    ]
    return DatasetSchema.model_validate_json(runtime.store.get("automl-data", key))


def test_messy_csv_is_explained_column_by_column(runtime: LocalRuntime) -> None:
    run_dataset(runtime, "messy", messy_frame(), "segment")
    schema = schema_of(runtime, "messy")
    decisions = {c.name: c.decision for c in schema.columns}
    assert schema.target.task is Task.multiclass
    assert schema.target.labels == ["high", "low", "mid"]
    assert decisions["customer_id"].startswith("dropped: ID-like")
    assert decisions["signup"].startswith("feature: date (%Y-%m-%d)")
    assert decisions["income"].startswith("feature: numeric, missing -> median")
    assert decisions["city"].startswith("feature: one-hot of 3 categories")
    assert decisions["comment"].startswith("dropped: free text")
    assert decisions["city_copy"] == "dropped: duplicate of column 'city'"
    assert decisions["country"] == "dropped: constant in training data"
    assert decisions["segment"] == "target"

    champion = runtime.registry.read("messy").champion_version()
    assert champion is not None
    assert champion.metrics["accuracy"] > 0.6  # well above the 1/3 of guessing
    # Serving takes the raw columns, dates as text included.
    client = TestClient(runtime.create_app())
    rows = [
        {"signup": "2024-03-01", "income": 80000, "city": "Porto", "customer_id": 1},
        {"signup": "2022-01-02", "income": "21000.5"},
        {},
    ]
    body = client.post("/endpoints/messy/invocations", json={"instances": rows}).json()
    assert body["predictions"][0]["label"] == "high"
    assert all(set(p["probabilities"]) == {"high", "low", "mid"} for p in body["predictions"])
    bad = client.post("/endpoints/messy/invocations", json={"instances": [{"signup": "soon"}]})
    assert bad.status_code == 400 and bad.json()["column"] == "signup"


def test_numeric_target_is_a_regression(runtime: LocalRuntime) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3))
    frame = pl.DataFrame(
        {"a": x[:, 0], "b": x[:, 1], "noise": x[:, 2], "price": 3 * x[:, 0] - 2 * x[:, 1] + 10}
    )
    run_dataset(runtime, "prices", frame, "price")
    assert schema_of(runtime, "prices").target.task is Task.regression
    champion = runtime.registry.read("prices").champion_version()
    assert champion is not None and champion.task == "regression"
    assert champion.metrics["r2"] > 0.9
    client = TestClient(runtime.create_app())
    out = client.post(
        "/endpoints/prices/invocations", json={"instances": [{"a": 1.0, "b": -1.0, "noise": 0}]}
    ).json()
    assert out["predictions"][0]["value"] == pytest.approx(15.0, abs=2.0)


def test_imbalanced_binary_with_string_labels(runtime: LocalRuntime) -> None:
    rng = np.random.default_rng(2)
    n = 1500
    x = rng.normal(size=n)
    churn = np.where(x + rng.normal(0, 0.5, n) > 1.6, "churned", "stayed")  # about 7 %
    frame = pl.DataFrame({"usage": x, "plan": rng.choice(["a", "b"], n), "status": churn})
    run_dataset(runtime, "churn", frame, "status")
    target = schema_of(runtime, "churn").target
    assert target.task is Task.binary and target.positive == "churned"  # minority class
    champion = runtime.registry.read("churn").champion_version()
    assert champion is not None and champion.metrics["roc_auc"] > 0.85
    report = json.loads(runtime.store.get("model-monitoring", champion.report_key))
    assert 0 < report["threshold"] < 1


@pytest.mark.parametrize("name", LEARNER_NAMES)
@pytest.mark.parametrize("task", list(Task))
def test_every_learner_round_trips_through_its_own_format(name: str, task: Task) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = {
        Task.binary: (x[:, 0] > 0).astype(int),
        Task.multiclass: np.digitize(x[:, 0], [-0.5, 0.5]),
        Task.regression: x[:, 0] * 2.0,
    }[task]
    k = 3 if task is Task.multiclass else (2 if task is Task.binary else 0)
    family = learner(name)
    params = {"rounds": 20} if name != "linear" else {}
    model = family.fit(
        params, FitJob(task, k, (x[:200], y[:200]), (x[200:], y[200:]), seed=0, nthread=1)
    )
    data = model.save()
    assert b"pickle" not in data[:100]
    loaded = family.load(data, task, k)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-5, atol=1e-6)
    shape = (300, 3) if task is Task.multiclass else (300,)
    assert loaded.predict(x).shape == shape
    importances = loaded.importances(["a", "b", "c", "d"])
    assert max(importances, key=importances.get) == "a"


def test_search_is_reproducible_for_a_seed() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 5))
    y = (x[:, 0] + rng.normal(0, 0.5, 300) > 0).astype(int)
    runs = [
        Tuner(
            Task.binary,
            2,
            budget_s=3,
            seed=7,
            nthread=1,
            learners=("linear", "lightgbm"),
        ).fit((x[:200], y[:200]), (x[200:], y[200:]))
        for _ in range(2)
    ]
    # The budget decides how many trials run; the ones both runs made are the same.
    common = min(len(r.trials_) for r in runs)
    assert common >= 2
    # Every trial stops at its deadline: one that either run cut short scores differently,
    # and the sampler's later suggestions follow from that score.
    pairs = list(zip(runs[0].trials_[:common], runs[1].trials_[:common], strict=True))
    uncut = next((i for i, (a, b) in enumerate(pairs) if a.cut or b.cut), common)
    suggested = min(common, uncut + 1)
    first, second = ([(t.learner, t.params) for t in r.trials_[:suggested]] for r in runs)
    assert first == second
    # Scores too, but for the last common trial, which the deadline may have cut short.
    scored = min(common - 1, uncut)
    assert [t.score for t in runs[0].trials_[:scored]] == [
        t.score for t in runs[1].trials_[:scored]
    ]
    assert runs[0].selection_.data is SelectionData.cross_validation
    assert runs[0].selection_.folds == 5
    assert runs[0].heldout_pred_.shape == (300,)
