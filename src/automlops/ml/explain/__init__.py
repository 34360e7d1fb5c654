"""Explanations of predictions: per-row additive contributions to the model's raw score.

`records` holds the typed results, `columns` sums model features back to the raw columns they
were encoded from, `gap` measures how far an approximate explanation is from additivity, and
`importance` turns many rows' contributions into a global importance. `forest` reads a
booster's trees into arrays, `treeshap` computes exact TreeSHAP over them (compiled), and
`boosted` builds it for an XGBoost or LightGBM booster, checked against the booster.
"""
