"""Target leaks: a feature that alone predicts the target (almost) perfectly.

Such a column is usually recorded after the outcome (a copy of the label, a "days since churn",
the amount of a granted loan) and will not be known when the model is used. Each feature is
scored on its own: a lookup (per value, or per quantile bin of a number) fitted on one half of
the training rows predicts the other half. Classification scores balanced accuracy (a column
that only predicts the majority class scores no better than chance); regression scores R², and
for numbers also the rank correlation (a monotone transform of the target scores 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from automlops.config import Task

FLAG_SCORE = 0.95  # noted in the schema: worth a look
DROP_SCORE = 0.99  # dropped unless the manifest keeps the column
MIN_ROWS = 100  # fewer training rows: a perfect score can be luck, so nothing is judged
_SAMPLE_ROWS = 20_000  # a leak shows on a sample; bounds the cost on big uploads
_BINS = 32


@dataclass(frozen=True)
class LeakScore:
    """How well one feature alone predicts the target on held-out training rows."""

    metric: str  # "balanced accuracy", "R²" or "rank correlation"
    score: float

    @property
    def drop(self) -> bool:
        return self.score >= DROP_SCORE

    @property
    def flagged(self) -> bool:
        return self.score >= FLAG_SCORE

    def describe(self) -> str:
        return f"alone predicts the target ({self.metric} {self.score:.3f} on training rows)"


class LeakProbe:
    """Scores features against one target, on the same sample of training rows."""

    def __init__(self, y: np.ndarray, task: Task, *, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        n = len(y)
        # Drawn without shuffling every row number of a big upload (millions) to keep a few.
        self.rows = (
            rng.choice(n, size=_SAMPLE_ROWS, replace=False)
            if n > _SAMPLE_ROWS
            else rng.permutation(n)
        )
        self.half = len(self.rows) // 2
        self.task = task
        self.y = np.asarray(y)[self.rows]

    @property
    def usable(self) -> bool:
        return len(self.rows) >= MIN_ROWS

    def score(self, values: pl.Series, numeric: bool) -> LeakScore | None:
        """The feature's score on its own, or None when too few rows tell."""
        if not self.usable:
            return None
        sample = values.gather(self.rows)
        if sample.dtype == pl.Categorical:
            sample = sample.cast(pl.String)
        as_numbers = sample.cast(pl.Float64, strict=False)
        # Booleans spelt out ("yes", "TRUE") are numeric features but not floats: read as values.
        numeric = numeric and as_numbers.null_count() == sample.null_count()
        numbers = as_numbers.to_numpy()
        if numeric:
            codes = self._bins(numbers)
        else:
            codes = sample.cast(pl.String).fill_null("\0missing").rank("dense").to_numpy()
            codes = codes.astype(np.int64)
        lookup = self._lookup_score(codes)
        if numeric and self.task is Task.regression:
            ranked = _rank_correlation(numbers, self.y.astype(float))
            if ranked is not None and ranked.score > lookup.score:
                return ranked
        return lookup

    def _bins(self, numbers: np.ndarray) -> np.ndarray:
        """Quantile bins of the first half's values (missing values: a bin of their own)."""
        first = numbers[: self.half]
        edges = np.unique(np.nanquantile(first, np.linspace(0, 1, _BINS + 1)[1:-1]))
        codes = np.searchsorted(edges, numbers, side="right") + 1
        return np.where(np.isnan(numbers), 0, codes)

    def _lookup_score(self, codes: np.ndarray) -> LeakScore:
        fit, held = slice(0, self.half), slice(self.half, None)
        size = int(codes.max()) + 1
        if self.task is Task.regression:
            y = self.y.astype(float)
            sums = np.bincount(codes[fit], weights=y[fit], minlength=size)
            counts = np.bincount(codes[fit], minlength=size)
            means = np.where(counts > 0, sums / np.maximum(counts, 1), y[fit].mean())
            pred, truth = means[codes[held]], y[held]
            spread = float(((truth - truth.mean()) ** 2).sum())
            r2 = 1.0 - float(((truth - pred) ** 2).sum()) / spread if spread > 0 else 0.0
            return LeakScore("R²", r2)
        y = self.y.astype(np.int64)
        classes = int(y.max()) + 1
        table = np.bincount(codes[fit] * classes + y[fit], minlength=size * classes)
        table = table.reshape(size, classes)
        majority = int(np.bincount(y[fit], minlength=classes).argmax())
        best = np.where(table.sum(axis=1) > 0, table.argmax(axis=1), majority)
        pred, truth = best[codes[held]], y[held]
        recalls = [float((pred[truth == c] == c).mean()) for c in np.unique(truth)]
        return LeakScore("balanced accuracy", float(np.mean(recalls)))


def _rank_correlation(x: np.ndarray, y: np.ndarray) -> LeakScore | None:
    """|Spearman correlation| of a number with the target (rows where it is missing left out)."""
    present = ~np.isnan(x)
    if present.sum() < MIN_ROWS or np.ptp(x[present]) == 0:
        return None
    xr = pl.Series(x[present]).rank("average").to_numpy()
    yr = pl.Series(y[present]).rank("average").to_numpy()
    if np.ptp(yr) == 0:
        return None
    rho = float(np.corrcoef(xr, yr)[0, 1])
    return LeakScore("rank correlation", abs(rho))
