"""Several XGBoost boosters predicted in one pass: an ensemble of XGBoost members.

Each `inplace_predict` call fills a feature vector per row and walks its booster's trees; an
ensemble of four boosters pays the filling four times, and four calls' overhead on every
request. Here the members' trees become one booster with an output per member output (a
multi-output model whose tree `i` adds to output `tree_info[i]`), read once per row; each
member's margins come back as that booster's outputs plus the member's intercept, and go
through the member's own link (sigmoid, softmax or none), as the member would predict.

The fused booster is checked against the members on probe rows built from the trees' own
split points (either side of each, and missing values) before it is used; anything XGBoost's
model format does not let us fuse, or that disagrees, leaves the members predicting apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

from automlops.ml.learners.base import Model
from automlops.ml.learners.xgboost_model import XGBoostModel

# The members' objectives fused, and how each turns margins into what `predict` gives.
_LINKS = {"binary:logistic": "sigmoid", "multi:softprob": "softmax", "reg:squarederror": "none"}
_PROBE_ROWS = 256
_TOLERANCE = 1e-4  # on margins; float32 sums in another order differ by about 1e-6

MemberOutputs = Callable[[np.ndarray], list[np.ndarray]]


@dataclass(frozen=True)
class _Output:
    """One member's slice of the fused margins and how it becomes the member's prediction."""

    start: int
    width: int  # its classes (multiclass) or 1
    link: str
    intercept: np.ndarray  # (width,), added to the slice


class FusedBoosters:
    """One booster holding every member's trees; `__call__` gives each member's prediction."""

    def __init__(self, booster: xgb.Booster, outputs: list[_Output]) -> None:
        self.booster = booster
        self.outputs = outputs

    def __call__(self, features: np.ndarray) -> list[np.ndarray]:
        margins = self._margins(features)
        return [
            _linked(margins[:, o.start : o.start + o.width] + o.intercept, o) for o in self.outputs
        ]

    def _margins(self, features: np.ndarray) -> np.ndarray:
        out = self.booster.inplace_predict(features, predict_type="margin", validate_features=False)
        return np.asarray(out, dtype=np.float64).reshape(len(features), -1)


def fuse_members(models: Sequence[Model]) -> MemberOutputs | None:
    """The members' predictions in one pass when they are all XGBoost boosters that can be
    fused (see the module), else None (the caller predicts member by member)."""
    if len(models) < 2 or not all(isinstance(m, XGBoostModel) for m in models):
        return None
    boosters = [m.booster for m in models if isinstance(m, XGBoostModel)]
    try:
        docs = [json.loads(bytes(b.save_raw(raw_format="json"))) for b in boosters]
        fused, outputs = _fused(
            docs, threads=max(m.nthread for m in models if isinstance(m, XGBoostModel))
        )
    except (KeyError, ValueError, TypeError, xgb.core.XGBoostError):
        return None  # a model format this code does not know: predict apart
    if fused is None:
        return None
    probe = _probe_rows(docs)
    margins = np.asarray(
        fused.inplace_predict(probe, predict_type="margin", validate_features=False),
        dtype=np.float64,
    ).reshape(len(probe), -1)
    checked = []
    for booster, output in zip(boosters, outputs, strict=True):
        expected = np.asarray(
            booster.inplace_predict(probe, predict_type="margin", validate_features=False),
            dtype=np.float64,
        ).reshape(len(probe), output.width)
        sums = margins[:, output.start : output.start + output.width]
        intercept = expected[0] - sums[0]
        if not np.allclose(sums + intercept, expected, rtol=0.0, atol=_TOLERANCE):
            return None
        checked.append(_Output(output.start, output.width, output.link, intercept))
    return FusedBoosters(fused, checked)


def _fused(docs: list[dict[str, Any]], threads: int) -> tuple[xgb.Booster | None, list[_Output]]:
    """A booster of every member's trees (member `k`'s trees add to its outputs' slice), its
    intercepts left at zero, and each member's slice and link."""
    trees: list[dict[str, Any]] = []
    tree_info: list[int] = []
    outputs: list[_Output] = []
    features = {d["learner"]["learner_model_param"]["num_feature"] for d in docs}
    if len(features) != 1:
        return None, []
    for doc in docs:
        learner = doc["learner"]
        link = _LINKS.get(learner["objective"]["name"])
        model = learner["gradient_booster"]["model"]
        if link is None or learner["gradient_booster"]["name"] != "gbtree":
            return None, []
        if model["gbtree_model_param"]["num_parallel_tree"] != "1" or _has_categories(model):
            return None, []
        width = max(int(learner["learner_model_param"]["num_class"]), 1)
        start = outputs[-1].start + outputs[-1].width if outputs else 0
        for tree, group in zip(model["trees"], model["tree_info"], strict=True):
            trees.append({**tree, "id": len(trees)})
            tree_info.append(start + int(group))
        outputs.append(_Output(start, width, link, np.zeros(width)))
    width = outputs[-1].start + outputs[-1].width
    fused = docs[0]
    learner = fused["learner"]
    learner["learner_model_param"] = {
        "base_score": "[" + ",".join(["0"] * width) + "]",
        "boost_from_average": "0",
        "num_class": "0",
        "num_feature": features.pop(),
        "num_target": str(width),
    }
    learner["objective"] = {"name": "reg:squarederror", "reg_loss_param": {"scale_pos_weight": "1"}}
    learner["attributes"] = {}
    model = learner["gradient_booster"]["model"]
    model["trees"] = trees
    model["tree_info"] = tree_info
    model["gbtree_model_param"] = {"num_parallel_tree": "1", "num_trees": str(len(trees))}
    model["iteration_indptr"] = list(range(len(trees) + 1))  # a tree per round: all summed
    booster = xgb.Booster(params={"nthread": threads})
    booster.load_model(bytearray(json.dumps(fused).encode()))
    return booster, outputs


def _has_categories(model: dict[str, Any]) -> bool:
    return any(tree.get("categories_nodes") for tree in model["trees"])


def _probe_rows(docs: list[dict[str, Any]]) -> np.ndarray:
    """Rows that reach many leaves: each feature just below or above one of its split points
    (seeded), a tenth of the cells missing."""
    n_features = int(docs[0]["learner"]["learner_model_param"]["num_feature"])
    splits: list[list[float]] = [[] for _ in range(n_features)]
    for doc in docs:
        for tree in doc["learner"]["gradient_booster"]["model"]["trees"]:
            left = tree["left_children"]
            for node, feature in enumerate(tree["split_indices"]):
                if left[node] != -1:
                    splits[feature].append(float(tree["split_conditions"][node]))
    rng = np.random.default_rng(20261130)
    rows = np.zeros((_PROBE_ROWS, n_features), dtype=np.float32)
    for j, points in enumerate(splits):
        if points:
            chosen = rng.choice(np.asarray(points), size=_PROBE_ROWS)
            rows[:, j] = chosen + rng.choice([-1e-3, 1e-3], size=_PROBE_ROWS) * (1 + np.abs(chosen))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    return rows


def _linked(margins: np.ndarray, output: _Output) -> np.ndarray:
    """What the member's `predict` gives for its margins: P(positive), class probabilities
    or values."""
    if output.link == "sigmoid":
        return 1.0 / (1.0 + np.exp(-margins[:, 0]))
    if output.link == "softmax":
        shifted = np.exp(margins - margins.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    return margins[:, 0]
