"""The evaluation report: report.json for machines, REPORT.md for people."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field


class ChampionSummary(BaseModel):
    version: int
    metrics: dict[str, float]


class DecisionSummary(BaseModel):
    status: str
    reason: str


class EvaluationReport(BaseModel):
    dataset: str
    version: int
    run_id: str
    created_at: str
    task: str
    endpoint: str
    test_key: str
    rows: int
    labels: list[str] = Field(default_factory=list)
    threshold: float | None = None
    metrics: dict[str, float]
    confusion_matrix: list[list[int]] = Field(default_factory=list)
    champion: ChampionSummary | None = None
    comparison: dict[str, Any] | None = None
    decision: DecisionSummary
    lineage: dict[str, Any] = Field(default_factory=dict)


_COUNTS = {"n", "tp", "fp", "tn", "fn"}


def _fmt(value: Any, name: str = "") -> str:
    if name in _COUNTS and isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def render_markdown(report: EvaluationReport) -> str:
    """A readable summary: metrics, confusion matrix, the comparison and the decision."""
    lines = [
        f"# Evaluation of {report.dataset} version {report.version}",
        "",
        f"- task: {report.task}",
        f"- test rows: {report.rows} (`{report.test_key}`)",
        f"- endpoint: `{report.endpoint}`",
        f"- evaluated at: {report.created_at}",
    ]
    if report.threshold is not None:
        lines.append(f"- decision threshold on P({report.labels[-1]}): {report.threshold:.4f}")
    lines += [
        "",
        f"## Decision: {report.decision.status}",
        "",
        report.decision.reason,
        "",
        "## Metrics on the test split",
        "",
    ]
    champion = report.champion.metrics if report.champion else {}
    header = "| metric | candidate |" + (
        f" champion v{report.champion.version} |" if report.champion else ""
    )
    lines += [header, "|---|---|" + ("---|" if report.champion else "")]
    for name, value in report.metrics.items():
        row = f"| {name} | {_fmt(value, name)} |"
        if report.champion:
            row += f" {_fmt(champion.get(name, float('nan')), name)} |"
        lines.append(row)
    if report.confusion_matrix:
        labels = report.labels
        lines += ["", "## Confusion matrix (rows: actual, columns: predicted)", ""]
        lines.append("| actual \\ predicted | " + " | ".join(labels) + " |")
        lines.append("|---|" + "---|" * len(labels))
        for label, row in zip(labels, report.confusion_matrix, strict=True):
            lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
    if report.comparison:
        c = report.comparison
        lines += [
            "",
            "## Candidate vs champion (paired bootstrap, same rows)",
            "",
            f"- {c['metric']}: candidate {_fmt(c['candidate'])}, champion {_fmt(c['champion'])}",
            f"- difference (candidate better if positive): {_fmt(c['difference'])}, "
            f"{c['confidence']:.0%} one-sided bounds [{_fmt(c['lower'])}, {_fmt(c['upper'])}]",
            f"- margin: {_fmt(c['margin'])}",
        ]
    if report.lineage:
        lines += ["", "## Lineage", ""]
        lines += [f"- {k}: `{v}`" for k, v in report.lineage.items()]
    return "\n".join(lines) + "\n"
