"""The evaluation report: report.json for machines, REPORT.md and report.html for people."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field

from automlops.ml.tuning.outcome import Refit, Selection
from automlops.reports.escaping import markdown_text
from automlops.reports.model_facts import ModelFacts
from automlops.reports.tuning_text import chosen_by, fitted_on


class ChampionSummary(BaseModel):
    version: int
    metrics: dict[str, float]


class DecisionSummary(BaseModel):
    status: str
    reason: str


class PlotRef(BaseModel):
    """An image file beside the report, and which section shows it."""

    filename: str
    title: str
    section: str  # model | comparison | drift


class EvaluationReport(BaseModel):
    dataset: str
    version: int
    run_id: str
    created_at: str
    task: str
    learner: str = ""
    # How the model was chosen and what it was fitted on (from its metadata): the selection
    # data, an ensemble's members and weights, the refit (prose in older artifacts).
    selection: Selection | str | None = None
    refit: Refit | str | None = None
    endpoint: str
    test_key: str
    rows: int
    labels: list[str] = Field(default_factory=list)
    threshold: float | None = None
    metrics: dict[str, float]
    confusion_matrix: list[list[int]] = Field(default_factory=list)
    champion: ChampionSummary | None = None
    # The headline comparison (the new upload's test split), kept for readers of the first
    # report format; `comparisons` holds every row set the gate looked at.
    comparison: dict[str, Any] | None = None
    comparisons: list[dict[str, Any]] = Field(default_factory=list)
    floors: list[dict[str, Any]] = Field(default_factory=list)
    decision: DecisionSummary
    importances: dict[str, float] = Field(default_factory=dict)  # top features, largest first
    # Mean |contribution| of each raw column on the test rows, per output (class), and the
    # units (explain.records.RawScore); empty when not computed.
    contributions: dict[str, dict[str, float]] = Field(default_factory=dict)
    contributions_unit: str = ""
    drift: dict[str, Any] | None = None  # summary of the run's drift.json
    plots: list[PlotRef] = Field(default_factory=list)
    lineage: dict[str, Any] = Field(default_factory=dict)
    # The baseline, the threshold's reason, the trial counts and the column decisions (absent
    # from reports written before they were added).
    facts: ModelFacts | None = None


_COUNTS = {"n", "tp", "fp", "tn", "fn"}
# Metrics whose baseline says nothing (the row count, the trivial model's fixed 0.5).
_NO_BASELINE = {"n", "threshold"}
TOP_IMPORTANCES = 15  # rows of the importance table


def fmt(value: Any, name: str = "") -> str:
    """A metric value for people: counts as integers, scores to 4 decimals, NaN as n/a."""
    if name in _COUNTS and isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def baseline_value(report: EvaluationReport, name: str) -> str:
    """The trivial baseline's value of metric `name`, formatted ("" when there is none)."""
    if report.facts is None or name in _NO_BASELINE or name not in report.facts.baseline:
        return ""
    return fmt(report.facts.baseline[name], name)


def top_importances(report: EvaluationReport) -> list[tuple[str, float]]:
    """The largest feature importances, largest first."""
    ranked = sorted(report.importances.items(), key=lambda kv: kv[1], reverse=True)
    return ranked[:TOP_IMPORTANCES]


def render_markdown(report: EvaluationReport) -> str:
    """A readable summary: metrics, confusion matrix, the comparisons and the decision.

    Every value that is not a number is written through `markdown_text` (escaping.py): user
    strings can neither inject HTML or table cells nor start a spreadsheet formula.
    """
    sections = (
        _head_lines,
        _metric_lines,
        _confusion_lines,
        _importance_lines,
        _comparison_lines,
        _floor_lines,
        _drift_lines,
        _column_lines,
        _lineage_lines,
    )
    return "\n".join(line for section in sections for line in section(report)) + "\n"


def _head_lines(report: EvaluationReport) -> list[str]:
    md = markdown_text
    chosen = chosen_by(report.selection)
    fitted = fitted_on(report.selection, report.refit)
    lines = [
        f"# Evaluation of {md(report.dataset)} version {report.version}",
        "",
        f"- task: {md(report.task)}" + (f" ({md(report.learner)})" if report.learner else ""),
        *([f"- chosen by: {md(chosen)}"] if chosen else []),
        *([f"- fitted on: {md(fitted)}"] if fitted else []),
        f"- test rows: {report.rows} ({md(report.test_key)})",
        f"- endpoint: {md(report.endpoint)}",
        f"- evaluated at: {md(report.created_at)}",
        "- with plots: [report.html](report.html)",
    ]
    facts = report.facts
    if report.threshold is not None:
        why = f"{report.threshold:.4f}"
        if facts is not None and facts.threshold is not None:
            why = facts.threshold.reason()
        lines.append(f"- decision threshold on P({md(report.labels[-1])}): {md(why)}")
    if facts is not None and facts.trials is not None:
        lines.append(f"- search: {md(facts.trials.text())}")
    return [
        *lines,
        "",
        f"## Decision: {md(report.decision.status)}",
        "",
        md(report.decision.reason),
    ]


def _metric_lines(report: EvaluationReport) -> list[str]:
    md = markdown_text
    champion = report.champion.metrics if report.champion else {}
    baseline = report.facts is not None and bool(report.facts.baseline)
    header = "| metric | candidate |" + (
        f" champion v{report.champion.version} |" if report.champion else ""
    )
    header += " trivial baseline |" if baseline else ""
    lines = [
        "",
        "## Metrics on the test split",
        "",
        header,
        "|---|---|" + ("---|" if report.champion else "") + ("---|" if baseline else ""),
    ]
    for name, value in report.metrics.items():
        row = f"| {md(name)} | {fmt(value, name)} |"
        if report.champion:
            row += f" {fmt(champion.get(name, float('nan')), name)} |"
        if baseline:
            row += f" {baseline_value(report, name)} |"
        lines.append(row)
    if baseline:
        lines += ["", md(baseline_note(report.task))]
    return lines


def _confusion_lines(report: EvaluationReport) -> list[str]:
    if not report.confusion_matrix:
        return []
    labels = [markdown_text(label) for label in report.labels]
    lines = ["", "## Confusion matrix (rows: actual, columns: predicted)", ""]
    lines.append("| actual \\ predicted | " + " | ".join(labels) + " |")
    lines.append("|---|" + "---|" * len(labels))
    for label, counts in zip(labels, report.confusion_matrix, strict=True):
        lines.append(f"| {label} | " + " | ".join(str(v) for v in counts) + " |")
    return lines


def _comparison_lines(report: EvaluationReport) -> list[str]:
    if not report.comparisons:
        return []
    md = markdown_text
    lines = [
        "",
        "## Candidate vs champion (paired bootstrap, same rows)",
        "",
        "| rows | metric | candidate | champion | difference | bounds | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in report.comparisons:
        verdict = "worse beyond noise" if c["candidate_worse"] else "not worse"
        lines.append(
            f"| {md(c['title'])} ({c['rows']}) | {md(c['metric'])} | {fmt(c['candidate'])} | "
            f"{fmt(c['champion'])} | {fmt(c['difference'])} | "
            f"[{fmt(c['lower'])}, {fmt(c['upper'])}] | {verdict} |"
        )
    first = report.comparisons[0]
    return [
        *lines,
        "",
        f"Differences are candidate minus champion in the better direction; bounds are "
        f"one-sided {first['confidence']:.0%}; the candidate is rejected when the upper "
        f"bound is below -{fmt(first['margin'])} (the manifest's margin).",
    ]


def _floor_lines(report: EvaluationReport) -> list[str]:
    if not report.floors:
        return []
    return [
        "",
        "## Thresholds",
        "",
        *(
            f"- {'pass' if f['passed'] else 'FAIL'}: {markdown_text(f['text'])}"
            for f in report.floors
        ),
    ]


def _drift_lines(report: EvaluationReport) -> list[str]:
    if not report.drift:
        return []
    md, d = markdown_text, report.drift
    lines = ["", "## Data drift against the champion's training data", ""]
    if d.get("baseline") is None:
        return [*lines, "- " + ("; ".join(md(n) for n in d.get("notes", [])) or "no baseline")]
    drifted = ", ".join(md(name) for name in d["drifted"]) or "none"
    lines.append(f"- baseline: champion v{d['baseline']['version']} training rows")
    lines.append(f"- drifted columns: {drifted}")
    for col in d.get("columns", [])[:10]:
        why = ", ".join(md(reason) for reason in col["reasons"]) or "stable"
        lines.append(f"- column {md(col['name'])}: PSI {col['psi']:.3f} ({why})")
    return lines


def _column_lines(report: EvaluationReport) -> list[str]:
    if report.facts is None or not report.facts.columns:
        return []
    md = markdown_text
    lines = ["", "## Columns: what preprocessing decided", ""]
    lines += ["| column | type | read as | decision | reason | missing | distinct |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for column in report.facts.columns:
        lines.append(
            f"| {md(column.name)} | {md(column.dtype)} | {md(column.kind or '')} "
            f"| {md(column.action)} "
            f"| {md(column.reason)} | {column.missing} | {column.unique} |"
        )
    return lines


def _lineage_lines(report: EvaluationReport) -> list[str]:
    if not report.lineage:
        return []
    return [
        "",
        "## Lineage",
        "",
        *(f"- {markdown_text(k)}: {markdown_text(v)}" for k, v in report.lineage.items()),
    ]


# What the trivial baseline is, per task.
_BASELINE_NOTE = {
    "binary": "The trivial baseline predicts the test rows' positive rate for every row (so the "
    "majority class at threshold 0.5): a model must beat it to have learnt anything.",
    "multiclass": "The trivial baseline predicts the test rows' class shares for every row (so "
    "always the majority class): a model must beat it to have learnt anything.",
    "regression": "The trivial baseline predicts the test rows' mean for every row: a model "
    "must beat it to have learnt anything.",
}


def baseline_note(task: str) -> str:
    """What the trivial baseline column holds, for `task`."""
    return _BASELINE_NOTE.get(task, "")


def _importance_lines(report: EvaluationReport) -> list[str]:
    top = top_importances(report)
    if not top:
        return []
    lines = ["", "## Most important features", "", "| feature | share |", "|---|---|"]
    return lines + [f"| {markdown_text(name)} | {value:.3f} |" for name, value in top]
