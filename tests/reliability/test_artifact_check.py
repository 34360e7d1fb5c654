"""The checks an untrusted artifact passes before deploy registers it (ml.artifact_check and
ml.artifact_probe), one property each."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import orjson
import pytest
import xgboost as xgb
from poison_cases import lightgbm_text

from automlops.local.runtime import open_runtime
from automlops.ml.artifact import ModelArtifact
from automlops.ml.artifact_check import (
    InvalidArtifact,
    check_contents,
    check_loaded,
    feature_width,
    lightgbm_feature_indices,
)
from automlops.ml.artifact_probe import checked_artifact
from automlops.ml.learners.xgboost_model import XGBoostModel
from automlops.ml.predictor import Predictor
from support import DEMO_DATASET


@pytest.fixture(scope="module")
def real_bytes(trained_home: Path) -> bytes:
    runtime = open_runtime(trained_home)
    try:
        entry = runtime.registry.read(DEMO_DATASET).get(1)
        return runtime.store.get(entry.artifact_bucket, entry.artifact_key)
    finally:
        runtime.close()


def test_lightgbm_indices_are_read_from_split_and_max_lines() -> None:
    text = b"tree\nmax_feature_idx=7\nTree=0\nsplit_feature=0 3 5\nsplit_gain=1 2 3\n"
    assert lightgbm_feature_indices(text) == [7, 0, 3, 5]
    with pytest.raises(InvalidArtifact, match="bad line"):
        lightgbm_feature_indices(b"split_feature=0 x\n")


def test_a_real_artifact_passes_every_check(real_bytes: bytes) -> None:
    """The child process loads and predicts it: no false refusal of a good model."""
    artifact = checked_artifact(real_bytes, "good/model.tar.gz")
    assert artifact.model == ModelArtifact.from_tar_gz(real_bytes).model


def test_an_ensemble_member_reading_past_the_width_is_refused(real_bytes: bytes) -> None:
    artifact = ModelArtifact.from_tar_gz(real_bytes)
    width = feature_width(artifact)
    good = base64.b64encode(lightgbm_text(width, index=width - 1)).decode()
    bad = base64.b64encode(lightgbm_text(width, index=width)).decode()
    members = [
        {"learner": "lightgbm", "weight": 0.5, "model": good},
        {"learner": "lightgbm", "weight": 0.5, "model": bad},
    ]
    model = orjson.dumps({"format_version": 1, "members": members})
    meta = artifact.metadata.model_copy(update={"learner": "ensemble"})
    with pytest.raises(InvalidArtifact, match=f"reads feature {width} "):
        check_contents(artifact.model_copy(update={"metadata": meta, "model": model}))
    members.pop()  # the good member alone passes
    model = orjson.dumps({"format_version": 1, "members": members})
    check_contents(artifact.model_copy(update={"metadata": meta, "model": model}))


def test_an_xgboost_model_of_another_width_is_refused(real_bytes: bytes) -> None:
    predictor = Predictor(ModelArtifact.from_tar_gz(real_bytes))
    width = predictor.encoder.width
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, width + 3))
    booster = xgb.train({"nthread": 1}, xgb.DMatrix(x, label=x[:, 0] > 0), num_boost_round=2)
    predictor.model = XGBoostModel(booster)
    with pytest.raises(InvalidArtifact, match=f"expects {width + 3} features"):
        check_loaded(predictor)


def test_a_library_abort_in_the_child_is_an_invalid_artifact(real_bytes: bytes) -> None:
    """LightGBM aborts (std::terminate) on this text; the child dies, this process does not."""
    artifact = ModelArtifact.from_tar_gz(real_bytes)
    meta = artifact.metadata.model_copy(update={"learner": "lightgbm", "model_file": "m.txt"})
    crafted = artifact.model_copy(
        update={"metadata": meta, "model": lightgbm_text(feature_width(artifact), pad=True)}
    )
    with pytest.raises(InvalidArtifact, match=r"crashed its process \(SIGABRT\)"):
        checked_artifact(crafted.to_tar_gz(), "crafted/model.tar.gz")
