"""An explanation as columns of a table, one row per explained row (batch scoring's output)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

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


def chosen_output_table(explanation: Explanation, output: np.ndarray) -> pa.Table:
    """One output per row (`output[r]`: its index in `explanation.outputs`): `base`, then
    `column_i` and `contribution_i` for that output's top K. Batch scoring passes each row's
    predicted class, so a multiclass file keeps one readable explanation per row."""
    rows = np.arange(explanation.rows)
    order, kept = explanation.top()
    chosen_order, chosen = order[rows, output], kept[rows, output]  # (rows, K)
    names = pa.array(explanation.columns, pa.string())
    arrays: list[pa.Array] = [pa.array(explanation.base[rows, output], pa.float64())]
    labels = ["base"]
    for i in range(explanation.k):
        arrays.append(names.take(pa.array(chosen_order[:, i])))
        arrays.append(pa.array(chosen[:, i], pa.float64()))
        labels += [f"column_{i + 1}", f"contribution_{i + 1}"]
    return pa.Table.from_arrays(arrays, names=labels)
