"""The monitor stage on a day of captured traffic: `automlops monitor` over 1 M served rows.

A bank-marketing champion is trained through the real pipeline; then a day of its traffic is
written as the inference server writes it (`serving.capture.capture_line`, gzip JSONL under
`keys.capture_key`, one object per hour): one-row JSON requests drawn from the bank file, each
with the champion's own answer, and labels (the file's `y`) for a share of them. `automlops
monitor bank` then runs in a child process, timed (wall) with its peak RSS (VmHWM), as this
tree has it and, in the same run on the same workspace, as the baseline revision has it (the
dict-per-row reader), so the figure is a ratio and the two reports can be compared.

Run: `python bench/monitor.py [--rows 1000000] [--rounds 2]`; writes
docs/benchmarks-monitor.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "bank-additional-full.csv"
OUT = ROOT / "docs" / "benchmarks-monitor.md"
DATASET = "bank"
# The last revision whose monitor held captured rows as a dict each (the baseline).
BASELINE_REV = "c23b0246054bdb62c8354fa835153b196face011"
LABELLED_SHARE = 0.05  # rows whose label comes back
TRAIN_BUDGET_S = 5.0


def train(home: Path) -> Any:
    """The bank champion, through the real pipeline (a short budget: the model is not the
    subject); its registry version."""
    from automlops import keys
    from automlops.config import Manifest
    from automlops.local.runtime import open_runtime
    from automlops.local.worker import Worker
    from automlops.manifests import save_manifest

    runtime = open_runtime(home)
    manifest = Manifest(
        dataset=DATASET, target="y", positive="yes", drop=["duration"], time_budget_s=TRAIN_BUDGET_S
    )
    save_manifest(runtime.store, runtime.settings.buckets.data, manifest)
    runtime.store.put(
        runtime.settings.buckets.data, keys.source_key(DATASET, DATA.name), DATA.read_bytes()
    )
    Worker(runtime).run_until_idle()
    champion = runtime.registry.read(DATASET).champion_version()
    runtime.close()
    if champion is None:
        raise RuntimeError("the pipeline left no champion")
    return champion


def answers(home: Path, champion: Any, rows: list[dict[str, Any]]) -> list[bytes]:
    """The champion's JSON answer to a one-row request of each row, as the server answers."""
    import orjson

    from automlops.local.runtime import open_runtime
    from automlops.ml.predictor import Predictor

    runtime = open_runtime(home)
    artifact = runtime.store.get(champion.artifact_bucket, champion.artifact_key)
    runtime.close()
    predictor = Predictor.from_bytes(artifact)
    predicted = predictor.predict_rows(rows)
    assert predicted.proba is not None and predicted.label_index is not None
    labels = predictor.labels
    return [
        orjson.dumps(
            {
                "model_version": str(champion.version),
                "predictions": [
                    {
                        "label": labels[int(i)],
                        "probabilities": dict(zip(labels, map(float, p), strict=True)),
                    }
                ],
            }
        )
        for i, p in zip(predicted.label_index, predicted.proba, strict=True)
    ]


def write_day(home: Path, champion: Any, total: int, seed: int = 0) -> dict[str, Any]:
    """A day of one-row requests ending now, in the server's capture layout (one object an
    hour), and a labels batch for LABELLED_SHARE of them; what was written."""
    import polars as pl

    from automlops import keys
    from automlops.local.runtime import open_runtime
    from automlops.serving import wire
    from automlops.serving.capture import Captured, capture_line

    frame = pl.read_csv(DATA, separator=";", infer_schema_length=None)
    truth = frame["y"].to_list()
    rows = frame.drop("y").to_dicts()
    bodies = [wire.json_body([row]) for row in rows]
    answered = answers(home, champion, rows)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(rows), total)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=24)
    runtime = open_runtime(home)
    bucket = runtime.settings.buckets.model_monitoring
    started = time.perf_counter()
    compressed = 0
    for hour in range(24):  # requests evenly spread: one every 86400 / total seconds
        first, last = hour * total // 24, (hour + 1) * total // 24
        lines = [
            capture_line(
                Captured(
                    DATASET,
                    champion.version,
                    f"{i:032x}",  # hex, as generated inference ids are
                    start.timestamp() + i * 86400 / total,
                    wire.JSON,
                    bodies[pick],
                    answered[pick],
                    wire.JSON,
                ),
                f"e{i}",
            )
            for i, pick in zip(range(first, last), picks[first:last].tolist(), strict=True)
        ]
        data = gzip.compress(b"".join(lines), compresslevel=1)  # as the server compresses
        key = keys.capture_key(DATASET, champion.version, start + timedelta(hours=hour), "p0")
        runtime.store.put(bucket, key, data)
        compressed += len(data)
    labelled = rng.choice(total, int(total * LABELLED_SHARE), replace=False)
    records = [
        wire.LabelRecord(
            id=f"{i:032x}", label=truth[picks[i]], received_at=end.isoformat(), source="bench"
        )
        for i in labelled.tolist()
    ]
    runtime.store.put(bucket, keys.labels_key(DATASET, end, "bench"), wire.label_lines(records))
    runtime.close()
    return {
        "rows": total,
        "objects": 24,
        "gzip_mb": compressed / 2**20,
        "labels": len(records),
        "write_s": time.perf_counter() - started,
    }


def baseline_tree(work: Path) -> Path:
    """The baseline revision's src/ (git archive), to run its CLI beside ours."""
    out = work / "baseline"
    out.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", BASELINE_REV, "src"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out / "src"


# The child reports its own peak RSS (VmHWM, reset at exec) on leaving: wait4's ru_maxrss
# would also count the memory of this process, which the child was forked from.
_CHILD = """
import atexit, sys
def _peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            sys.stderr.write("PEAK_KB " + line.split()[1] + "\\n")
atexit.register(_peak)
from automlops.cli import app
app()
"""


def time_monitor(home: Path, src: Path) -> dict[str, Any]:
    """`automlops monitor bank --json` with `src` first on the path: wall seconds, peak RSS
    and the report."""
    args = ["monitor", DATASET, "--home", str(home), "--hours", "25", "--json"]
    env = {**os.environ, "PYTHONPATH": str(src)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], env=env, capture_output=True, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"automlops monitor failed: {done.stderr.decode()[-2000:]}")
    peak = [line for line in done.stderr.decode().splitlines() if line.startswith("PEAK_KB ")]
    return {
        "wall": wall,
        "peak_rss": int(peak[-1].split()[1]) * 1024,
        "report": json.loads(done.stdout),
    }


def essence(report: dict[str, Any]) -> dict[str, Any]:
    """What both readers must agree on (the run's own time and key aside)."""
    drift = report.get("data_drift") or {}
    live = report.get("live") or {}
    return {
        "requests": report["requests"],
        "rows": report["rows"],
        "errors": report["errors"],
        "volume": report["volume"],
        "drifted": drift.get("drifted"),
        "psi": {c["name"]: round(c["psi"], 12) for c in drift.get("columns", [])},
        "prediction_psi": (report.get("prediction_drift") or {}).get("psi"),
        "matched": report["labels"]["matched"],
        "unknown": report["labels"]["unknown"],
        "live": (live.get("metric"), live.get("value"), live.get("low"), live.get("high")),
    }


def run(work: Path, total: int = 1_000_000, rounds: int = 2, baseline: bool = True) -> str:
    """Train, write the day, time ours (`rounds` times) and the baseline (once); the section."""
    home = work / "home"
    champion = train(home)
    day = write_day(home, champion, total)
    ours_src = ROOT / "src"
    ours = [time_monitor(home, ours_src) for _ in range(rounds)]
    base = time_monitor(home, baseline_tree(work)) if baseline else None
    return markdown(champion, day, ours, base, _load())


def _load() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def markdown(
    champion: Any,
    day: dict[str, Any],
    ours: list[dict[str, Any]],
    base: dict[str, Any] | None,
    load: str,
) -> str:
    """The section docs/benchmarks.md includes."""
    mb = 2**20
    wall = statistics.median(r["wall"] for r in ours)
    peak = max(r["peak_rss"] for r in ours)
    report = ours[0]["report"]
    live = report.get("live") or {}
    drifted = (report.get("data_drift") or {}).get("drifted")
    walls = ", ".join(f"{r['wall']:.1f}" for r in ours)
    rows = [
        "| monitor | wall (each run) | peak RSS |",
        "|---|---|---|",
        f"| this tree (frames per object, on every core) | {walls} s | {peak / mb:,.0f} MB |",
    ]
    verdict = ""
    if base is not None:
        same = all(essence(r["report"]) == essence(base["report"]) for r in ours)
        rows.append(
            f"| baseline {BASELINE_REV[:7]} (a dict per row) | {base['wall']:.1f} s "
            f"| {base['peak_rss'] / mb:,.0f} MB |"
        )
        verdict = (
            f"\nThis tree takes **{wall / base['wall']:.2f}x** the baseline's time "
            f"(median of its runs) and **{peak / base['peak_rss']:.2f}x** its peak "
            f"memory; the two reports agree on every figure compared (volume per hour, rows, "
            f"drifted columns and each column's PSI, prediction drift, label join, live metric "
            f"and interval): **{'yes' if same else 'NO'}**.\n"
        )
    return f"""## The monitor on a day of captured traffic

`automlops monitor {DATASET}` (a child process: wall time, and its peak RSS, VmHWM) over a day
of traffic of the bank-marketing champion (v{champion.version}, {champion.learner}): {day["rows"]:,}
one-row JSON requests drawn from the bank file, each with the champion's own answer, written as
the inference server writes them ({day["objects"]} gzip JSONL objects, one an hour,
{day["gzip_mb"]:,.0f} MB), and {day["labels"]:,} labels ({LABELLED_SHARE:.0%}) in one batch.
The run covers data drift of the {day["rows"]:,} rows against the training split, prediction
drift, volume per hour, the label join and the live ROC AUC with its bootstrap interval.

{chr(10).join(rows)}
{verdict}
Report of the run: {report["rows"]:,} rows in {len(report["volume"])} hours, drifted columns
{drifted}, live {live.get("metric")} {live.get("value", float("nan")):.4f} on
{live.get("rows", 0):,} labelled rows (test split {live.get("test_value")}).

Machine: shared with other work during the run (load average {load}); ours and the baseline
ran one after the other on the same workspace, so the ratio compares the same data.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    if not DATA.exists():
        print(f"skipped: {DATA} not found (the benchmark needs ../shared/data)")
        return
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        section = run(Path(tmp), args.rows, args.rounds, not args.no_baseline)
    OUT.write_text(section)
    print(section)


if __name__ == "__main__":
    main()
