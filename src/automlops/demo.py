"""`automlops demo`: the whole pipeline on data that ships with scikit-learn."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import polars as pl
import uvicorn
from fastapi import FastAPI
from sklearn.datasets import load_breast_cancer

from automlops.config import RetrainPolicy
from automlops.local.runlog import RunRecord
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.local.worker import Worker, run_workers
from automlops.manifests import load_manifest, save_manifest
from automlops.serving import wire
from automlops.usecases.alerts import AlertSender
from automlops.usecases.loop import LoopTurn, notify_run, turn
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


# The loop demo's drift: benign tumours measured three times larger (a miscalibrated scanner),
# which the champion reads as malignant; its live quality drops and these columns drift.
SHIFTED = ("mean_radius", "mean_area", "worst_perimeter", "mean_texture")
TARGET = "diagnosis"


def loop_policy() -> RetrainPolicy:
    """The loop demo's retrain policy: drift of the scanner's columns or a live ROC AUC drop,
    retraining on the labelled rows appended to the champion's training file."""
    return RetrainPolicy(
        on_drift=["mean_radius", "mean_area"],
        on_metric_drop=0.05,
        min_labels=30,
        with_training_file=True,
        cooldown_hours=1.0,
    )


@dataclass
class LoopOutcome:
    """What the loop scenario saw: the monitor turn of each phase and the champions."""

    stable: LoopTurn
    drifted: LoopTurn
    champion_before: int
    champion_after: int | None


class _Server:
    """The workspace's inference app on an ephemeral loopback port, in a thread."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self) -> _Server:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the inference server did not start")
            time.sleep(0.05)
        return self

    def flush_capture(self) -> None:
        capture = getattr(self.app.state, "capture", None)
        if capture is not None:
            capture.flush()

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def _send(client: httpx.Client, dataset: str, frame: pl.DataFrame, chunk: int = 20) -> list[str]:
    """POST `frame`'s rows (target dropped) as invocations; the feedback id of each row."""
    ids: list[str] = []
    for start in range(0, frame.height, chunk):
        part = frame.slice(start, chunk).drop(TARGET)
        answer = client.post(
            f"/endpoints/{dataset}/invocations",
            content=wire.json_body(part.to_dicts()),
            headers={"content-type": wire.JSON},
        )
        answer.raise_for_status()
        ident = answer.headers[wire.INFERENCE_ID_HEADER]
        ids += [ident] if part.height == 1 else [f"{ident}#{i}" for i in range(part.height)]
    return ids


def _label(client: httpx.Client, dataset: str, ids: list[str], labels: list[str]) -> None:
    body = [{"id": i, "label": y} for i, y in zip(ids, labels, strict=True)]
    client.post(f"/endpoints/{dataset}/feedback", json=body).raise_for_status()


def drifted(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with every measurement of its benign rows three times larger: whatever columns
    the champion learnt from, benign tumours now look malignant to it (SHIFTED are the
    columns the policy watches)."""
    benign = pl.col(TARGET) == "benign"
    measured = [c for c, t in frame.schema.items() if c != TARGET and t.is_numeric()]
    return frame.with_columns(
        pl.when(benign).then(pl.col(c) * 3).otherwise(pl.col(c)).alias(c) for c in measured
    )


def loop_scenario(
    runtime: LocalRuntime,
    dataset: str,
    data: bytes,
    echo: Callable[[str], None] = print,
    rows: int = 200,
    sender: AlertSender | None = None,
) -> LoopOutcome:
    """The closed loop on a workspace whose `dataset` has a champion trained on `data`: serve,
    send stable traffic and its labels (the monitor finds nothing), then drifted traffic and its
    labels (the monitor flags it, the policy retrains), run the pipeline, and let the gate
    decide on the new model."""
    ports = runtime.ports()
    bucket = runtime.settings.buckets.data
    manifest = load_manifest(runtime.store, bucket, dataset)
    save_manifest(runtime.store, bucket, manifest.model_copy(update={"retrain": loop_policy()}))
    before = runtime.registry.read(dataset).champion
    if before is None:
        raise ValueError(f"the loop scenario needs a champion of {dataset!r}")
    frame = pl.read_csv(io.BytesIO(data))
    with _Server(runtime.create_app()) as server, httpx.Client(base_url=server.url) as client:
        echo(f"serving on {server.url}; champion v{before}")
        started = ports.clock()
        stable = frame.sample(rows, seed=1)
        _label(client, dataset, _send(client, dataset, stable), stable[TARGET].to_list())
        server.flush_capture()
        first = turn(ports, dataset, since=started, sender=sender)
        echo(_describe("stable traffic", first))
        # A monitor run's folder is named to the second (keys.monitor_prefix): the next run
        # waits for a new second so it cannot overwrite this one's report.
        while ports.clock().replace(microsecond=0) <= _stamped(first):
            time.sleep(0.05)
        shifted_from = ports.clock()
        shifted = drifted(frame.sample(rows, seed=2))
        _label(client, dataset, _send(client, dataset, shifted), shifted[TARGET].to_list())
        server.flush_capture()
        second = turn(ports, dataset, since=shifted_from, sender=sender)
        echo(_describe("drifted traffic", second))

    def on_end(record: RunRecord) -> None:
        echo(f"run {record.id} ({record.source}): {record.status}; {record.note or record.error}")
        if sender is not None:
            notify_run(ports, sender, record)

    if second.upload is not None:
        run_workers([Worker(runtime, on_run_end=on_end)], until_idle=True)
    after = runtime.registry.read(dataset).champion
    echo(f"champion: v{before} -> v{after}")
    return LoopOutcome(stable=first, drifted=second, champion_before=before, champion_after=after)


def _stamped(done: LoopTurn) -> datetime:
    """The second a turn's monitor run is filed under."""
    return datetime.fromisoformat(done.monitor.report.created_at).replace(microsecond=0)


def _describe(phase: str, done: LoopTurn) -> str:
    report = done.monitor.report
    lines = [f"{phase}: {report.rows} rows monitored, {report.labels.matched} labelled"]
    if report.live is not None:
        live = report.live
        lines.append(
            f"  live {live.metric} {live.value:.3f} [{live.low:.3f}, {live.high:.3f}] "
            f"(test split {live.test_value})"
        )
    lines += [f"  alert: {a}" for a in report.alerts] or ["  no alerts"]
    decision = done.decision
    if decision is not None and decision.reasons:
        lines += [f"  retrain trigger: {r}" for r in decision.reasons]
    if decision is not None and decision.held_back:
        lines.append(f"  held back: {decision.held_back}")
    if done.upload is not None:
        lines.append(f"  retrain upload: {done.upload.bucket}/{done.upload.key}")
    return "\n".join(lines)


def run_demo_loop(
    home: Path, echo: Callable[[str], None] = print, alert_webhook: str | None = None
) -> int:
    """`automlops demo --loop`: the demo's pipeline, then the closed loop on its champion."""
    code = run_demo(home, echo)
    if code != 0:
        return code
    runtime = open_runtime(home)
    sender = AlertSender(alert_webhook)
    try:
        outcome = loop_scenario(runtime, "breast-cancer", breast_cancer_csv(), echo, sender=sender)
        if outcome.champion_after in (None, outcome.champion_before):
            echo("the gate kept the old champion")
            return 1
        bucket = runtime.home / runtime.settings.buckets.model_monitoring
        echo(f"monitor report: {bucket / outcome.drifted.monitor.html_key}")
        echo(f"lineage: automlops lineage breast-cancer {outcome.champion_after} --home {home}")
        return 0
    finally:
        sender.close()
        runtime.close()
