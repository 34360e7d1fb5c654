"""Our champion vs FLAML with the same time budget, training rows and held-out rows.

FLAML runs in its own virtualenv (`.venv-flaml`, made by `make bench`) so that its pinned
dependencies never leak into the project's environment.
"""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.datasets import load_diabetes, load_digits, load_wine
from sklearn.metrics import accuracy_score, roc_auc_score

from automlops import keys
from automlops.config import Manifest, Task
from automlops.local.runtime import open_runtime
from automlops.local.worker import Worker
from automlops.manifests import save_manifest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FLAML_PYTHON = ROOT / ".venv-flaml" / "bin" / "python"
METRIC = {Task.binary: "roc_auc", Task.multiclass: "accuracy", Task.regression: "rmse"}


@dataclass
class Case:
    name: str
    load: Callable[[], bytes | None]
    manifest: Manifest
    note: str


@dataclass
class Row:
    case: str
    task: Task
    rows: int
    test_rows: int
    budget_s: float
    metric: str
    ours: float
    ours_learner: str
    ours_train_s: float
    flaml: float
    flaml_learner: str
    flaml_s: float

    @property
    def ours_at_least_flaml(self) -> bool:
        if self.metric == "rmse":
            return self.ours <= self.flaml
        return self.ours >= self.flaml


def _csv(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    return buffer.getvalue()


def _sklearn(loader: Callable[..., object], target: str, labels: bool) -> Callable[[], bytes]:
    def load() -> bytes:
        bunch = loader()
        frame = pl.DataFrame(bunch.data, schema=[f"x{i}" for i in range(bunch.data.shape[1])])
        values = [f"class_{int(t)}" for t in bunch.target] if labels else bunch.target.tolist()
        return _csv(frame.with_columns(pl.Series(target, values)))

    return load


def _shared(name: str) -> Callable[[], bytes | None]:
    def load() -> bytes | None:
        path = SHARED / name
        return path.read_bytes() if path.exists() else None

    return load


def cases(budget_s: float, small_budget_s: float) -> list[Case]:
    return [
        Case(
            "bank-additional-full",
            _shared("bank-additional-full.csv"),
            Manifest(
                dataset="bank",
                target="y",
                positive="yes",
                drop=["duration"],
                time_budget_s=budget_s,
            ),
            "reference data, `--drop duration`",
        ),
        Case(
            "emp_attrition",
            _shared("emp_attrition.csv"),
            Manifest(dataset="attrition", target="Attrition", time_budget_s=budget_s),
            "UTF-8 BOM, constant and ID columns",
        ),
        Case(
            "sklearn digits",
            _sklearn(load_digits, "digit", labels=True),
            Manifest(dataset="digits", target="digit", time_budget_s=small_budget_s),
            "10 classes, not tuned on",
        ),
        Case(
            "sklearn wine",
            _sklearn(load_wine, "cultivar", labels=True),
            Manifest(dataset="wine", target="cultivar", time_budget_s=small_budget_s),
            "3 classes, 178 rows, not tuned on",
        ),
        Case(
            "sklearn diabetes",
            _sklearn(load_diabetes, "progression", labels=False),
            Manifest(dataset="diabetes", target="progression", time_budget_s=small_budget_s),
            "regression, not tuned on",
        ),
    ]


def run_case(case: Case, work: Path, seed: int = 0) -> Row | None:
    data = case.load()
    if data is None:
        print(f"  {case.name}: skipped (data absent)")
        return None
    runtime = open_runtime(work / case.manifest.dataset)
    save_manifest(runtime.store, runtime.settings.buckets.data, case.manifest)
    runtime.store.put(
        runtime.settings.buckets.data, keys.source_key(case.manifest.dataset, "upload.csv"), data
    )
    Worker(runtime).run_until_idle()
    [run] = runtime.runlog.list(case.manifest.dataset)
    champion = runtime.registry.read(case.manifest.dataset).champion_version()
    if champion is None:
        raise RuntimeError(f"{case.name}: no champion ({run.error})")
    task = Task(champion.task)
    metric = METRIC[task]
    train_s = next(s.duration_s for s in run.stages if s.name == "train") or 0.0

    # FLAML gets our training and validation rows (it holds out its own) and our test rows.
    target = case.manifest.target
    assert target is not None
    parts = {
        split: pl.read_parquet(
            io.BytesIO(runtime.store.get("automl-data", keys.split_key(run.dataset, run.id, split)))
        )
        for split in keys.SPLITS
    }
    runtime.close()
    train = pl.concat([parts["train"], parts["validation"]], how="vertical_relaxed")
    test = parts["test"]
    tmp = Path(tempfile.mkdtemp(dir=work))
    train.write_parquet(tmp / "train.parquet")
    test.write_parquet(tmp / "test.parquet")
    started = time.perf_counter()
    subprocess.run(
        [
            str(FLAML_PYTHON),
            str(ROOT / "bench" / "flaml_runner.py"),
            str(tmp / "train.parquet"),
            str(tmp / "test.parquet"),
            target,
            task.value,
            str(case.manifest.time_budget_s),
            str(seed),
            str(tmp / "out.json"),
        ],
        check=True,
    )
    flaml_wall = time.perf_counter() - started
    out = json.loads((tmp / "out.json").read_text())
    truth = test.get_column(target)
    if task is Task.binary:
        positive = champion_positive(work / case.manifest.dataset, case.manifest.dataset)
        column = out["classes"].index(positive)
        p = np.asarray(out["predictions"])[:, column]
        flaml_score = float(roc_auc_score((truth.cast(pl.String) == positive).to_numpy(), p))
    elif task is Task.multiclass:
        flaml_score = float(accuracy_score(truth.cast(pl.String).to_list(), out["predictions"]))
    else:
        y = truth.cast(pl.Float64).to_numpy()
        flaml_score = float(np.sqrt(np.mean((y - np.asarray(out["predictions"])) ** 2)))
    return Row(
        case=case.name,
        task=task,
        rows=sum(p.height for p in parts.values()),
        test_rows=test.height,
        budget_s=case.manifest.time_budget_s,
        metric=metric,
        ours=champion.metrics[metric],
        ours_learner=champion.learner,
        ours_train_s=train_s,
        flaml=flaml_score,
        flaml_learner=out["best_estimator"],
        flaml_s=flaml_wall,
    )


def champion_positive(home: Path, dataset: str) -> str:
    from automlops.ml.artifact import ModelArtifact

    runtime = open_runtime(home)
    entry = runtime.registry.read(dataset).champion_version()
    assert entry is not None
    meta = ModelArtifact.from_tar_gz(runtime.store.get(entry.artifact_bucket, entry.artifact_key))
    runtime.close()
    assert meta.metadata.target.positive is not None
    return meta.metadata.target.positive


def markdown(rows: list[Row]) -> str:
    lines = [
        "| data set | task | rows (test) | budget | metric | automlops | FLAML | ours ≥ FLAML |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.case} | {r.task.value} | {r.rows:,} ({r.test_rows:,}) | {r.budget_s:.0f} s "
            f"| {r.metric} | {r.ours:.4f} ({r.ours_learner}, train {r.ours_train_s:.0f} s) "
            f"| {r.flaml:.4f} ({r.flaml_learner}, {r.flaml_s:.0f} s wall) "
            f"| {'yes' if r.ours_at_least_flaml else '**no**'} |"
        )
    return "\n".join(lines)
