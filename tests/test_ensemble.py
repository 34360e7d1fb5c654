"""Ensembles: weights chosen on held-out predictions, stored without pickle, served as one."""

from __future__ import annotations

import functools
import io
import json

import numpy as np
import orjson
import polars as pl
import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from automlops.cli import app
from automlops.config import Manifest, Task
from automlops.local.runtime import LocalRuntime
from automlops.local.worker import Worker
from automlops.ml.artifact import ModelArtifact
from automlops.ml.learners.base import FitJob
from automlops.ml.learners.catalog import learner, load_model
from automlops.ml.learners.ensemble import EnsembleModel, Member, select_weights
from automlops.ml.predictor import Predictor
from automlops.ml.tuning.outcome import RefitStatus, Selection, SelectionData
from automlops.ml.tuning.search import Tuner
from automlops.stages import train as train_stage
from support import upload


def auc_of(y: np.ndarray):
    return lambda pred: float(roc_auc_score(y, pred))


def test_weights_go_to_candidates_that_complement_each_other() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 2000))
    y = (a + b + rng.normal(0, 0.5, 2000) > 0).astype(int)
    # Each candidate sees half of the signal; the average sees all of it.
    sees_a = a + rng.normal(0, 0.3, 2000)
    sees_b = b + rng.normal(0, 0.3, 2000)
    noise = rng.normal(size=2000)
    weights = select_weights([sees_a, noise, sees_b], auc_of(y))
    assert weights[1] <= 0.1  # pure noise may tip a few held-out pairs, never more
    assert weights[0] > 0.25 and weights[2] > 0.25
    assert sum(weights) == pytest.approx(1.0)
    blend = weights[0] * sees_a + weights[1] * noise + weights[2] * sees_b
    assert roc_auc_score(y, blend) > max(roc_auc_score(y, sees_a), roc_auc_score(y, sees_b))


def test_a_dominant_candidate_stands_alone() -> None:
    rng = np.random.default_rng(1)
    signal = rng.normal(size=1000)
    y = (signal > 0).astype(int)
    weights = select_weights([rng.normal(size=1000), signal], auc_of(y))
    assert weights == [0.0, 1.0]


def fitted_members(task: Task, k: int) -> tuple[np.ndarray, list[Member]]:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int) if task is Task.binary else None
    if task is Task.multiclass:
        y = np.digitize(x[:, 0], [-0.5, 0.5])
    job = FitJob(task, k, (x, y), (x[:0], y[:0]), seed=0, nthread=1)
    lgb = learner("lightgbm").fit({"rounds": 20}, job)
    lin = learner("linear").fit({}, job)
    return x, [Member(3.0, lgb), Member(1.0, lin)]


@pytest.mark.parametrize(("task", "k"), [(Task.binary, 2), (Task.multiclass, 3)])
def test_ensemble_saves_as_json_and_predicts_the_weighted_average(task: Task, k: int) -> None:
    x, members = fitted_members(task, k)
    model = EnsembleModel(members)
    expected = 0.75 * members[0].model.predict(x) + 0.25 * members[1].model.predict(x)
    np.testing.assert_allclose(model.predict(x), expected)

    data = model.save()
    stored = orjson.loads(data)  # plain JSON: each member in its own library's format
    assert [m["learner"] for m in stored["members"]] == ["lightgbm", "linear"]
    assert [m["weight"] for m in stored["members"]] == [0.75, 0.25]
    loaded = load_model("ensemble", data, task, k)
    np.testing.assert_allclose(loaded.predict(x), expected, rtol=1e-6)
    importances = loaded.importances(["a", "b", "c", "d"])
    assert sum(importances.values()) == pytest.approx(1.0)
    assert max(importances, key=importances.get) == "a"


def test_unknown_ensemble_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported ensemble format"):
        EnsembleModel.load(
            b'{"format_version": 99, "members": []}', Task.binary, 2, load_member=load_model
        )


def complementary_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth additive signal over many features (linear's strength) plus a sharp
    interaction (the trees'): each family misses part of it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 32))
    logit = x[:, :30].sum(axis=1) * 0.4 + 3.0 * ((x[:, 30] > 0) ^ (x[:, 31] > 0))
    y = (logit + rng.logistic(size=n) > 1.5).astype(int)
    return x, y


def test_tune_returns_an_ensemble_when_averaging_scores_higher() -> None:
    x, y = complementary_data(1200, seed=3)
    # Three trials (each family's defaults first) in a budget they cannot exhaust: the outcome does
    # not depend on how fast the machine is.
    result = Tuner(
        Task.binary,
        2,
        budget_s=600,
        seed=0,
        nthread=1,
        learners=("linear", "lightgbm"),
        max_trials=3,
    ).fit((x[:900], y[:900]), (x[900:], y[900:]))
    assert result.best_learner_ == "ensemble"
    members = result.best_params_["members"]
    assert {m["learner"] for m in members} == {"linear", "lightgbm"}
    assert sum(m["weight"] for m in members) == pytest.approx(1.0)
    # Chosen on the out-of-fold predictions, it scores above every single trial there.
    singles = [t.score for t in result.trials_ if t.state == "complete"]
    assert result.best_score_ > max(singles)
    assert result.best_score_ == pytest.approx(
        roc_auc_score(result.heldout_y_, result.heldout_pred_)
    )
    selection = result.selection_
    assert selection.data is SelectionData.cross_validation and selection.ensemble
    assert [(m.learner, m.weight) for m in selection.members] == [
        (m["learner"], m["weight"]) for m in members
    ]
    assert all(m.refit.status is RefitStatus.all_rows for m in selection.members)
    assert selection.score == result.best_score_
    assert result.refit_ is None  # each member carries its own

    # The refitted ensemble generalises: it beats its own members on fresh rows.
    fresh_x, fresh_y = complementary_data(3000, seed=4)
    ensemble_auc = roc_auc_score(fresh_y, result.best_model_.predict(fresh_x))
    assert isinstance(result.best_model_, EnsembleModel)
    for member in result.best_model_.members:
        assert ensemble_auc > roc_auc_score(fresh_y, member.model.predict(fresh_x))


def test_without_ensembles_one_model_is_chosen() -> None:
    x, y = complementary_data(1200, seed=3)
    result = Tuner(
        Task.binary,
        2,
        budget_s=3,
        seed=0,
        nthread=1,
        learners=("lightgbm", "linear"),
        ensemble=False,
    ).fit((x[:900], y[:900]), (x[900:], y[900:]))
    assert result.trials_[0].learner == "linear"  # the cheap model first, whatever the order
    assert result.best_learner_ in {"linear", "lightgbm"}
    assert not result.selection_.members
    assert result.refit_ is not None and result.refit_.rows == 1200


def test_an_ensemble_champion_is_served_and_reported(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stage's search ends after three trials (each family's defaults first), well within the
    # budget: the ensemble wins however loaded the machine is.
    monkeypatch.setattr(train_stage, "Tuner", functools.partial(Tuner, max_trials=3))
    x, y = complementary_data(1500, seed=5)
    frame = pl.DataFrame({f"x{i}": x[:, i] for i in range(x.shape[1])}).with_columns(
        pl.Series("outcome", np.where(y == 1, "yes", "no"))
    )
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    manifest = Manifest(
        dataset="blend", target="outcome", learners=["linear", "lightgbm"], time_budget_s=600
    )
    upload(runtime, manifest, "blend.csv", buffer.getvalue())
    Worker(runtime).run_until_idle()
    champion = runtime.registry.read("blend").champion_version()
    assert champion is not None
    assert champion.learner == "ensemble"

    artifact = ModelArtifact.from_tar_gz(
        runtime.store.get(champion.artifact_bucket, champion.artifact_key)
    )
    assert artifact.metadata.model_file == "model.ensemble.json"
    members = artifact.metadata.params["members"]
    assert {m["learner"] for m in members} == {"linear", "lightgbm"}
    selection = artifact.metadata.selection
    assert isinstance(selection, Selection) and selection.ensemble
    assert [m.learner for m in selection.members] == [m["learner"] for m in members]
    assert artifact.metadata.refit is None  # each member carries its own

    client = TestClient(runtime.create_app())
    rows = [{f"x{i}": float(v) for i, v in enumerate(row)} for row in x[:5]]
    body = client.post("/endpoints/blend/invocations", json={"instances": rows}).json()
    served = [p["probabilities"]["yes"] for p in body["predictions"]]
    expected = Predictor(artifact).predict(frame.head(5)).proba
    assert expected is not None
    np.testing.assert_allclose(served, expected[:, 1], rtol=1e-6)
    report = json.loads(runtime.store.get("model-monitoring", champion.report_key))
    assert report["learner"] == "ensemble"
    assert Selection.model_validate(report["selection"]) == selection
    markdown = runtime.store.get(
        "model-monitoring", champion.report_key.replace("report.json", "REPORT.md")
    ).decode()
    assert "- chosen by: 5-fold cross-validation; ensemble of" in markdown
    assert "- fitted on: each member on all " in markdown
    lineage = CliRunner().invoke(app, ["lineage", "blend", "1", "--home", str(runtime.home)])
    assert lineage.exit_code == 0
    [line] = [x for x in lineage.output.splitlines() if x.strip().startswith("members ")]
    assert "linear #" in line and "lightgbm #" in line
