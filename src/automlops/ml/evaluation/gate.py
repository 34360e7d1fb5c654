"""The promotion gate: candidate vs champion on the same rows, plus absolute floors.

Test sets are often small, so comparing point estimates would reject real improvements by
chance. Instead both models' predictions for the same rows are resampled together (a paired
bootstrap) and the candidate is only called worse when even the optimistic end of a one-sided
confidence interval of the metric difference is a loss larger than the manifest's margin.

The bootstrap is vectorised: each resample is a row of multiplicity weights (how often each row
was drawn), and every metric is computed for all resamples at once as weighted sums. With all
weights 1 the functions equal scikit-learn's definitions (tests pin this).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from automlops.config import Task
from automlops.ml.evaluation.metrics import HIGHER_IS_BETTER, TASK_METRICS

# (rows, resamples) weights of one chunk; chunks bound memory to ~32 MB a copy.
WeightedMetric = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
_CHUNK_CELLS = 4_000_000
DEFAULT_RESAMPLES = 1000
# Work bound for big row sets: resamples x rows at most this (1000 resamples up to 100,000
# rows; 400,000 rows get 250), never fewer than MIN_RESAMPLES. The interval of a big set is
# narrow, and a few hundred draws place its 5 % quantile to within a small share of its
# width; every row stays in every resample.
MAX_BOOTSTRAP_CELLS = 100_000_000
MIN_RESAMPLES = 200


def roc_auc_of(y: np.ndarray, score: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """`weighted_roc_auc` for fixed rows: the sort and the tie groups are done once, so each
    chunk of resamples costs a gather and a few sums (the bootstrap calls it hundreds of
    times)."""
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    positive = (y[order] == 1).astype(np.float64)
    negative = 1.0 - positive
    # Rows with equal scores form one group: a positive beats every negative of lower groups
    # and half of the negatives of its own group.
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    positives = np.flatnonzero(positive)

    def untied_auc(weights: np.ndarray) -> np.ndarray:
        # Every group is one row: a positive beats the negative weight sorted below it.
        w = weights[:, order]
        below = np.cumsum(w * negative, axis=1)[:, positives]
        w_pos = w[:, positives]
        wins = np.einsum("ij,ij->i", w_pos, below)
        pairs = w_pos.sum(axis=1) * (w.sum(axis=1) - w_pos.sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, wins / pairs, np.nan)

    def auc(weights: np.ndarray) -> np.ndarray:
        w = weights[:, order]
        pos = np.add.reduceat(w * positive, starts, axis=1)
        neg = np.add.reduceat(w * negative, starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        wins = np.sum(pos * (below + 0.5 * neg), axis=1)
        pairs = pos.sum(axis=1) * neg.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, wins / pairs, np.nan)

    return untied_auc if len(starts) == len(score) else auc


def weighted_roc_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC per row of `weights` (b, n); ties count half, as in scikit-learn.

    NaN where a resample holds a single class.
    """
    return roc_auc_of(y, score)(weights)


def weighted_macro_f1(y: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Macro F1 of the argmax prediction per row of `weights`.

    Averaged over the classes present in the resample's truth or predictions (scikit-learn's
    label set), a class with no true and no predicted rows being left out.
    """
    k = proba.shape[1]
    truth = np.eye(k)[y.astype(np.int64)]
    predicted = np.eye(k)[proba.argmax(axis=1)]
    true_counts = weights @ truth
    pred_counts = weights @ predicted
    hits = weights @ (truth * predicted)
    denominator = true_counts + pred_counts
    present = denominator > 0
    f1 = np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=present)
    with np.errstate(invalid="ignore", divide="ignore"):
        return f1.sum(axis=1) / present.sum(axis=1)


def weighted_neg_rmse(y: np.ndarray, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Minus the RMSE per row of `weights` (negated so that higher is better)."""
    squared = (y.astype(np.float64) - values) ** 2
    return -np.sqrt(weights @ squared / weights.sum(axis=1))


# Weighted implementation of each primary metric, oriented so that higher is better (losses
# negated); which metric a task uses is TASK_METRICS' decision.
WEIGHTED: dict[str, WeightedMetric] = {
    "roc_auc": weighted_roc_auc,
    "macro_f1": weighted_macro_f1,
    "rmse": weighted_neg_rmse,
}


def primary(task: Task) -> tuple[str, WeightedMetric, int]:
    """The task's primary metric: its name, weighted implementation, and the sign that turns
    the implementation's higher-is-better value back into the metric."""
    spec = TASK_METRICS[task]
    return spec.primary, WEIGHTED[spec.primary], 1 if spec.higher_is_better else -1


def bootstrap_weights(n: int, resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Multiplicity weights of `resamples` bootstrap draws of n rows, in (b, n) chunks."""
    chunk = max(1, min(resamples, _CHUNK_CELLS // max(n, 1)))
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        done += b


@dataclass(frozen=True)
class Comparison:
    """Candidate vs champion on the same rows.

    `candidate` and `champion` are the metric as usually reported (RMSE positive); `difference`,
    `lower` and `upper` are in the "higher is better" orientation (candidate minus champion for
    scores, champion minus candidate for losses), so a negative difference means the candidate
    is worse.
    """

    metric: str
    rows: int
    candidate: float
    champion: float
    difference: float
    lower: float  # one-sided lower confidence bound of the difference
    upper: float  # one-sided upper confidence bound of the difference
    confidence: float
    margin: float
    resamples: int = 0

    @property
    def candidate_worse(self) -> bool:
        """Worse beyond noise: even the optimistic bound is a loss larger than the margin."""
        return bool(self.upper < -self.margin)

    def as_dict(self) -> dict[str, float | str | int | bool]:
        """Plain JSON-ready fields, including the verdict."""
        return {**asdict(self), "candidate_worse": self.candidate_worse}

    def summary(self) -> str:
        """One line for reasons and reports."""
        return (
            f"{self.metric} {self.candidate:.4f} vs {self.champion:.4f}, "
            f"difference {self.difference:+.4f}, {self.confidence:.0%} bounds "
            f"[{self.lower:+.4f}, {self.upper:+.4f}], margin {self.margin:g}, {self.rows} rows"
        )


def compare(
    task: Task,
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    *,
    margin: float = 0.0,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Comparison:
    """Paired bootstrap: resample rows, score both models on each resample, bound the gap.

    `candidate`/`champion` are P(positive) (binary), (n, k) probabilities (multiclass) or values
    (regression) for the rows whose truth is `y`. On big row sets the number of resamples is
    bounded by MAX_BOOTSTRAP_CELLS (never below MIN_RESAMPLES): all rows are always used.
    """
    name, metric, sign = primary(task)
    n = len(y)
    if n == 0:
        raise ValueError("cannot compare models on zero rows")
    resamples = min(resamples, max(MIN_RESAMPLES, MAX_BOOTSTRAP_CELLS // n))
    cand_metric, champ_metric = _fixed_rows(metric, y, candidate), _fixed_rows(metric, y, champion)
    ones = np.ones((1, n))
    cand_value = float(cand_metric(ones)[0])
    champ_value = float(champ_metric(ones)[0])
    rng = np.random.default_rng(seed)
    diffs = np.concatenate(
        [cand_metric(w) - champ_metric(w) for w in bootstrap_weights(n, resamples, rng)]
    )
    diffs = diffs[~np.isnan(diffs)]
    alpha = 1.0 - confidence
    lower = float(np.quantile(diffs, alpha)) if len(diffs) else float("nan")
    upper = float(np.quantile(diffs, 1 - alpha)) if len(diffs) else float("nan")
    return Comparison(
        metric=name,
        rows=n,
        candidate=sign * cand_value,
        champion=sign * champ_value,
        difference=cand_value - champ_value,
        lower=lower,
        upper=upper,
        confidence=confidence,
        margin=margin,
        resamples=len(diffs),
    )


def _fixed_rows(
    metric: WeightedMetric, y: np.ndarray, pred: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """The metric of these rows as a function of the weights alone (AUC's sort done once)."""
    if metric is weighted_roc_auc:
        return roc_auc_of(y, pred)
    return lambda weights: metric(y, pred, weights)


@dataclass(frozen=True)
class FloorCheck:
    """One absolute threshold of the manifest, applied to the candidate's test metrics."""

    key: str  # as written in the manifest, e.g. "min_roc_auc" or "roc_auc"
    metric: str
    bound: str  # "min" or "max"
    threshold: float
    value: float | None
    passed: bool

    def describe(self) -> str:
        if self.value is None:
            known = ", ".join(sorted(HIGHER_IS_BETTER))
            return f"threshold {self.key!r} names no known metric (known: {known})"
        side = "below the minimum" if self.bound == "min" else "above the maximum"
        verdict = "meets" if self.passed else f"is {side}"
        return f"{self.metric} {self.value:.4f} {verdict} {self.threshold:g} ({self.key})"


def parse_floor(key: str) -> tuple[str, str] | None:
    """(metric, "min"|"max") of a manifest threshold key, or None when no metric matches.

    `roc_auc` bounds the metric in its good direction (a minimum for scores, a maximum for
    losses such as `rmse`); `min_<metric>` and `max_<metric>` say the bound explicitly.
    """
    if key in HIGHER_IS_BETTER:
        return key, "min" if HIGHER_IS_BETTER[key] else "max"
    for prefix in ("min", "max"):
        name = key.removeprefix(f"{prefix}_")
        if name != key and name in HIGHER_IS_BETTER:
            return name, prefix
    return None


def check_floors(values: dict[str, float], floors: dict[str, float]) -> list[FloorCheck]:
    """Every manifest threshold checked against `values` (unknown metric names fail)."""
    checks = []
    for key, threshold in floors.items():
        parsed = parse_floor(key)
        value = None if parsed is None else values.get(parsed[0])
        if parsed is None or value is None or np.isnan(value):
            metric, bound = parsed or (key, "min")
            checks.append(FloorCheck(key, metric, bound, threshold, None, False))
            continue
        metric, bound = parsed
        passed = value >= threshold if bound == "min" else value <= threshold
        checks.append(FloorCheck(key, metric, bound, threshold, float(value), bool(passed)))
    return checks


@dataclass(frozen=True)
class GateDecision:
    """Promote or not, why, and the evidence (JSON-ready via `details`)."""

    promote: bool
    reason: str
    floors: list[FloorCheck] = field(default_factory=list)
    comparisons: dict[str, Comparison] = field(default_factory=dict)

    def details(self, row_sets: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """Both estimates, difference and interval per row set, and each floor check."""
        extra = row_sets or {}
        return {
            "comparisons": {
                name: {"rows_set": name, **extra.get(name, {}), **c.as_dict()}
                for name, c in self.comparisons.items()
            },
            "floors": [asdict(f) | {"text": f.describe()} for f in self.floors],
        }


# How each comparison's rows are described in reasons.
ROW_SET_TITLES = {
    "new_test": "the new upload's test split",
    "champion_test": "the champion's own test split",
}


def decide(
    values: dict[str, float],
    floors: dict[str, float],
    comparisons: dict[str, Comparison],
    champion_version: int | None,
    *,
    incomparable: str | None = None,
) -> GateDecision:
    """The gate: all floors pass, and on no row set is the candidate worse beyond noise.

    Without comparisons the floors decide alone: for the first model of a dataset, and when
    the champion cannot be compared (`incomparable` says why: another task, another target,
    no endpoint), the candidate then starts a new model line."""
    checks = check_floors(values, floors)
    failed = [c for c in checks if not c.passed]
    if failed:
        reason = "fails the manifest's thresholds: " + "; ".join(c.describe() for c in failed)
        return GateDecision(False, reason, checks, comparisons)
    if champion_version is None or not comparisons:
        reason = (
            "first model for this dataset; passes the thresholds"
            if champion_version is None
            else f"champion v{champion_version} could not be compared "
            f"({incomparable or 'another task or no endpoint'}); passes the thresholds"
        )
        if checks:
            reason += ": " + "; ".join(c.describe() for c in checks)
        return GateDecision(True, reason, checks, comparisons)
    worse = {name: c for name, c in comparisons.items() if c.candidate_worse}
    shown = worse or comparisons
    evidence = "; ".join(
        f"on {ROW_SET_TITLES.get(name, name)}: {c.summary()}" for name, c in shown.items()
    )
    if worse:
        reason = f"worse than champion v{champion_version} beyond noise {evidence}"
        return GateDecision(False, reason, checks, comparisons)
    reason = f"not worse than champion v{champion_version} beyond noise {evidence}"
    return GateDecision(True, reason, checks, comparisons)
