"""`make bench`: the pipeline against the reference recipe on the full bank-marketing file.

Measures, in one run on this machine: the preprocess stage vs the reference's pandas
preprocessing (as a ratio), upload-to-served-model time, and the champion's test ROC AUC vs
the reference model trained on the same split. Writes docs/benchmarks.md.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import automl_table
import budget
import capture
import explain
import messy_variants
import monitor
import preprocess_scale
import reference_recipe
import scale
import scoring
import serving
from automlops import keys
from automlops.config import Manifest
from automlops.events import S3Event
from automlops.local.runtime import open_runtime
from automlops.local.worker import Worker
from automlops.manifests import save_manifest
from automlops.stages.preprocess import preprocess

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "bank-additional-full.csv"
MANIFEST = dict(dataset="bank", target="y", positive="yes", drop=["duration"])
E2E_BUDGET_S = 10.0  # tuning budget for the upload-to-served timing
REPEATS = 5


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    libs = ", ".join(f"{p} {version(p)}" for p in ("polars", "pandas", "xgboost", "fastapi"))
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; {libs}"
    )


def best_of(fn: Callable[[], None], repeats: int = REPEATS) -> tuple[float, float]:
    """(min, median) wall seconds over `repeats` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def seed_workspace(home: Path) -> tuple[object, object]:
    """A workspace holding the manifest and the uploaded file; returns (runtime, event record)."""
    runtime = open_runtime(home)
    save_manifest(runtime.store, runtime.settings.buckets.data, Manifest(**MANIFEST))
    runtime.store.put(
        runtime.settings.buckets.data, keys.source_key("bank", DATA.name), DATA.read_bytes()
    )
    [message] = runtime.queue.receive(runtime.settings.queues.events)
    [record] = S3Event.model_validate_json(message.body).records
    return runtime, record


def main() -> int:
    if not DATA.exists():
        print(f"skipped: {DATA} not found (the benchmark needs ../shared/data)")
        return 0
    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="automlops-bench-"))

    # 1. Preprocessing: the reference's pandas recipe vs our stage, same file, same run.
    def reference() -> None:
        out = Path(tempfile.mkdtemp(dir=work))
        reference_recipe.preprocess(DATA, out)

    prepared = [seed_workspace(work / f"pre-{i}") for i in range(REPEATS)]
    pending = iter(prepared)

    def ours() -> None:
        runtime, record = next(pending)
        preprocess(record, runtime.ports())  # type: ignore[attr-defined]

    ref_min, ref_med = best_of(reference)
    our_min, our_med = best_of(ours)
    ratio = ref_med / our_med
    print(f"preprocess: reference {ref_med:.3f}s, ours {our_med:.3f}s -> {ratio:.1f}x faster")

    # 2. Upload to served model, through the worker, as `automlops run --until-idle` does.
    runtime = open_runtime(work / "e2e")
    start = time.perf_counter()
    save_manifest(
        runtime.store,
        runtime.settings.buckets.data,
        Manifest(**MANIFEST, time_budget_s=E2E_BUDGET_S),
    )
    runtime.store.put(
        runtime.settings.buckets.data, keys.source_key("bank", DATA.name), DATA.read_bytes()
    )
    Worker(runtime).run_until_idle()
    doc = runtime.registry.read("bank")
    elapsed = time.perf_counter() - start
    champion = doc.champion_version()
    if champion is None:
        print("no champion: the pipeline failed", runtime.runlog.list())
        return 1
    [run] = runtime.runlog.list("bank")
    stages = ", ".join(f"{s.name} {s.duration_s:.2f}s" for s in run.stages)
    print(f"upload to served model: {elapsed:.1f}s ({stages})")

    # 3. Quality: champion (scored through its endpoint) vs the reference model, same split.
    train = reference_recipe.read_parquet_bytes(
        runtime.store.get("automl-data", keys.split_key("bank", run.id, "train"))
    )
    test = reference_recipe.read_parquet_bytes(
        runtime.store.get("automl-data", keys.split_key("bank", run.id, "test"))
    )
    ref_auc = reference_recipe.auc_on_split(train, test)
    our_auc = champion.metrics["roc_auc"]
    print(f"test ROC AUC: champion {our_auc:.4f} vs reference recipe {ref_auc:.4f}")
    runtime.close()

    # 4. AutoML quality: our champion vs FLAML and AutoGluon, same budget, same rows.
    automl_section = automl_table.run(work / "automl")

    # 5. Scaling: 1x, 10x and 100x the bank file through the whole pipeline (bench/scale.py).
    scale_section = scale.run(work / "scale", ROOT / "docs" / "benchmarks-raw" / "scale")

    # 6. Serving: our server vs MLflow's under wrk, side by side (bench/serving.py).
    serving_section = serving.run(work / "serving", ROOT / "docs" / "benchmarks-raw" / "serving")

    # 7. The time budget: the train stage against --time-budget per data set (bench/budget.py).
    (work / "budget").mkdir()
    budget_section = budget.run(work / "budget")

    # 8. Reading at scale: the stage vs polars' sampled read + Parquet write, 100x the bank file.
    scale_read_section = preprocess_scale.run(work=work / "preprocess-scale")

    # 9. Messy variants of the bank file (European, currency, booleans...) vs the clean file.
    messy_section = messy_variants.run(work=work / "messy")

    # 10. Batch scoring (`automlops predict`) vs `mlflow models predict`, 10x and 100x.
    scoring_section = scoring.run(work / "scoring", (10, 100), 10, repeats=3)

    # 11. Explanations: their cost per row and per batch, per learner.
    explain_section = explain.section()

    # 12. Capture: single-row throughput with and without capturing every request.
    capture_section = capture.markdown(capture.run(10.0, 4, work / "capture"))

    # 13. The monitor stage on a day of captured traffic (1 M rows) vs the dict-per-row reader.
    (work / "monitor").mkdir()
    monitor_section = monitor.run(work / "monitor", 1_000_000, rounds=2)

    report = f"""# Benchmarks

Produced by `make bench` (`bench/run.py`); every figure below comes from one run, baseline and
contender side by side on the same machine.

Machine: {machine()}.

Data: `../shared/data/bank-additional-full.csv` (41,188 rows, `;`-separated, quoted strings),
manifest `--target y --positive yes --drop duration`.

## Preprocessing: our stage vs the reference's pandas recipe

| | median of {REPEATS} | best of {REPEATS} |
|---|---|---|
| reference recipe (pandas: read, derive, one-hot, split, write CSVs) \
| {ref_med:.3f} s | {ref_min:.3f} s |
| `preprocess` stage (sniff, profile, stratified split, fit transform, Parquet + schema) \
| {our_med:.3f} s | {our_min:.3f} s |
| **ratio** | **{ratio:.1f}x faster** | {ref_min / our_min:.1f}x |

## Upload to served model

Upload of the file to a champion serving it, through the local worker (the path of
`automlops run --until-idle`) with `--time-budget {E2E_BUDGET_S:.0f}`: **{elapsed:.1f} s**
({stages}). The train stage spends the budget tuning; everything else is pipeline overhead.

## Model quality on the same held-out rows

Test split of our run ({len(test):,} rows), the champion called through its HTTP endpoint with
raw rows vs the reference recipe (its features and fixed XGBoost settings) trained on the same
training rows:

| model | test ROC AUC |
|---|---|
| champion (v{champion.version}, {champion.learner}) | {our_auc:.4f} |
| reference recipe | {ref_auc:.4f} |

{automl_section}
{scale_section}

{serving_section}

{budget_section}

{scale_read_section}

{messy_section}

{scoring_section}

{explain_section}

{capture_section}

{monitor_section}"""
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "benchmarks.md").write_text(report)
    print("wrote docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
