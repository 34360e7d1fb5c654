"""An explanation as columns of a table, one row per explained row (batch scoring's output)."""

from __future__ import annotations

import numpy as np
import polars as pl

from automlops.ml.explain.records import Explanation


def explanation_frame(explanation: Explanation) -> pl.DataFrame:
    """Per output: `base`, then `column_i` and `contribution_i` for the top K (i = 1..K,
    largest |contribution| first). With several outputs (multiclass) every name ends in
    `[label]`; with one, names are bare."""
    order, kept = explanation.top()
    names = np.array(explanation.columns, dtype=object)
    several = len(explanation.outputs) > 1
    data: dict[str, pl.Series] = {}
    for o, output in enumerate(explanation.outputs):
        suffix = f"[{output}]" if several else ""
        data[f"base{suffix}"] = pl.Series(explanation.base[:, o], dtype=pl.Float64)
        for i in range(explanation.k):
            data[f"column_{i + 1}{suffix}"] = pl.Series(names[order[:, o, i]], dtype=pl.String)
            data[f"contribution_{i + 1}{suffix}"] = pl.Series(kept[:, o, i], dtype=pl.Float64)
    return pl.DataFrame(data, height=explanation.rows)
