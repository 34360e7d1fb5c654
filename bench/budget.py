"""The time budget as a budget: how long the train stage takes against `--time-budget`.

For each data set (generated, of the sizes that take each of the search's paths: small data
selected by cross-validation, a validation split, and a big training split tuned on samples
and refitted on as many rows as the budget allows; plus the bank file when ../shared/data
has it, and that file at 10x and 100x as `bench/scale.py` builds it, 0.4 M and 4.1 M rows)
and each budget, a fresh workspace runs preprocess, then the train stage, timed from its
call to its return. The target: train stage <= 1.1 x budget + 2 s. The table also gives how
many trials ran, how many the deadline cut short, what the final model was fitted on, and
where the stage's time went: loading the splits (read and transformed), the search, the
refit, and the rest (scores on the training and held-out rows, the artifact written).

    python bench/budget.py [--budgets 5 10] [--sets cv holdout] [--work DIR] [--out FILE.md]

Alone it writes docs/benchmarks-budget.md; `make bench` puts `run`'s section in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from automlops import keys
from automlops.config import Manifest
from automlops.events import S3Event, S3EventRecord
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.manifests import save_manifest
from automlops.ml.artifact import ModelArtifact
from automlops.ml.tuning.refit import Refitter
from automlops.reports.tuning_text import fitted_on
from automlops.stages import train as train_module
from automlops.stages.preprocess import preprocess
from automlops.tabular.schema import DatasetSchema

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks-budget.md"
BANK = ROOT.parent / "shared" / "data" / "bank-additional-full.csv"
BUDGETS_S = (5.0, 10.0)
SCALED_BUDGETS_S = (5.0, 20.0)  # the bank file at 10x and 100x
SLACK_SHARE, SLACK_S = 0.1, 2.0  # the target: within 10 % + 2 s of the budget


@dataclass(frozen=True)
class DataSet:
    name: str
    rows: int  # 0: a file of ../shared/data (or that file scaled)
    task: str  # binary | multiclass | regression
    path: str = "generated"
    factor: int = 0  # the bank file at this factor, built by `scale.make_files`
    budgets_s: tuple[float, ...] | None = None  # None: the run's budgets


SETS = {
    "cv": DataSet("cv", 3_000, "binary"),  # below 10,000 rows: 5-fold cross-validation
    "holdout": DataSet("holdout", 40_000, "binary"),  # a validation split
    "regression": DataSet("regression", 30_000, "regression"),
    "multiclass": DataSet("multiclass", 20_000, "multiclass"),
    # Above 100,000 training rows: trials on a sample, then a refit bounded by the budget.
    "sampled": DataSet("sampled", 400_000, "binary"),
    "bank": DataSet("bank", 0, "binary", str(BANK)),
    # The bank file at 10x and 100x: loading the splits alone takes seconds of the budget.
    "bank10x": DataSet("bank10x", 0, "binary", str(BANK), 10, SCALED_BUDGETS_S),
    "bank100x": DataSet("bank100x", 0, "binary", str(BANK), 100, SCALED_BUDGETS_S),
}
# Phases of the train stage: functions of stages.train, and the refit (in the search).
PHASES = ("_load", "_tune", "refit", "_fit_scores")


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
    phases: dict[str, float] = field(default_factory=dict)  # seconds per PHASES name
    loaded: str = ""  # the train stage's note when it loaded a sample of the splits

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


@contextmanager
def timed_phases() -> Iterator[dict[str, float]]:
    """Seconds spent in each of PHASES while the block runs (`_tune` includes the refit)."""
    spent: dict[str, float] = {}
    originals: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, attribute: str, name: str) -> None:
        original: Callable[..., Any] = getattr(owner, attribute)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - started

        originals.append((owner, attribute, original))
        setattr(owner, attribute, wrapper)

    for name in ("_load", "_tune", "_fit_scores"):
        wrap(train_module, name, name)
    wrap(Refitter, "single", "refit")
    wrap(Refitter, "ensemble", "refit")
    try:
        yield spent
    finally:
        for owner, attribute, original in reversed(originals):
            setattr(owner, attribute, original)


def _upload(runtime: LocalRuntime, key: str, source: bytes | Path) -> None:
    """The file into the data bucket: a big one copied as a file (never whole in memory)."""
    bucket = runtime.settings.buckets.data
    if isinstance(source, bytes):
        runtime.store.put(bucket, key, source)
        return
    target = runtime.store.path(bucket, key)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    runtime.notify_created(bucket, key)


def run_one(data: DataSet, content: bytes | Path, budget_s: float, home: Path) -> Row:
    """Preprocess then train in a fresh workspace; the train stage's wall time and outcome."""
    runtime = open_runtime(home)
    try:
        manifest = Manifest(dataset="budget", target="y", time_budget_s=budget_s)
        if data.name.startswith("bank"):
            manifest = manifest.model_copy(update={"positive": "yes", "drop": ["duration"]})
        elif data.task == "binary":
            manifest = manifest.model_copy(update={"positive": "yes"})
        save_manifest(runtime.store, runtime.settings.buckets.data, manifest)
        _upload(runtime, keys.source_key("budget", f"{data.name}.csv"), content)
        processed = preprocess(_next_record(runtime), runtime.ports())
        schema_key = processed.outputs[-1]
        schema = DatasetSchema.model_validate_json(
            runtime.store.get(runtime.settings.buckets.automl_data, schema_key)
        )
        record = _next_record(runtime)
        with timed_phases() as phases:
            started = time.monotonic()
            result = train_module.train(record, runtime.ports())
            elapsed = time.monotonic() - started
        [model_key] = result.outputs
        artifact = ModelArtifact.from_tar_gz(
            runtime.store.get(runtime.settings.buckets.model_output, model_key), model_key
        )
        meta = artifact.metadata
        return Row(
            data=data.name,
            rows=schema.rows.total,
            budget_s=budget_s,
            train_s=elapsed,
            trials=len(meta.trials),
            cut=sum(bool(t.get("cut")) for t in meta.trials),
            learner=meta.learner,
            fitted=fitted_on(meta.selection, meta.refit) or "",
            phases=dict(phases),
            loaded=(result.note or "").partition("; a sample of ")[2].partition(" loaded")[0],
        )
    finally:
        runtime.close()


def _split(r: Row) -> str:
    """Load / search / refit / rest of the train stage, in seconds."""
    load, tune, refit = (r.phases.get(k, 0.0) for k in ("_load", "_tune", "refit"))
    rest = r.train_s - load - tune
    return f"{load:.1f} / {tune - refit:.1f} / {refit:.1f} / {rest:.1f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| data | rows | budget | train stage | limit (+10 % + 2 s) | load / search / refit / "
        "rest (s) | trials (cut) | model | fitted on |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = "" if r.within else " **over**"
        lines.append(
            f"| {r.data} | {r.rows:,} | {r.budget_s:.0f} s | {r.train_s:.1f} s{verdict} "
            f"| {r.limit_s:.1f} s | {_split(r)} | {r.trials} ({r.cut}) | {r.learner} "
            f"| {r.fitted}{f'; loaded: {r.loaded}' if r.loaded else ''} |"
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
        content: bytes | Path
        if data.factor:
            content = scale.make_files(work / "files", (data.factor,)).sizes[data.factor]
        else:
            content = Path(data.path).read_bytes() if data.rows == 0 else generate(data)
        for budget in data.budgets_s or budgets:
            home = Path(tempfile.mkdtemp(dir=work, prefix=f"{name}-{budget:.0f}-"))
            row = run_one(data, content, budget, home)
            print(
                f"budget: {name} {budget:.0f}s -> train {row.train_s:.1f}s "
                f"({row.trials} trials, {row.cut} cut; {row.fitted})",
                flush=True,
            )
            rows.append(row)
            shutil.rmtree(home, ignore_errors=True)  # the 100x workspace holds gigabytes
    return "## The time budget\n\n" + table(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS_S))
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--work", type=Path, help="keep the generated files here")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="automlops-budget-"))
    work.mkdir(parents=True, exist_ok=True)
    section = run(work, tuple(args.sets), tuple(args.budgets))
    from run import machine

    one, five, _ = os.getloadavg()
    text = (
        "# Benchmark: the time budget\n\n"
        + section
        + f"\nMachine: {machine()}. Shared with other work while this ran (load average "
        f"{one:.2f} over 1 min, {five:.2f} over 5 min at the end).\n"
    )
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
