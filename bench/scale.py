"""Scaling benchmark: the bank file at 1x, 10x and 100x through the whole pipeline.

Held-out rows (10 %, stratified, seeded) are split off the original file once. Every size is
generated from the remaining training part only, by resampling rows with replacement and
jittering the many-valued numeric columns (integers stay integral and inside the observed
range; low-cardinality numeric columns such as `pdays`' 999 sentinel or the monthly economic
indicators, and every categorical, are resampled as they are). 1x is built the same way, with
the original file's row count. The files live in a temporary directory, never in the repository.

Each size runs in a subprocess of its own, through the local worker as `automlops run
--until-idle` does (manifest: target y, positive yes, drop duration, time budget 60 s). The
parent samples the child's RSS (/proc) to attribute peaks to stages; the child reports its
own high-water mark (VmHWM). Every size's champion is then scored, through its HTTP endpoint
with raw rows, on the same held-out rows.

Run alone: `python bench/scale.py [--sizes 1,10,100] [--work DIR]`; `bench/run.py` calls `run`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "bank-additional-full.csv"
RAW_DIR = ROOT / "docs" / "benchmarks-raw" / "scale"
SIZES = (1, 10, 100)
SEED = 20240601
HELDOUT_SHARE = 0.10
TIME_BUDGET_S = 60.0
MANIFEST = {
    "dataset": "bank",
    "target": "y",
    "positive": "yes",
    "drop": ["duration"],
    "time_budget_s": TIME_BUDGET_S,
}
STAGES = ("preprocess", "train", "deploy", "evaluate")
# Numeric columns with at least this many distinct values get jitter; fewer: codes/sentinels.
JITTER_MIN_DISTINCT = 30
JITTER_SHARE_OF_STD = 0.05
SAMPLE_EVERY_S = 0.05


# -- data -------------------------------------------------------------------------------------


def read_original(path: Path = DATA) -> pl.DataFrame:
    """The UCI file as published (`;`-separated, quoted strings)."""
    return pl.read_csv(path, separator=";", quote_char='"', infer_schema_length=None)


def split_heldout(frame: pl.DataFrame, seed: int = SEED) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(training part, held-out rows): a stratified, seeded 10 % of each class held out."""
    rng = np.random.default_rng(seed)
    y = frame.get_column("y").to_numpy()
    held = []
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        held.append(rows[: round(len(rows) * HELDOUT_SHARE)])
    mask = np.zeros(frame.height, dtype=bool)
    mask[np.concatenate(held)] = True
    keep = pl.Series(mask)
    return frame.filter(~keep), frame.filter(keep)


def _decimals(values: pl.Series) -> int:
    """Decimal places the published file uses for a float column (at most 4)."""
    text = values.cast(pl.String).drop_nulls()
    lengths = text.str.split(".").list.get(1, null_on_oob=True).str.len_chars().fill_null(0)
    return min(int(lengths.max() or 0), 4)  # type: ignore[arg-type]


def synthesise(training: pl.DataFrame, rows: int, seed: int) -> pl.DataFrame:
    """`rows` rows resampled with replacement from `training`, numeric columns jittered."""
    rng = np.random.default_rng(seed)
    picked = training[rng.integers(0, training.height, size=rows)]
    columns = []
    for name, dtype in training.schema.items():
        source = training.get_column(name)
        values = picked.get_column(name)
        if not dtype.is_numeric() or source.n_unique() < JITTER_MIN_DISTINCT:
            columns.append(values)
            continue
        scale = float(source.std() or 0.0) * JITTER_SHARE_OF_STD  # type: ignore[arg-type]
        noisy = values.to_numpy().astype(np.float64) + rng.normal(0.0, scale, size=rows)
        low, high = float(source.min()), float(source.max())  # type: ignore[arg-type]
        noisy = np.clip(noisy, low, high)
        if dtype.is_integer():
            columns.append(pl.Series(name, np.rint(noisy).astype(np.int64)))
        else:
            columns.append(pl.Series(name, np.round(noisy, _decimals(source))))
    return pl.DataFrame(columns)


def write_like_original(frame: pl.DataFrame, path: Path) -> None:
    """`;`-separated, strings quoted, as the UCI file."""
    tmp = path.with_suffix(".tmp")
    frame.write_csv(tmp, separator=";", quote_style="non_numeric")
    tmp.replace(path)


@dataclass
class Files:
    """The generated inputs of one benchmark run."""

    heldout: Path
    sizes: dict[int, Path]
    training_rows: int
    heldout_rows: int


def make_files(work: Path, sizes: tuple[int, ...], source: Path = DATA) -> Files:
    """Held-out CSV and one CSV per size factor under `work` (reused when already there)."""
    work.mkdir(parents=True, exist_ok=True)
    original = read_original(source)
    training, heldout = split_heldout(original)
    heldout_path = work / "heldout.csv"
    if not heldout_path.exists():
        write_like_original(heldout, heldout_path)
    paths = {}
    for factor in sizes:
        path = work / f"bank-{factor}x.csv"
        if not path.exists():
            started = time.perf_counter()
            write_like_original(synthesise(training, original.height * factor, SEED + factor), path)
            print(f"generated {path.name} in {time.perf_counter() - started:.1f}s", flush=True)
        paths[factor] = path
    return Files(heldout_path, paths, training.height, heldout.height)


# -- one size, in a child process --------------------------------------------------------------


def child(home: Path, csv_path: Path, heldout: Path, out: Path) -> int:
    """Run the pipeline on one file in a fresh workspace; write figures to `out` (JSON)."""
    from automlops import keys
    from automlops.config import Manifest
    from automlops.local.runtime import open_runtime
    from automlops.local.worker import Worker
    from automlops.manifests import save_manifest
    from automlops.ml.artifact import ModelArtifact
    from automlops.ml.evaluation.metrics import binary_metrics
    from automlops.reports.tuning_text import chosen_by, fitted_on
    from automlops.stages.evaluate import score_endpoint
    from automlops.tabular.csv_reader import read_csv_bytes

    runtime = open_runtime(home)
    buckets = runtime.settings.buckets
    save_manifest(runtime.store, buckets.data, Manifest(**MANIFEST))
    key = keys.source_key("bank", csv_path.name)
    # The upload: the file copied into the data bucket (as `cp` into a watched folder would),
    # so the benchmark itself never holds the file in this process's memory.
    target = runtime.store.path(buckets.data, key)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(csv_path, target)
    started = time.time()
    print(f"{time.time():.3f} upload {csv_path.name}", flush=True)
    runtime.notify_created(buckets.data, key)

    def progress(run: object, stage: object, text: str) -> None:
        print(f"{time.time():.3f} {getattr(stage, 'value', stage)}: {text}", flush=True)

    Worker(runtime, on_progress=progress).run_until_idle()
    finished = time.time()
    [run] = runtime.runlog.list("bank")
    with sqlite3.connect(home / "runs.db") as db:
        stage_rows = db.execute(
            "SELECT name, status, started_at, finished_at FROM stages WHERE run_id = ?", (run.id,)
        ).fetchall()
    result: dict[str, object] = {
        "status": run.status,
        "error": run.error,
        "started_at": started,
        "finished_at": finished,
        "stages": {
            name: {"status": status, "started_at": start, "finished_at": end}
            for name, status, start, end in stage_rows
        },
    }
    champion = runtime.registry.read("bank").champion_version()
    if champion is not None and champion.endpoint is not None:
        artifact = ModelArtifact.from_tar_gz(
            runtime.store.get(champion.artifact_bucket, champion.artifact_key), "model"
        )
        meta = artifact.metadata
        rows = read_csv_bytes(heldout.read_bytes(), heldout.name)
        y = meta.target.encode(rows.get_column("y"), heldout.name)
        pred = score_endpoint(runtime.host, champion.endpoint, rows.drop("y"), meta)
        threshold = 0.5 if meta.threshold is None else meta.threshold
        result["heldout"] = binary_metrics(y, pred, threshold)
        result["champion"] = {
            "version": champion.version,
            "learner": meta.learner,
            "test_metrics": champion.metrics,
            "params": meta.params,
            "refit": fitted_on(meta.selection, meta.refit),
            "selection": chosen_by(meta.selection),
            "trials": len(meta.trials),
        }
        schema_key = keys.schema_key("bank", run.id)
        result["schema_rows"] = json.loads(runtime.store.get(buckets.automl_data, schema_key))[
            "rows"
        ]
    runtime.close()
    # The run's peak, read by the child itself: exec starts a fresh high-water mark, whereas
    # wait4's ru_maxrss also counts the parent's memory the child was forked with.
    result["peak_rss"] = _rss_bytes("self", "VmHWM")
    out.write_text(json.dumps(result, indent=1))
    return 0 if run.status == "succeeded" else 1


# -- the parent: run, sample, summarise ---------------------------------------------------------


def _rss_bytes(pid: int | str, field: str = "VmRSS") -> int | None:
    """A memory figure of a process from /proc (VmRSS now, VmHWM its peak since exec)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass
class SizeResult:
    """Figures of one size."""

    factor: int
    rows: int
    csv_bytes: int
    stage_s: dict[str, float] = field(default_factory=dict)
    stage_peak_rss: dict[str, int] = field(default_factory=dict)
    stage_start_rss: dict[str, int] = field(default_factory=dict)  # first sample in the stage
    end_to_end_s: float = 0.0
    peak_rss: int = 0
    heldout_auc: float | None = None
    learner: str | None = None
    status: str = "failed"
    detail: dict[str, object] = field(default_factory=dict)


def run_size(factor: int, csv_path: Path, heldout: Path, work: Path, raw_dir: Path) -> SizeResult:
    """One size in a child process; RSS sampled from here."""
    home = work / f"home-{factor}x"
    shutil.rmtree(home, ignore_errors=True)
    out = work / f"result-{factor}x.json"
    out.unlink(missing_ok=True)
    log_path = raw_dir / f"{factor}x.log"
    samples: list[tuple[float, int]] = []
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                str(home),
                str(csv_path),
                str(heldout),
                str(out),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                rss = _rss_bytes(proc.pid)
                if rss is not None:
                    samples.append((time.time(), rss))
                time.sleep(SAMPLE_EVERY_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
    shutil.rmtree(home, ignore_errors=True)  # a 100x workspace holds over a gigabyte
    result = SizeResult(
        factor=factor,
        rows=_count_rows(csv_path),
        csv_bytes=csv_path.stat().st_size,
        peak_rss=int(usage.ru_maxrss) * 1024,
    )
    if not out.exists():
        result.detail = {"error": f"child exited with {proc.returncode}; see {log_path.name}"}
        return result
    data = json.loads(out.read_text())
    if data.get("peak_rss"):
        result.peak_rss = int(data["peak_rss"])
    result.status = str(data["status"])
    result.end_to_end_s = float(data["finished_at"]) - float(data["started_at"])
    for name, stage in data["stages"].items():
        start, end = stage["started_at"], stage["finished_at"]
        if start is None or end is None:
            continue
        result.stage_s[name] = end - start
        inside = [rss for t, rss in samples if start <= t <= end]
        if inside:
            result.stage_peak_rss[name] = max(inside)
            result.stage_start_rss[name] = inside[0]
    if "heldout" in data:
        result.heldout_auc = float(data["heldout"]["roc_auc"])
        result.learner = str(data["champion"]["learner"])
    result.detail = data
    return result


def _count_rows(path: Path) -> int:
    with open(path, "rb") as handle:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b""))
    return lines - 1  # the header


# -- report --------------------------------------------------------------------------------------


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(results: list[SizeResult]) -> str:
    """The scaling table as markdown."""
    head = (
        "| size | rows | CSV MB | preprocess s | train s | deploy s | evaluate s | end to end s "
        "| preprocess peak RSS MB | its peak / CSV | its growth / CSV | run peak RSS MB "
        "| held-out ROC AUC |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in results:
        pre_peak = r.stage_peak_rss.get("preprocess")
        pre_start = r.stage_start_rss.get("preprocess")
        ratio = "-" if pre_peak is None else f"{pre_peak / r.csv_bytes:.2f}x"
        growth = (
            "-"
            if pre_peak is None or pre_start is None
            else f"{(pre_peak - pre_start) / r.csv_bytes:.2f}x"
        )
        auc = "failed" if r.heldout_auc is None else f"{r.heldout_auc:.4f}"
        lines.append(
            f"| {r.factor}x | {r.rows:,} | {_mb(r.csv_bytes)} "
            + " ".join(f"| {_s(r.stage_s.get(s))}" for s in STAGES)
            + f" | **{r.end_to_end_s:.1f}** | {'-' if pre_peak is None else _mb(pre_peak)} "
            f"| {ratio} | {growth} | {_mb(r.peak_rss)} | {auc} |"
        )
    return "\n".join(lines)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) at the end"


def _test_aucs(results: list[SizeResult]) -> str:
    """Each size's ROC AUC on its own test split, as the run's evaluation measured it."""
    parts = []
    for r in results:
        champion = r.detail.get("champion")
        if isinstance(champion, dict) and "roc_auc" in champion.get("test_metrics", {}):
            parts.append(f"{r.factor}x {champion['test_metrics']['roc_auc']:.3f}")
    return ", ".join(parts) or "not recorded"


def section(results: list[SizeResult], files: Files, load: str) -> str:
    """The markdown section for docs/benchmarks.md."""
    by_factor = {r.factor: r for r in results}
    checks = []
    big = by_factor.get(100)
    base = by_factor.get(1)
    if big is not None:
        ok = big.status == "succeeded" and big.end_to_end_s <= 300
        checks.append(
            f"- 100x end to end in ≤ 5 min: **{'met' if ok else 'not met'}** "
            f"({big.end_to_end_s:.0f} s)."
        )
        if base is not None and big.heldout_auc is not None and base.heldout_auc is not None:
            ok = big.heldout_auc >= base.heldout_auc
            checks.append(
                f"- 100x held-out AUC ≥ 1x: **{'met' if ok else 'not met'}** "
                f"({big.heldout_auc:.4f} vs {base.heldout_auc:.4f})."
            )
    largest = max(results, key=lambda r: r.factor)
    peak = largest.stage_peak_rss.get("preprocess")
    start = largest.stage_start_rss.get("preprocess")
    if peak is not None and start is not None:
        ok = peak <= 2 * largest.csv_bytes
        checks.append(
            f"- preprocess peak RSS ≤ 2x the CSV ({largest.factor}x, the whole worker process): "
            f"**{'met' if ok else 'not met'}** ({peak / largest.csv_bytes:.2f}x). Of that, "
            f"{start / 1e6:,.0f} MB is what the worker held before the stage read a byte (Python, "
            f"polars, numpy, XGBoost, LightGBM, scikit-learn, FastAPI): the stage itself grew "
            f"it by {(peak - start) / largest.csv_bytes:.2f}x the CSV. At 1x and 10x that "
            f"fixed part is many times the file, so their ratios say little."
        )
    for r in results:
        champion = r.detail.get("champion")
        if isinstance(champion, dict):
            checks.append(
                f"- {r.factor}x champion: {champion['learner']} after {champion['trials']} "
                f"trials; selection: {champion['selection']}; trained on: {champion['refit']}."
            )
    pre = [(r.rows, r.stage_s["preprocess"]) for r in results if "preprocess" in r.stage_s]
    if len(pre) >= 2:
        per_m = ", ".join(f"{n / 1e6:.2f}M rows: {t / n * 1e6:.1f} s per M rows" for n, t in pre)
        checks.append(f"- preprocess time per million rows: {per_m}.")
    return f"""## Scaling: 1x, 10x and 100x the bank file

`bench/scale.py`. Held-out rows: {files.heldout_rows:,} (10 %, stratified, seeded) split off
the original file once; every size is generated from the other {files.training_rows:,} rows
only, by resampling with replacement and jittering the numeric columns with at least
{JITTER_MIN_DISTINCT} distinct values (Gaussian, {JITTER_SHARE_OF_STD:.0%} of the column's
standard deviation, clipped to its range, integers kept integral); categoricals and
low-cardinality numbers (codes, the `pdays` 999 sentinel, monthly indicators) are resampled
as they are. 1x is generated the same way with the original's row count. The files are
written to a temporary directory, never committed. Each size runs in a subprocess of its own
through the local worker, as `automlops run --until-idle` does (`--target y --positive yes
--drop duration --time-budget {TIME_BUDGET_S:.0f}`); stage times come from the run log,
end to end is from the upload notification to the evaluated champion. Peak RSS of the run is
the child's own high-water mark (VmHWM, which starts afresh at exec, unlike wait4's
`ru_maxrss`, which counts the parent's memory the child was forked with); the preprocess
peak is the largest RSS sampled every {SAMPLE_EVERY_S * 1000:.0f} ms while that stage ran
(it is the first stage, so nothing earlier inflates it). Held-out ROC AUC: every size's
champion called through its HTTP endpoint with the same raw held-out rows. Only those are
unseen: a resampled file's own validation and test splits hold near-copies of its training
rows (test-split ROC AUC in each run: {_test_aucs(results)}), so selection on them favours
memorising, and the held-out rows are the honest measure. {load}.

{table(results)}

{chr(10).join(checks)}

{PROFILING_NOTES}
"""


PROFILING_NOTES = """### Profiling notes (scaling)

pyinstrument on the preprocess stage alone (`/tmp` workspace, the same files), and the stage
logs of the 10x and 100x runs, on this machine while other work ran on it (figures
indicative):

- **Preprocess, before**: the upload was read whole as bytes, decoded to a Python string,
  encoded again for polars, parsed as all-string columns, stripped into a second copy and
  cast into a third; each split was then copied out of the frame. pyinstrument at 10x: 1.3 of
  3.0 s in `read_csv_bytes` (all-strings parse 0.6 s, cleaning 0.2 s, type casts 0.2 s,
  decode 0.2 s), 0.6 s fitting columns, 0.4 s hashing the bytes (SHA-256, plus an MD5 of the
  whole file in `head` just to learn its size). 100x: 28.6 s, peak RSS 4.53 GB (7.8x the
  582 MB file).
- **Changed**: `read_csv_file` scans the file with polars' streaming engine twice (types
  judged on every value, then the typed columns built; strings never exist for the whole
  file at once; `replace` was swapped for `when/is_in` because it made polars fall back to
  the in-memory engine: 1.57 GB vs 0.41 GB for the type pass alone), text is kept
  Categorical (4 bytes a cell), the size is `stat`ed and the hash streamed, columns are
  fitted on gathered training rows one at a time with kinds judged on distinct values,
  splits are written a row group at a time. The schema and transform are identical on the
  bank and attrition files.
- **After**: 100x preprocess 17 s and 1.10 GB peak alone (12-19 s run to run on this busy
  machine; 0.82 GB above the 0.28 GB the process held before the stage), 10x 2.5 s and
  0.48 GB (was 0.78 GB). The last 50 MB came from reading class labels off the Categorical
  column (no string copy of the target) and building split indices one class at a time.
  Left: the typed table itself is 0.51 GB, and about 0.13 GB more is freed memory polars'
  allocator (jemalloc) keeps; `_RJEM_MALLOC_CONF=dirty_decay_ms:0` gave it back (1.02 GB
  peak alone) but was not made the default, as it taxes every allocation of the serving
  process too.
- **Train, before**: at 10x a single XGBoost trial on all 288k training rows took the whole
  54 s budget and there was no refit. Now trials use stratified samples (100k training, 50k
  validation rows) and the chosen model is refitted on all rows. A first version cut the
  refit's rounds by a per-row cost estimate taken from the sampled trial; the log showed
  LightGBM refitted with 14 of 702 rounds (its per-round cost barely grows with rows), so the
  refit is now bounded by time instead (2x the budget; boosting stops adding rounds there).
- **Run to run**: with two cores shared with other benchmarks, each size got only 2-5
  trials, and held-out AUC moved with them: over this session's runs 1x 0.782-0.797, 100x
  0.799-0.815 (the 100x margin over 1x was 0.002-0.03, never below).
- **Evaluate**: scoring the 10x test split (41k rows) through the endpoint took 4.5 s
  (HTTP + JSON at ~10k rows/s): ~45 s at 100x. Splits over 20k rows are now scored in-process
  by the same artifact and code, with a 2,000-row sample through the endpoint that must agree
  to 1e-5. The gate's paired bootstrap on 412k rows took 34 s a comparison (pyinstrument: an
  `argsort` of both models' scores for every chunk of 3 resamples); AUC now sorts once per
  model, skips tie grouping when there are no ties, and the resamples are bounded (1e8
  cells, at least 200: 250 at 412k rows), 4-5 s a comparison, every row in every resample.
"""


def _raw(result: SizeResult) -> dict[str, object]:
    return {
        "factor": result.factor,
        "rows": result.rows,
        "csv_bytes": result.csv_bytes,
        "stage_s": result.stage_s,
        "stage_peak_rss": result.stage_peak_rss,
        "stage_start_rss": result.stage_start_rss,
        "end_to_end_s": result.end_to_end_s,
        "peak_rss": result.peak_rss,
        "heldout_auc": result.heldout_auc,
        "learner": result.learner,
        "status": result.status,
        "detail": result.detail,
    }


def render(raw_dir: Path) -> str:
    """The markdown section rebuilt from the raw outputs of the last run in `raw_dir`."""
    meta = json.loads((raw_dir / "meta.json").read_text())
    results = []
    for factor in meta["sizes"]:
        data = json.loads((raw_dir / f"{factor}x.json").read_text())
        results.append(SizeResult(**data))
    files = Files(Path("heldout.csv"), {}, meta["training_rows"], meta["heldout_rows"])
    return section(results, files, meta["load"])


def run(work: Path, raw_dir: Path, sizes: tuple[int, ...] = SIZES) -> str:
    """Generate the files, run every size, keep raw outputs in `raw_dir`; returns markdown."""
    if not DATA.exists():
        return "## Scaling\n\nSkipped: ../shared/data/bank-additional-full.csv not found.\n"
    raw_dir.mkdir(parents=True, exist_ok=True)
    files = make_files(work / "scale-data", sizes)
    results = []
    for factor in sizes:
        print(f"scale {factor}x: running ...", flush=True)
        result = run_size(factor, files.sizes[factor], files.heldout, work, raw_dir)
        results.append(result)
        (raw_dir / f"{factor}x.json").write_text(json.dumps(_raw(result), indent=1))
        pre = result.stage_peak_rss.get("preprocess", 0)
        print(
            f"scale {factor}x: {result.status}, {result.end_to_end_s:.1f}s end to end, "
            f"stages {', '.join(f'{k} {v:.1f}s' for k, v in result.stage_s.items())}, "
            f"preprocess peak {pre / 1e6:.0f} MB ({pre / result.csv_bytes:.2f}x CSV), "
            f"run peak {result.peak_rss / 1e6:.0f} MB, held-out AUC {result.heldout_auc}",
            flush=True,
        )
    meta = {
        "sizes": list(sizes),
        "training_rows": files.training_rows,
        "heldout_rows": files.heldout_rows,
        "load": _load(),
    }
    (raw_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    markdown = section(results, files, meta["load"])
    (raw_dir / "section.md").write_text(markdown)
    return markdown


def main(argv: list[str] | None = None) -> int:
    """Command line: run the sizes asked for and print the markdown section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="e.g. 1,10,100")
    parser.add_argument("--work", type=Path, default=None, help="keep generated files here")
    parser.add_argument("--raw-dir", type=Path, default=RAW_DIR)
    parser.add_argument("--child", nargs=4, metavar=("HOME", "CSV", "HELDOUT", "OUT"))
    parser.add_argument(
        "--render", action="store_true", help="rebuild the section from the raw outputs only"
    )
    args = parser.parse_args(argv)
    if args.render:
        print(render(args.raw_dir))
        return 0
    if args.child:
        home, csv_path, heldout, out = (Path(p) for p in args.child)
        return child(home, csv_path, heldout, out)
    sizes = tuple(int(s.strip().rstrip("x")) for s in args.sizes.split(",") if s.strip())
    work = args.work or Path(tempfile.mkdtemp(prefix="automlops-scale-"))
    print(run(work, args.raw_dir, sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
