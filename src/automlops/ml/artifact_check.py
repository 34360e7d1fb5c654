"""Checks of an untrusted model artifact: what its members say, before and after loading.

`check_contents` reads the saved models as text or JSON only (no model library runs), so it
is safe in any process; `check_loaded` inspects a model already loaded and makes a test
prediction, which is only safe where a native crash cannot hurt (see `ml.artifact_probe`).
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import TYPE_CHECKING, Any

import orjson

from automlops.errors import PermanentError
from automlops.ml.artifact import ModelArtifact
from automlops.ml.learners.ensemble import ENSEMBLE

if TYPE_CHECKING:  # loading a model is the child's business (ml.artifact_probe)
    from automlops.ml.predictor import Predictor


class InvalidArtifact(PermanentError):
    """A model artifact that must not be registered or served; the message says why."""


def feature_width(artifact: ModelArtifact) -> int:
    """How many features the artifact's transform feeds its model."""
    return artifact.transform.compile().width


def saved_models(learner: str, data: bytes) -> list[tuple[str, bytes]]:
    """(learner, saved model) of each model in `data`: itself, or an ensemble's members."""
    if learner != ENSEMBLE:
        return [(learner, data)]
    try:
        raw = orjson.loads(data)
        members = [(str(m["learner"]), base64.b64decode(m["model"])) for m in raw["members"]]
    except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidArtifact(f"ensemble model is not readable: {exc!r}") from None
    return [pair for name, model in members for pair in saved_models(name, model)]


def lightgbm_feature_indices(text: bytes) -> list[int]:
    """Every feature index a LightGBM text model reads: its splits and its max_feature_idx."""
    indices: list[int] = []
    for line in text.splitlines():
        if line.startswith((b"split_feature=", b"max_feature_idx=")):
            values = line.partition(b"=")[2].split()
            try:
                indices.extend(int(v) for v in values)
            except ValueError:
                raise InvalidArtifact(f"LightGBM model has a bad line: {line[:80]!r}") from None
    return indices


def check_contents(artifact: ModelArtifact) -> None:
    """Refuse an artifact whose saved models read features its transform does not produce."""
    width = feature_width(artifact)
    for learner, data in saved_models(artifact.metadata.learner, artifact.model):
        if learner != "lightgbm":
            continue  # XGBoost's binary format is checked once loaded (check_loaded)
        outside = [i for i in lightgbm_feature_indices(data) if not 0 <= i < width]
        if outside:
            raise InvalidArtifact(
                f"LightGBM model reads feature {outside[0]} (split_feature/max_feature_idx) "
                f"but the transform produces {width} features"
            )


def check_loaded(predictor: Predictor) -> None:
    """Refuse a loaded model whose feature count differs from the transform's or that cannot
    predict one row of default values (every column missing, imputed as in training)."""
    width = predictor.encoder.width
    for model in _leaf_models(predictor.model):
        expected = _declared_width(model)
        if expected is not None and expected != width:
            raise InvalidArtifact(
                f"{model.learner} model expects {expected} features "
                f"but the transform produces {width}"
            )
    try:
        out = predictor.predict_rows([{}])
    except Exception as exc:
        raise InvalidArtifact(f"test prediction failed: {exc!r}"[:500]) from None
    values = [out.proba, out.values]
    numbers = [float(x) for array in values if array is not None for x in array.reshape(-1)]
    if not numbers or not all(math.isfinite(x) for x in numbers):
        raise InvalidArtifact(f"test prediction is not a finite number: {numbers[:5]}")


def _leaf_models(model: Any) -> list[Any]:
    members = getattr(model, "members", None)
    if members is None:
        return [model]
    return [leaf for member in members for leaf in _leaf_models(member.model)]


def _declared_width(model: Any) -> int | None:
    """The feature count a loaded tree model was saved with (None: not a tree library's)."""
    if model.learner == "xgboost":
        return int(model.booster.num_features())
    if model.learner == "lightgbm":
        return int(model.booster.num_feature())
    return None
