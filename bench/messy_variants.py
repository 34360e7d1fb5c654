"""Messy variants of one file, each through the whole pipeline, against the clean file.

A person's export of the bank file rarely looks like the published one. From the published file
(10 % held out, stratified, seeded, as `scale.split_heldout` does) this writes the training part
once as published and once per variant:

- **european**: `;`-separated, decimal commas, `.` thousands (`5.191,0`);
- **currency**: `,`-separated, `$5,191.00` and `€93.994` (quoted where the comma needs it);
- **percent**: `4.857%`, `1.1%`;
- **booleans**: `TRUE`/`FALSE`/`NA` (housing, loan; `unknown` is NA) and `YES`/`NO` (contact);
- **target case**: the label written `yes`, `YES`, ` Yes`, `Yes ` (and the same for `no`);
- **row numbers**: the file sorted by class with a `rownames` column 1..n in front;
- **dates**: a `contact_date` column written half `2010-05-13`, half `13/05/2010`.

Each file runs through the local pipeline (upload, preprocess, train with a small budget,
deploy, evaluate); the champion then scores the held-out rows sent as plain JSON rows (numbers
as numbers, booleans as true/false, missing as null; row numbers that continue the file's), and
the table shows each variant's held-out ROC AUC beside the clean file's (target: within 0.02).

Run alone: `python bench/messy_variants.py [--budget 6]`; writes docs/benchmarks-messy_variants.md.
`section()` returns the markdown for `make bench`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks-messy_variants.md"
BUDGET_S = 6.0
SEED = 20240601
MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        start=1,
    )
}


@dataclass
class Variant:
    """How one variant writes the training part, and the held-out rows as plain values."""

    name: str
    describe: str
    write: Callable[[pl.DataFrame, Path], None]
    plain: Callable[[pl.DataFrame], pl.DataFrame]  # held-out rows as a caller would send them


def _published(frame: pl.DataFrame, path: Path) -> None:
    scale.write_like_original(frame, path)


def _same(frame: pl.DataFrame) -> pl.DataFrame:
    return frame


def _text_with(frame: pl.DataFrame, spelled: dict[str, pl.Expr]) -> pl.DataFrame:
    return frame.with_columns(**spelled)


def _euro(column: str, decimals: int, thousands: bool = False) -> pl.Expr:
    """A float column as `1.234,5`: formatted in Python per distinct value (few)."""

    def spell(value: float | None) -> str | None:
        if value is None:
            return None
        text = f"{value:,.{decimals}f}" if thousands else f"{value:.{decimals}f}"
        return text.replace(",", "_").replace(".", ",").replace("_", ".")

    return pl.col(column).map_elements(spell, return_dtype=pl.String)


def _european(frame: pl.DataFrame, path: Path) -> None:
    spelled = _text_with(
        frame,
        {
            "emp.var.rate": _euro("emp.var.rate", 1),
            "cons.price.idx": _euro("cons.price.idx", 3),
            "cons.conf.idx": _euro("cons.conf.idx", 1),
            "euribor3m": _euro("euribor3m", 3),
            "nr.employed": _euro("nr.employed", 1, thousands=True),
        },
    )
    spelled.write_csv(path, separator=";")


def _currency(frame: pl.DataFrame, path: Path) -> None:
    spelled = _text_with(
        frame,
        {
            "nr.employed": pl.format(
                "${}",
                pl.col("nr.employed").map_elements(lambda v: f"{v:,.2f}", return_dtype=pl.String),
            ),
            "cons.price.idx": pl.format("€{}", pl.col("cons.price.idx").round(3)),
        },
    )
    spelled.write_csv(path, separator=",")


def _percent(frame: pl.DataFrame, path: Path) -> None:
    spelled = _text_with(
        frame,
        {
            "euribor3m": pl.format("{}%", pl.col("euribor3m").round(3)),
            "emp.var.rate": pl.format("{}%", pl.col("emp.var.rate").round(1)),
        },
    )
    spelled.write_csv(path, separator=",")


def _boolean(column: str, yes: str) -> pl.Expr:
    return (
        pl.when(pl.col(column) == yes)
        .then(True)
        .when(pl.col(column) == "unknown")
        .then(None)
        .otherwise(False)
    )


def _booleans_plain(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        housing=_boolean("housing", "yes"),
        loan=_boolean("loan", "yes"),
        contact=_boolean("contact", "cellular"),
    )


def _booleans(frame: pl.DataFrame, path: Path) -> None:
    caps = {True: "TRUE", False: "FALSE"}
    plain = _booleans_plain(frame)
    spelled = plain.with_columns(
        housing=pl.col("housing").replace_strict(caps, default="NA", return_dtype=pl.String),
        loan=pl.col("loan").replace_strict(caps, default="NA", return_dtype=pl.String),
        contact=pl.col("contact").replace_strict(
            {True: "YES", False: "NO"}, return_dtype=pl.String
        ),
    )
    spelled.write_csv(path, separator=",")


def _target_case(frame: pl.DataFrame, path: Path) -> None:
    rng = np.random.default_rng(SEED)
    forms = {"yes": ["yes", "YES", " Yes", "Yes "], "no": ["no", "NO", "No ", " no"]}
    labels = [
        forms[v][i] for v, i in zip(frame["y"], rng.integers(0, 4, frame.height), strict=True)
    ]
    frame.with_columns(y=pl.Series(labels)).write_csv(path, separator=",")


def _row_numbers(frame: pl.DataFrame, path: Path) -> None:
    ordered = frame.sort("y", maintain_order=True)
    ordered.insert_column(0, pl.Series("rownames", np.arange(1, frame.height + 1)))
    ordered.write_csv(path, separator=",")


def _row_numbers_plain(frame: pl.DataFrame) -> pl.DataFrame:
    # Row numbers that continue the training file's, as the next rows of the export would have.
    start = 40_000
    return frame.with_columns(rownames=pl.int_range(start, start + frame.height))


def _date(frame: pl.DataFrame, seed: int) -> pl.Series:
    """A contact date consistent with the row's month (the day drawn), in 2010."""
    rng = np.random.default_rng(seed)
    months = frame["month"].replace_strict(MONTHS, return_dtype=pl.Int32).to_numpy()
    days = rng.integers(1, 29, frame.height)
    return pl.Series([f"2010-{m:02d}-{d:02d}" for m, d in zip(months, days, strict=True)])


def _dates(frame: pl.DataFrame, path: Path) -> None:
    iso = _date(frame, SEED)
    european = iso.str.to_date("%Y-%m-%d").dt.strftime("%d/%m/%Y")
    mixed = pl.select(
        pl.when(pl.int_range(frame.height) % 2 == 0).then(iso).otherwise(european)
    ).to_series()
    frame.with_columns(contact_date=mixed).write_csv(path, separator=",")


def _dates_plain(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(contact_date=_date(frame, SEED + 1))


VARIANTS = (
    Variant("clean", "as published (`;`, quoted text, plain numbers)", _published, _same),
    Variant("european", "`;` + decimal comma, `5.191,0`", _european, _same),
    Variant("currency", "`$5,191.00`, `€93.994`", _currency, _same),
    Variant("percent", "`4.857%`, `1.1%`", _percent, _same),
    Variant("booleans", "`TRUE`/`FALSE`/`NA`, `YES`/`NO`", _booleans, _booleans_plain),
    Variant("target case", "`yes`/`YES`/` Yes`/`Yes `", _target_case, _same),
    Variant("row numbers", "class-sorted, `rownames` 1..n", _row_numbers, _row_numbers_plain),
    Variant("dates", "`2010-05-13` and `13/05/2010` mixed", _dates, _dates_plain),
)


@dataclass
class Outcome:
    """One variant's run."""

    variant: Variant
    status: str
    auc: float | None = None
    learner: str | None = None
    seconds: float = 0.0
    notes: str = ""


def run_variant(
    variant: Variant, training: pl.DataFrame, heldout: pl.DataFrame, work: Path, budget: float
) -> Outcome:
    """Write the variant, run the pipeline on it, score the plain held-out rows."""
    from automlops import keys
    from automlops.config import Manifest
    from automlops.local.runtime import open_runtime
    from automlops.local.worker import Worker
    from automlops.manifests import save_manifest
    from automlops.ml.artifact import ModelArtifact
    from automlops.ml.evaluation.metrics import binary_metrics
    from automlops.stages.evaluate import score_endpoint

    home = work / variant.name.replace(" ", "-")
    shutil.rmtree(home, ignore_errors=True)
    csv_path = work / f"{variant.name.replace(' ', '-')}.csv"
    variant.write(training, csv_path)
    runtime = open_runtime(home)
    started = time.perf_counter()
    try:
        manifest = Manifest(**{**scale.MANIFEST, "time_budget_s": budget})
        save_manifest(runtime.store, runtime.settings.buckets.data, manifest)
        key = keys.source_key("bank", csv_path.name)
        runtime.store.put(runtime.settings.buckets.data, key, csv_path.read_bytes())
        Worker(runtime).run_until_idle()
        [run] = runtime.runlog.list("bank")
        champion = runtime.registry.read("bank").champion_version()
        if champion is None or champion.endpoint is None:
            return Outcome(
                variant, f"{run.status}: {run.error}", seconds=time.perf_counter() - started
            )
        artifact = ModelArtifact.from_tar_gz(
            runtime.store.get(champion.artifact_bucket, champion.artifact_key), "model"
        )
        meta = artifact.metadata
        plain = variant.plain(heldout)
        y = meta.target.encode(heldout.get_column("y"), "heldout")
        pred = score_endpoint(runtime.host, champion.endpoint, plain.drop("y"), meta)
        threshold = 0.5 if meta.threshold is None else meta.threshold
        auc = float(binary_metrics(y, pred, threshold)["roc_auc"])
        labels = "/".join(meta.target.labels)
        return Outcome(
            variant,
            "served",
            auc,
            meta.learner,
            time.perf_counter() - started,
            f"{len(meta.target.labels)} classes ({labels})",
        )
    finally:
        runtime.close()
        shutil.rmtree(home, ignore_errors=True)


def run(budget: float = BUDGET_S, work: Path | None = None, only: list[str] | None = None) -> str:
    """Every variant (or those named in `only`, the clean file always) through the pipeline;
    the markdown section."""
    temporary = work is None
    work = Path(tempfile.mkdtemp(prefix="automlops-messy-")) if work is None else work
    work.mkdir(parents=True, exist_ok=True)
    try:
        training, heldout = scale.split_heldout(scale.read_original())
        outcomes = []
        for variant in VARIANTS:
            if only and variant.name != "clean" and variant.name not in only:
                continue
            outcome = run_variant(variant, training, heldout, work, budget)
            auc = "-" if outcome.auc is None else f"{outcome.auc:.4f}"
            print(
                f"{variant.name}: {outcome.status}, AUC {auc}, {outcome.seconds:.0f} s", flush=True
            )
            outcomes.append(outcome)
        return section(outcomes, budget, training.height, heldout.height)
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)


def section(outcomes: list[Outcome], budget: float, rows: int, heldout: int) -> str:
    """The markdown: each variant's held-out AUC beside the clean file's."""
    from run import machine

    clean = outcomes[0].auc
    lines = [
        "## Messy variants of the bank file vs the clean file",
        "",
        f"The bank file's training part ({rows:,} rows) written as published and as a person's "
        f"export might write it; each through the local pipeline with a {budget:g} s budget "
        f"(target y, positive yes, duration dropped). The champion scores {heldout:,} held-out "
        "rows sent as plain JSON rows. Target: within 0.02 ROC AUC of the clean file.",
        "",
        "| variant | written as | outcome | champion | held-out ROC AUC | vs clean |",
        "|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        auc = "-" if o.auc is None else f"{o.auc:.4f}"
        delta = "-" if o.auc is None or clean is None else f"{o.auc - clean:+.4f}"
        lines.append(
            f"| {o.variant.name} | {o.variant.describe} | {o.status}; {o.notes} "
            f"| {o.learner or '-'} | {auc} | {delta} |"
        )
    one, five, _ = os.getloadavg()
    lines += [
        "",
        f"Machine: {machine()}. Shared with other work while this ran (load average {one:.2f} "
        f"over 1 min, {five:.2f} over 5 min at the end); with a budget this small the "
        "search's reach varies with the load, which shows in every row alike.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=BUDGET_S)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--only", nargs="*", help="variant names (the clean file always runs)")
    args = parser.parse_args()
    text = run(args.budget, args.work, args.only)
    OUT.write_text("# Benchmark: messy variants\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
