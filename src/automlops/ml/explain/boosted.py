"""Our TreeSHAP (`treeshap`) for XGBoost and LightGBM boosters, checked against the booster.

A model builds it once, on its first explanation, and keeps it. The layout is checked against
the booster's own margins on a few probe rows (zeros, missing values, and rows around the
split thresholds); a model whose trees do not agree, or that the layout cannot hold, gets
None and keeps the library's TreeSHAP.
"""

from __future__ import annotations

from collections.abc import Callable

import lightgbm as lgb
import numpy as np
import xgboost as xgb

from automlops.ml.explain.forest import Forest, lightgbm_forest, xgboost_forest
from automlops.ml.explain.treeshap import TreeShap, margin

_PROBE_ROWS = 16
_AGREE = 1e-4  # largest margin difference accepted between our trees and the booster's


def xgboost_treeshap(booster: xgb.Booster) -> TreeShap | None:
    """TreeSHAP over an XGBoost booster's trees, its base score set from its own margin."""
    forest = xgboost_forest(bytes(booster.save_raw(raw_format="json")))
    if forest is None:
        return None

    def booster_margin(x: np.ndarray) -> np.ndarray:
        out = booster.inplace_predict(x, predict_type="margin", validate_features=False)
        return np.asarray(out, np.float64).reshape(len(x), -1)

    return _checked(forest, int(booster.num_features()), booster_margin)


def lightgbm_treeshap(booster: lgb.Booster) -> TreeShap | None:
    """TreeSHAP over a LightGBM booster's trees."""
    forest = lightgbm_forest(booster.dump_model())
    if forest is None:
        return None

    def booster_margin(x: np.ndarray) -> np.ndarray:
        out = booster.predict(x, raw_score=True, num_threads=1)
        return np.asarray(out, np.float64).reshape(len(x), -1)

    return _checked(forest, int(booster.num_feature()), booster_margin)


def _checked(
    forest: Forest, width: int, booster_margin: Callable[[np.ndarray], np.ndarray]
) -> TreeShap | None:
    probes = _probes(forest, width)
    theirs = booster_margin(probes)
    ours = margin(forest, probes)
    if theirs.shape != ours.shape:
        return None
    # What the booster adds beside its trees (XGBoost's base score), read off the zero row.
    forest = forest.with_offset(theirs[0] - ours[0])
    if np.abs(margin(forest, probes) - theirs).max() > _AGREE:
        return None
    return TreeShap(forest)


def _probes(forest: Forest, width: int) -> np.ndarray:
    """Rows that take many different paths: zeros, all missing, and random mixes of values
    just around the model's thresholds and missing values."""
    rng = np.random.default_rng(0)
    rows = np.zeros((_PROBE_ROWS, width), np.float32)
    rows[1] = np.nan
    internal = forest.leaf < 0
    # LightGBM's outermost thresholds can exceed float32's range.
    thresholds = np.clip(forest.threshold[internal], -3e38, 3e38).astype(np.float32)
    features = forest.feature[internal]
    for r in range(2, _PROBE_ROWS):
        rows[r] = rng.normal(size=width)
        if len(thresholds):
            pick = rng.integers(0, len(thresholds), size=width)
            chosen = rng.random(width) < 0.7
            at = features[pick[chosen]]
            nudge = rng.choice(np.array([-1e-3, 0.0, 1e-3], np.float32), size=len(at))
            rows[r, at] = thresholds[pick[chosen]] + nudge
        rows[r, rng.random(width) < 0.1] = np.nan
    return rows
