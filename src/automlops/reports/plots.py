"""Evaluation plots as PNG bytes: curves, matrices, importance, comparison and drift.

Figures are built with matplotlib's object API on the Agg canvas: no pyplot global state (so
it is safe in worker threads) and no display needed. Every plot has a title, axis labels and,
where more than one series is drawn, a legend. Text from user data (labels, feature names) goes
through `plot_text` (escaping.py): never parsed as mathtext, so a `$` in a column name is
drawn as typed and cannot break rendering.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import auc, precision_recall_curve, precision_recall_fscore_support, roc_curve

from automlops.reports.escaping import plot_text

DPI = 80
TOP_FEATURES = 15
CANDIDATE_COLOR = "#1f77b4"
CHAMPION_COLOR = "#ff7f0e"


@dataclass(frozen=True)
class Plot:
    """One image file of a report."""

    filename: str
    title: str
    png: bytes


def _figure(width: float = 5.5, height: float = 4.2, *, fixed: bool = False) -> Figure:
    """A figure on the Agg canvas.

    `fixed` margins suit plots whose tick labels are numbers; the constrained layout (which
    measures every label, doubling the rendering time) is kept for plots labelled with names.
    """
    fig = Figure(figsize=(width, height), dpi=DPI, layout=None if fixed else "constrained")
    if fixed:
        fig.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.92, wspace=0.3)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _scorer_curves(
    y: np.ndarray,
    p: np.ndarray,
    champion: np.ndarray | None,
    version: int | None,
    draw: Callable[[Axes, np.ndarray, np.ndarray, str, str], None],
) -> tuple[Figure, Axes]:
    """A figure with one curve per scorer: the candidate, and the champion on the same rows.

    `draw(ax, y, scores, label, colour)` draws one scorer's curve."""
    fig = _figure(fixed=True)
    ax = fig.add_subplot()
    draw(ax, y, p, "candidate", CANDIDATE_COLOR)
    if champion is not None:
        draw(ax, y, champion, f"champion v{version}", CHAMPION_COLOR)
    return fig, ax


def _roc_curve(ax: Axes, y: np.ndarray, scores: np.ndarray, label: str, color: str) -> None:
    fpr, tpr, _ = roc_curve(y, scores)
    ax.plot(fpr, tpr, color=color, label=f"{label} (AUC {float(auc(fpr, tpr)):.3f})")


def _pr_curve(ax: Axes, y: np.ndarray, scores: np.ndarray, label: str, color: str) -> None:
    precision, recall, _ = precision_recall_curve(y, scores)
    ax.step(recall, precision, where="post", color=color, label=label)


def roc_plot(
    y: np.ndarray, p: np.ndarray, champion: np.ndarray | None, version: int | None
) -> bytes:
    """ROC curve of the candidate (and the champion on the same rows)."""
    fig, ax = _scorer_curves(y, p, champion, version, _roc_curve)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(title="ROC curve", xlabel="False positive rate", ylabel="True positive rate")
    ax.legend(loc="lower right")
    return _png(fig)


def pr_plot(
    y: np.ndarray, p: np.ndarray, champion: np.ndarray | None, version: int | None
) -> bytes:
    """Precision-recall curve with the no-skill line at the positive rate."""
    fig, ax = _scorer_curves(y, p, champion, version, _pr_curve)
    rate = float(np.mean(y))
    ax.axhline(rate, linestyle="--", color="grey", label=f"no skill ({rate:.2f})")
    ax.set(title="Precision-recall curve", xlabel="Recall", ylabel="Precision", ylim=(0, 1.02))
    ax.legend(loc="lower left")
    return _png(fig)


def confusion_plot(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> bytes:
    """Counts per (actual, predicted) class, darker for more rows."""
    counts = np.asarray(matrix, dtype=np.int64)
    k = len(labels)
    size = min(9.0, 3.5 + 0.45 * k)
    fig = _figure(size, size * 0.85)
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, label="rows")
    ticks = [plot_text(label, 18) for label in labels]
    ax.set_xticks(range(k), ticks, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), ticks)
    if k <= 20:
        limit = counts.max() / 2 if counts.size else 0
        for i in range(k):
            for j in range(k):
                color = "white" if counts[i, j] > limit else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=color)
    ax.set(title="Confusion matrix", xlabel="Predicted", ylabel="Actual")
    return _png(fig)


def calibration_plot(y: np.ndarray, p: np.ndarray) -> bytes:
    """Mean predicted probability vs observed positive rate, per probability bin."""
    fig = _figure(fixed=True)
    ax = fig.add_subplot()
    bins = max(2, min(10, len(y) // 10))
    observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="quantile")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot(predicted, observed, marker="o", color=CANDIDATE_COLOR, label="candidate")
    ax.set(
        title="Calibration",
        xlabel="Mean predicted probability",
        ylabel="Observed positive rate",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left")
    return _png(fig)


def importance_plot(importances: dict[str, float], learner: str = "") -> bytes:
    """The most important features, largest on top."""
    top = sorted(importances.items(), key=lambda kv: kv[1], reverse=True)[:TOP_FEATURES][::-1]
    fig = _figure(6.0, 1.2 + 0.3 * max(len(top), 1))
    ax = fig.add_subplot()
    # Bars at positions, names as tick labels: two names shortened alike stay two bars.
    ax.barh(range(len(top)), [value for _, value in top], color=CANDIDATE_COLOR)
    ax.set_yticks(range(len(top)), [plot_text(name) for name, _ in top])
    measures = {"linear": "|coefficient|", "ensemble": "weighted member importance"}
    measure = measures.get(learner, "gain")
    ax.set(
        title=f"Feature importance ({plot_text(learner) or 'model'})",
        xlabel=f"Share of total {measure}",
        ylabel="Feature",
    )
    return _png(fig)


def per_class_plot(y: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> bytes:
    """Precision, recall and F1 of every class."""
    k = len(labels)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, predicted, labels=list(range(k)), zero_division=0
    )
    fig = _figure(max(5.5, 0.6 * k + 2), 4.2)
    ax = fig.add_subplot()
    x = np.arange(k)
    for offset, (name, values) in zip(
        (-0.27, 0.0, 0.27), (("precision", precision), ("recall", recall), ("F1", f1)), strict=True
    ):
        ax.bar(x + offset, values, width=0.27, label=name)
    ax.set_xticks(x, [plot_text(label, 18) for label in labels], rotation=45 if k > 4 else 0)
    ax.set(title="Per-class metrics", xlabel="Class", ylabel="Score", ylim=(0, 1.05))
    ax.legend(loc="lower right")
    return _png(fig)


def predicted_vs_actual_plot(y: np.ndarray, pred: np.ndarray) -> bytes:
    """Each test row as a point; on the diagonal the prediction is exact."""
    fig = _figure(fixed=True)
    ax = fig.add_subplot()
    ax.scatter(y, pred, s=10, alpha=0.6, color=CANDIDATE_COLOR, label="test rows")
    low, high = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([low, high], [low, high], linestyle="--", color="grey", label="perfect prediction")
    ax.set(title="Predicted vs actual", xlabel="Actual value", ylabel="Predicted value")
    ax.legend(loc="upper left")
    return _png(fig)


def residuals_plot(y: np.ndarray, pred: np.ndarray) -> bytes:
    """Residuals against predictions (left) and their distribution (right)."""
    residuals = y - pred
    fig = _figure(8.0, 3.8, fixed=True)
    left, right = fig.subplots(1, 2)
    left.scatter(pred, residuals, s=10, alpha=0.6, color=CANDIDATE_COLOR, label="test rows")
    left.axhline(0, linestyle="--", color="grey", label="no error")
    left.set(title="Residuals vs predicted", xlabel="Predicted value", ylabel="Actual - predicted")
    left.legend(loc="upper right")
    right.hist(residuals, bins=min(40, max(5, len(residuals) // 5)), color=CANDIDATE_COLOR)
    right.set(title="Residual distribution", xlabel="Actual - predicted", ylabel="Rows")
    return _png(fig)


def comparison_plot(comparisons: Sequence[dict[str, Any]]) -> bytes:
    """The candidate-minus-champion difference with its interval, per row set."""
    fig = _figure(7.5, 2.0 + 0.8 * len(comparisons))
    ax = fig.add_subplot()
    first = comparisons[0]
    for i, c in enumerate(comparisons):
        worse = bool(c["candidate_worse"])
        color = "#d62728" if worse else "#2ca02c"
        ax.errorbar(
            [c["difference"]],
            [i],
            xerr=[[c["difference"] - c["lower"]], [c["upper"] - c["difference"]]],
            fmt="o",
            capsize=6,
            color=color,
            label=f"{c['title']}: {'worse' if worse else 'not worse'}",
        )
    ax.axvline(0, color="grey", linestyle="-", linewidth=1, label="no difference")
    ax.axvline(-first["margin"], color="#d62728", linestyle="--", label="rejection line (-margin)")
    ax.set_yticks(range(len(comparisons)), [plot_text(c["title"], 40) for c in comparisons])
    ax.set_ylim(-0.7, len(comparisons) - 0.3)
    ax.set(
        title=f"Candidate vs champion: {first['metric']}",
        xlabel=f"Candidate - champion, {first['confidence']:.0%} one-sided bounds "
        "(positive: candidate better)",
        ylabel="Rows compared",
    )
    ax.legend(loc="best", fontsize="small")
    return _png(fig)


def drift_overview_plot(features: Sequence[dict[str, Any]], threshold: float) -> bytes:
    """PSI of the most shifted columns with the drift threshold."""
    top = list(features)[:TOP_FEATURES][::-1]
    fig = _figure(6.0, 1.4 + 0.3 * max(len(top), 1))
    ax = fig.add_subplot()
    colors = ["#d62728" if f["drifted"] else CANDIDATE_COLOR for f in top]
    ax.barh(range(len(top)), [f["psi"] for f in top], color=colors)
    ax.set_yticks(range(len(top)), [plot_text(f["name"]) for f in top])
    ax.axvline(threshold, color="#d62728", linestyle="--", label=f"drift threshold ({threshold})")
    ax.set(title="Population stability index per column", xlabel="PSI vs training", ylabel="Column")
    ax.legend(loc="lower right")
    return _png(fig)


def drift_feature_plot(feature: dict[str, Any]) -> bytes:
    """Share of rows per bin (or category) in the champion's training data and the upload."""
    bins = [plot_text(b, 14) for b in feature["bins"]]
    x = np.arange(len(bins))
    fig = _figure(max(5.5, 0.45 * len(bins) + 2.5), 4.0)
    ax = fig.add_subplot()
    ax.bar(x - 0.2, feature["baseline"], width=0.4, color=CANDIDATE_COLOR, label="training data")
    ax.bar(x + 0.2, feature["current"], width=0.4, color=CHAMPION_COLOR, label="new upload")
    ax.set_xticks(x, bins, rotation=45, ha="right")
    ax.set(
        title=f"{plot_text(feature['name'])}: PSI {feature['psi']:.3f}",
        xlabel="Bin" if feature["kind"] == "numeric" else "Category",
        ylabel="Share of rows",
    )
    ax.legend(loc="best")
    return _png(fig)


def model_plots(
    task: str,
    y: np.ndarray,
    pred: np.ndarray,
    *,
    labels: Sequence[str],
    confusion: Sequence[Sequence[int]],
    importances: dict[str, float],
    learner: str = "",
    champion_pred: np.ndarray | None = None,
    champion_version: int | None = None,
) -> list[Plot]:
    """The plots that describe the candidate on its test rows, by task."""
    made: list[tuple[str, str, Callable[[], bytes]]] = []
    if task == "binary":
        # Curves need both classes among the test rows.
        if len(np.unique(y)) == 2:
            made += [
                (
                    "roc.png",
                    "ROC curve",
                    lambda: roc_plot(y, pred, champion_pred, champion_version),
                ),
                (
                    "pr.png",
                    "Precision-recall curve",
                    lambda: pr_plot(y, pred, champion_pred, champion_version),
                ),
                ("calibration.png", "Calibration", lambda: calibration_plot(y, pred)),
            ]
        made.append(
            ("confusion.png", "Confusion matrix", lambda: confusion_plot(confusion, labels))
        )
    elif task == "multiclass":
        made += [
            ("confusion.png", "Confusion matrix", lambda: confusion_plot(confusion, labels)),
            (
                "per_class.png",
                "Per-class metrics",
                lambda: per_class_plot(y, pred.argmax(axis=1), labels),
            ),
        ]
    else:
        made += [
            (
                "predicted_vs_actual.png",
                "Predicted vs actual",
                lambda: predicted_vs_actual_plot(y, pred),
            ),
            ("residuals.png", "Residuals", lambda: residuals_plot(y, pred)),
        ]
    if importances:
        made.append(
            ("importance.png", "Feature importance", lambda: importance_plot(importances, learner))
        )
    return [Plot(filename, title, draw()) for filename, title, draw in made]


def contribution_plot(importance: dict[str, dict[str, float]], raw_score: str = "") -> bytes:
    """Global importance from per-row explanations: each raw column's mean |contribution| on
    the test rows, largest on top. `importance` is output -> column -> mean |contribution|;
    with several outputs (multiclass) each class is a bar segment, so a column's bar shows
    both its total and which classes it moves."""
    outputs = list(importance)
    totals: dict[str, float] = {}
    for per_column in importance.values():
        for column, value in per_column.items():
            totals[column] = totals.get(column, 0.0) + value
    top = sorted(totals, key=lambda c: totals[c], reverse=True)[:TOP_FEATURES][::-1]
    fig = _figure(6.0, 1.2 + 0.3 * max(len(top), 1) + (0.3 if len(outputs) > 1 else 0.0))
    ax = fig.add_subplot()
    left = np.zeros(len(top))
    for output in outputs:
        widths = np.array([importance[output].get(column, 0.0) for column in top])
        label = plot_text(output) if len(outputs) > 1 else None
        ax.barh(range(len(top)), widths, left=left, label=label)
        left += widths
    ax.set_yticks(range(len(top)), [plot_text(column) for column in top])
    unit = f" ({plot_text(raw_score)})" if raw_score else ""
    ax.set(
        title="Mean |contribution| per column on the test rows",
        xlabel=f"Mean |contribution| to the raw score{unit}",
        ylabel="Column",
    )
    if len(outputs) > 1:
        ax.legend(title="class", loc="lower right")
    return _png(fig)
