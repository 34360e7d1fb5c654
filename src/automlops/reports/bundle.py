"""Every file of one evaluation report, as bytes by file name, in the order to write them."""

from __future__ import annotations

import numpy as np

from automlops.reports import plots
from automlops.reports.escaping import inert_json
from automlops.reports.html import render_html
from automlops.reports.report import EvaluationReport, PlotRef, render_markdown

DRIFT_PLOTS = 4  # per-column drift plots in a report (the most shifted columns)
REPORT_JSON = "report.json"


def report_bundle(
    report: EvaluationReport,
    y: np.ndarray,
    pred: np.ndarray,
    champion_pred: np.ndarray | None = None,
) -> dict[str, bytes]:
    """Plots, report.html, REPORT.md and report.json (last: readers may wait for it).

    `y`/`pred` are the candidate's test rows (P(positive), class probabilities or values);
    `champion_pred` the champion's outputs for the same rows. Sets `report.plots`.
    """
    made = plots.model_plots(
        report.task,
        y,
        pred,
        labels=report.labels,
        confusion=report.confusion_matrix,
        importances=report.importances,
        learner=report.learner,
        champion_pred=champion_pred,
        champion_version=None if report.champion is None else report.champion.version,
    )
    refs = [PlotRef(filename=p.filename, title=p.title, section="model") for p in made]

    def add(filename: str, title: str, section: str, png: bytes) -> None:
        made.append(plots.Plot(filename, title, png))
        refs.append(PlotRef(filename=filename, title=title, section=section))

    if report.contributions:
        png = plots.contribution_plot(report.contributions, report.contributions_unit)
        add("contributions.png", "Mean |contribution| per column", "model", png)
    if report.comparisons:
        add(
            "comparison.png",
            "Candidate vs champion",
            "comparison",
            plots.comparison_plot(report.comparisons),
        )
    drift = report.drift or {}
    columns = drift.get("columns") or []
    if columns:
        threshold = drift["thresholds"]["psi"]
        add(
            "drift.png",
            "Drift per column (PSI)",
            "drift",
            plots.drift_overview_plot(columns, threshold),
        )
        for i, column in enumerate(columns[:DRIFT_PLOTS], start=1):
            add(
                f"drift_{i}.png",
                f"Drift of {column['name']}",
                "drift",
                plots.drift_feature_plot(column),
            )
    report.plots = refs
    files = {plot.filename: plot.png for plot in made}
    files["report.html"] = render_html(report).encode()
    files["REPORT.md"] = render_markdown(report).encode()
    files[REPORT_JSON] = inert_json(report.model_dump_json(indent=1)).encode()
    return files
