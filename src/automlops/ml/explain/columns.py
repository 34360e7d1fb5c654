"""From model features to raw columns: a column's contribution is the sum of its features'.

A one-hot column's categories, a numeric column's missing indicator and a date's parts are
several features of one raw column; a caller asks about the column, so their contributions
are summed back to it (contributions are additive, so the sum keeps base + sum = raw score).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from automlops.ml.explain.records import Explanation, FeatureContributions, RawScore, rank


class ColumnGrouping:
    """Sums contributions of features into the raw columns they come from (built once per
    model: a (features, columns) 0/1 matrix)."""

    def __init__(self, feature_columns: Sequence[str], columns: Sequence[str] = ()) -> None:
        # Every column of `columns` (a column encoded into no feature contributes 0), then any
        # other feature's column, in first-seen order.
        names: list[str] = list(dict.fromkeys([*columns, *feature_columns]))
        index = {name: i for i, name in enumerate(names)}
        self.columns: tuple[str, ...] = tuple(names)
        self._matrix = np.zeros((len(feature_columns), len(names)))
        self._matrix[np.arange(len(feature_columns)), [index[c] for c in feature_columns]] = 1.0

    def sum(self, values: np.ndarray) -> np.ndarray:
        """(rows, outputs, features) -> (rows, outputs, columns)."""
        if values.shape[-1] != self._matrix.shape[0]:
            raise ValueError(
                f"{values.shape[-1]} feature contributions for {self._matrix.shape[0]} features"
            )
        return np.asarray(values @ self._matrix)

    def explain(
        self,
        contributions: FeatureContributions,
        *,
        outputs: Sequence[str],
        raw_score: RawScore,
        k: int | None = None,
    ) -> Explanation:
        """An explanation by raw column, keeping each row's top `k` (None: all columns)."""
        values = self.sum(contributions.values)
        return Explanation(
            columns=self.columns,
            outputs=tuple(outputs),
            raw_score=raw_score,
            exact=contributions.exact,
            values=values,
            base=contributions.base,
            order=rank(values, k),
        )
