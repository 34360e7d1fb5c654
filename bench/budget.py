"""The time budget as a budget: how long the train stage takes against `--time-budget`.

For each data set (generated, of the sizes that take each of the search's paths: small data
selected by cross-validation, a validation split, and a big training split tuned on samples
and refitted on as many rows as the budget allows; plus the bank file when ../shared/data
has it) and each budget, a fresh workspace runs preprocess, then the train stage, timed from
its call to its return. The target: train stage <= 1.1 x budget + 2 s. The table also gives
how many trials ran, how many the deadline cut short, and what the final model was fitted on.

    python bench/budget.py [--budgets 5 10] [--sets cv holdout] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from automlops import keys
from automlops.config import Manifest
from automlops.events import S3Event, S3EventRecord
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.manifests import save_manifest
from automlops.ml.artifact import ModelArtifact
from automlops.reports.tuning_text import fitted_on
from automlops.stages.preprocess import preprocess
from automlops.stages.train import train

ROOT = Path(__file__).resolve().parents[1]
BANK = ROOT.parent / "shared" / "data" / "bank-additional-full.csv"
BUDGETS_S = (5.0, 10.0)
SLACK_SHARE, SLACK_S = 0.1, 2.0  # the target: within 10 % + 2 s of the budget


@dataclass(frozen=True)
class DataSet:
    name: str
    rows: int  # 0: a file of ../shared/data
    task: str  # binary | multiclass | regression
    path: str = "generated"


SETS = {
    "cv": DataSet("cv", 3_000, "binary"),  # below 10,000 rows: 5-fold cross-validation
    "holdout": DataSet("holdout", 40_000, "binary"),  # a validation split
    "regression": DataSet("regression", 30_000, "regression"),
    "multiclass": DataSet("multiclass", 20_000, "multiclass"),
    # Above 100,000 training rows: trials on a sample, then a refit bounded by the budget.
    "sampled": DataSet("sampled", 400_000, "binary"),
    "bank": DataSet("bank", 0, "binary", str(BANK)),
}


@dataclass(frozen=True)
class Row:
    data: str
    rows: int
    budget_s: float
    train_s: float
    trials: int
    cut: int
    learner: str
    fitted: str

    @property
    def limit_s(self) -> float:
        return self.budget_s * (1 + SLACK_SHARE) + SLACK_S

    @property
    def within(self) -> bool:
        return self.train_s <= self.limit_s


def generate(data: DataSet, seed: int = 0) -> bytes:
    """A CSV of `data.rows` rows: 8 numeric columns (some with missing values), 2 categorical
    ones, and a target with an additive, partly non-linear signal and noise."""
    rng = np.random.default_rng(seed)
    n = data.rows
    x = rng.normal(size=(n, 8))
    city = rng.choice(["north", "south", "east", "west", "centre"], n)
    plan = rng.choice([f"p{i}" for i in range(30)], n)
    signal = x[:, 0] + 0.8 * x[:, 1] * x[:, 2] + np.sin(2 * x[:, 3]) + (city == "north") * 0.7
    signal = signal + rng.normal(0, 0.8, n)
    columns: dict[str, object] = {f"x{i}": x[:, i].round(4) for i in range(8)}
    columns["city"], columns["plan"] = city, plan
    if data.task == "regression":
        columns["y"] = (10 * signal).round(3)
    elif data.task == "multiclass":
        columns["y"] = np.array(["low", "mid", "high", "top"])[
            np.digitize(signal, np.quantile(signal, [0.25, 0.5, 0.75]))
        ]
    else:
        columns["y"] = np.where(signal > 0.8, "yes", "no")
    frame = pl.DataFrame(columns)
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) % 17 == 3).then(None).otherwise(pl.col("x4")).alias("x4")
    )
    return frame.write_csv().encode()


def _next_record(runtime: LocalRuntime) -> S3EventRecord:
    [message] = runtime.queue.receive(runtime.settings.queues.events)
    [record] = S3Event.model_validate_json(message.body).records
    runtime.queue.delete(runtime.settings.queues.events, message.receipt_handle)
    return record


def run_one(data: DataSet, content: bytes, budget_s: float, home: Path) -> Row:
    """Preprocess then train in a fresh workspace; the train stage's wall time and outcome."""
    runtime = open_runtime(home)
    try:
        manifest = Manifest(dataset="budget", target="y", time_budget_s=budget_s)
        if data.name == "bank":
            manifest = manifest.model_copy(update={"positive": "yes", "drop": ["duration"]})
        elif data.task == "binary":
            manifest = manifest.model_copy(update={"positive": "yes"})
        save_manifest(runtime.store, runtime.settings.buckets.data, manifest)
        key = keys.source_key("budget", f"{data.name}.csv")
        runtime.store.put(runtime.settings.buckets.data, key, content)
        preprocess(_next_record(runtime), runtime.ports())
        record = _next_record(runtime)
        started = time.monotonic()
        result = train(record, runtime.ports())
        elapsed = time.monotonic() - started
        [model_key] = result.outputs
        artifact = ModelArtifact.from_tar_gz(
            runtime.store.get(runtime.settings.buckets.model_output, model_key), model_key
        )
        meta = artifact.metadata
        return Row(
            data=data.name,
            rows=content.count(b"\n") - 1,
            budget_s=budget_s,
            train_s=elapsed,
            trials=len(meta.trials),
            cut=sum(bool(t.get("cut")) for t in meta.trials),
            learner=meta.learner,
            fitted=fitted_on(meta.selection, meta.refit) or "",
        )
    finally:
        runtime.close()


def table(rows: list[Row]) -> str:
    lines = [
        "| data | rows | budget | train stage | limit (+10 % + 2 s) | trials (cut) | model "
        "| fitted on |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = "" if r.within else " **over**"
        lines.append(
            f"| {r.data} | {r.rows:,} | {r.budget_s:.0f} s | {r.train_s:.1f} s{verdict} "
            f"| {r.limit_s:.1f} s | {r.trials} ({r.cut}) | {r.learner} | {r.fitted} |"
        )
    worst = max(rows, key=lambda r: r.train_s / r.budget_s)
    lines += [
        "",
        f"Worst overrun: {worst.data} at {worst.budget_s:.0f} s, "
        f"{worst.train_s / worst.budget_s:.2f}x the budget; "
        f"{sum(r.within for r in rows)}/{len(rows)} runs within the limit.",
    ]
    return "\n".join(lines)


def run(
    work: Path, names: tuple[str, ...] = tuple(SETS), budgets: tuple[float, ...] = BUDGETS_S
) -> str:
    """The section for docs/benchmarks.md: every set at every budget."""
    rows = []
    for name in names:
        data = SETS[name]
        if data.rows == 0 and not Path(data.path).exists():
            print(f"budget: {name} skipped ({data.path} not found)")
            continue
        content = Path(data.path).read_bytes() if data.rows == 0 else generate(data)
        for budget in budgets:
            home = Path(tempfile.mkdtemp(dir=work, prefix=f"{name}-{budget:.0f}-"))
            row = run_one(data, content, budget, home)
            print(
                f"budget: {name} {budget:.0f}s -> train {row.train_s:.1f}s "
                f"({row.trials} trials, {row.cut} cut; {row.fitted})",
                flush=True,
            )
            rows.append(row)
    return "## The time budget\n\n" + table(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS_S))
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="automlops-budget-"))
    section = run(work, tuple(args.sets), tuple(args.budgets))
    print(section)
    if args.out:
        args.out.write_text(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
