"""`automlops demo`: the whole pipeline on data that ships with scikit-learn."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import polars as pl
from sklearn.datasets import load_breast_cancer

from automlops.local.runlog import RunRecord
from automlops.local.runtime import open_runtime
from automlops.local.worker import Worker, run_workers
from automlops.serving import wire
from automlops.usecases.models import headline
from automlops.usecases.upload import UploadOptions, upload


def breast_cancer_csv() -> bytes:
    """The Wisconsin breast cancer data (bundled with scikit-learn) as a CSV with string labels."""
    bunch = load_breast_cancer()
    frame = pl.DataFrame(bunch.data, schema=[str(n).replace(" ", "_") for n in bunch.feature_names])
    labels = [str(bunch.target_names[t]) for t in bunch.target]
    frame = frame.with_columns(pl.Series("diagnosis", labels))
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    return buffer.getvalue()


def run_demo(home: Path, echo: Callable[[str], None] = print) -> int:
    """Upload, run the four stages, serve, predict; returns a process exit code."""
    runtime = open_runtime(home)
    echo(f"workspace: {runtime.home}")
    dataset = "breast-cancer"
    data = breast_cancer_csv()
    options = UploadOptions(
        dataset=dataset, target="diagnosis", positive="malignant", task="binary", time_budget_s=10
    )
    done = upload(runtime.store, runtime.settings.buckets.data, "breast_cancer.csv", data, options)
    echo(f"uploaded {len(data):,} bytes to {done.bucket}/{done.key}")

    finished = []

    def on_end(record: RunRecord) -> None:
        finished.append(record)
        stages = ", ".join(f"{s.name} {s.duration_s or 0:.1f}s" for s in record.stages)
        echo(f"run {record.id}: {record.status} ({stages})")
        if record.error:
            echo(f"  error: {record.error}")

    try:
        run_workers([Worker(runtime, on_run_end=on_end)], until_idle=True)
        if not finished or finished[-1].status != "succeeded":
            echo("the demo run did not succeed")
            return 1
        doc = runtime.registry.read(dataset)
        champion = doc.champion_version()
        if champion is None:
            echo("no champion was promoted")
            return 1
        best = headline(champion)
        primary = "" if best is None else f"  {best[0]}={best[1]:.4f}"
        echo(f"champion: v{champion.version}{primary}  f1={champion.metrics.get('f1', 0):.4f}")
        # Raw rows as a caller would send them: the CSV's columns minus the target.
        rows = pl.read_csv(io.BytesIO(data)).drop("diagnosis").head(3).to_dicts()
        # Through the local model host: the server it started takes only its own token.
        answer = wire.invoke(runtime.host, dataset, rows)
        echo(f"POST {runtime.host.base_url()}/endpoints/{dataset}/invocations ->")
        for label, probability in zip(
            answer.labels(), answer.probability("malignant"), strict=True
        ):
            echo(f"  {label:<10} P(malignant)={probability:.3f}")
        report = runtime.home / runtime.settings.buckets.model_monitoring
        report_key = champion.report_key or ""
        echo(f"report: {report / report_key.replace('report.json', 'REPORT.md')}")
        echo(f"serve it yourself: automlops serve --home {runtime.home}")
        return 0
    finally:
        runtime.close()
