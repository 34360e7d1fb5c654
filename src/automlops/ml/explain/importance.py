"""Global importance from per-row contributions: mean |contribution| of each raw column."""

from __future__ import annotations

import numpy as np

from automlops.ml.explain.records import Explanation


def mean_abs(explanation: Explanation) -> dict[str, dict[str, float]]:
    """Per output (class, or the one output), each column's mean |contribution| over the rows,
    largest first. Uses every column whatever top K the explanation keeps."""
    if explanation.rows == 0:
        return {output: {} for output in explanation.outputs}
    means = np.abs(explanation.values).mean(axis=0)  # (outputs, columns)
    result: dict[str, dict[str, float]] = {}
    for output, row in zip(explanation.outputs, means, strict=True):
        ranked = sorted(zip(explanation.columns, row.tolist(), strict=True), key=lambda c: -c[1])
        result[output] = dict(ranked)
    return result
