"""report.html: one self-contained page (inline CSS, no scripts, no network) per evaluation.

The plots are PNG files beside the page, linked by relative name, so the folder can be opened
from disk, synced from S3 or served as static files. Every value comes from data users control
(dataset, labels, column names, reasons), so the template is rendered with autoescaping on,
and every `{{ value }}` passes through `html_finalize`: a cell that a spreadsheet would run as a
formula (`=1+1`) is shown with a leading apostrophe (the policy is in escaping.py).
"""

from __future__ import annotations

from functools import cache

import jinja2

from automlops.reports.escaping import html_finalize
from automlops.reports.report import (
    EvaluationReport,
    baseline_note,
    baseline_value,
    fmt,
    top_importances,
)
from automlops.reports.tuning_text import chosen_by, fitted_on

TEMPLATE = "report.html"


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("automlops.reports", "templates"),
        autoescape=True,  # every string is escaped unless marked safe, whatever the file name
        finalize=html_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: EvaluationReport) -> str:
    """The page for `report`; its `plots` must be stored beside it under their file names."""
    sections: dict[str, list] = {"model": [], "comparison": [], "drift": []}
    for plot in report.plots:
        sections.setdefault(plot.section, []).append(plot)
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            r=report,
            plots=sections,
            fmt=fmt,
            nan=float("nan"),
            decision_class="ok" if report.decision.status == "champion" else "bad",
            confusion_rows=list(zip(report.labels, report.confusion_matrix, strict=False)),
            top_importances=top_importances(report),
            facts=report.facts,
            baseline=lambda name: baseline_value(report, name),
            baseline_note=baseline_note(report.task),
            chosen_by=chosen_by(report.selection),
            fitted_on=fitted_on(report.selection, report.refit),
        )
    )
