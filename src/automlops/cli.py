"""The `automlops` command line. Thin: parse options, call a use case (automlops.usecases),
print. `automlops aws ...` is the same over a deployed stage (automlops.aws.ops)."""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from automlops import command_line as cl
from automlops import keys
from automlops.aws.ops import aws_app
from automlops.config import MAX_EXPLAIN
from automlops.errors import AutomlopsError
from automlops.local.runlog import RunRecord
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.registry import ModelVersion
from automlops.usecases import dead_letters, promotion
from automlops.usecases.lineage import Lineage, trace
from automlops.usecases.models import headline, list_models
from automlops.usecases.runs import list_runs
from automlops.usecases.upload import UploadRefused
from automlops.usecases.upload import upload as upload_file

app = cl.typer_app("Drop a CSV in, get a tuned, evaluated model served over HTTP.")
dlq_app = typer.Typer(help="Dead-letter queues: list and redrive failed messages.")
app.add_typer(dlq_app, name="dlq")
app.add_typer(aws_app, name="aws")

Home = Annotated[
    Path | None,
    typer.Option("--home", help="Workspace directory (default $AUTOMLOPS_HOME or ./.automlops)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
AlertWebhook = Annotated[
    str | None,
    typer.Option(
        "--alert-webhook",
        help="URL that alerts are POSTed to as JSON (drift, quality, retrains, gate decisions, "
        "failed runs) for datasets whose manifest names none.",
    ),
]


def _runtime(home: Path | None) -> LocalRuntime:
    return open_runtime(home)


@app.command()
def init(home: Home = None) -> None:
    """Create the workspace: one folder per bucket, the queue and the run log."""
    runtime = _runtime(home)
    typer.echo(f"workspace ready at {runtime.home}")
    for bucket in runtime.settings.buckets.all():
        typer.echo(f"  bucket {bucket:<17} {runtime.home / bucket}")


@app.command()
def upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    dataset: cl.UploadDataset = None,
    target: cl.UploadTarget = None,
    positive: cl.UploadPositive = None,
    task: cl.UploadTask = None,
    drop: cl.UploadDrop = None,
    keep: cl.UploadKeep = None,
    time_budget: cl.UploadTimeBudget = None,
    home: Home = None,
) -> None:
    """Store FILE at data/<dataset>/<upload>/<file> (this triggers the pipeline) with its
    manifest."""
    runtime = _runtime(home)
    options = cl.upload_options(dataset, target, positive, task, drop, time_budget, keep=keep)
    with cl.refusals(UploadRefused):
        done = upload_file(runtime.store, runtime.settings.buckets.data, file.name, file, options)
    if done.target_detected is not None:
        typer.echo(
            f"target: {done.manifest.target} ({done.target_detected}; "
            "pass --target to choose another)"
        )
    elif done.manifest.target is not None:
        typer.echo(f"target: {done.manifest.target}")
    typer.echo(f"uploaded {file} -> {done.bucket}/{done.key} (dataset {done.dataset})")


def _format_run(run: RunRecord) -> str:
    stages = " · ".join(
        f"{s.name} {s.duration_s:.1f}s" if s.duration_s is not None else f"{s.name} …"
        for s in run.stages
    )
    parts = [f"{run.dataset:<16}", f"{run.status:<9}", stages]
    if run.model_version is not None:
        parts.append(f"v{run.model_version}")
    if run.headline_metric and run.headline_value is not None:
        parts.append(f"{run.headline_metric}={run.headline_value:.4f}")
    if run.note and run.status == "succeeded":
        parts.append(run.note.split(":")[0])
    if run.source and run.source.rsplit("/", 1)[-1].startswith("retrain-"):
        parts.append(f"(retrain: {run.source.rsplit('/', 1)[-1]})")
    line = "  ".join(parts)
    if run.error:
        line += f"\n    error: {run.error}"
    return line


@app.command()
def run(
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Stop when nothing is queued or running.")
    ] = False,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker threads sharing the queues.")
    ] = 1,
    home: Home = None,
) -> None:
    """Process pipeline events: a line per finished run; non-zero exit if any run failed."""
    import threading

    from automlops.local.worker import Worker, run_workers
    from automlops.progress import RunProgress

    runtime = _runtime(home)
    failed: list[str] = []
    display = RunProgress()
    lock = threading.Lock()  # workers report from their own threads

    def on_run_end(record: RunRecord) -> None:
        with lock:
            if record.status == "failed":
                failed.append(record.id)
            display.finished(record.id, _format_run(record))

    def on_progress(run_ref: keys.RunRef, stage: Any, text: str) -> None:
        with lock:
            display.update(run_ref, str(stage), text)

    pool = [Worker(runtime, on_run_end=on_run_end, on_progress=on_progress) for _ in range(workers)]
    try:
        with display:
            run_workers(pool, until_idle=until_idle)
    except KeyboardInterrupt:
        typer.echo("stopped; unfinished messages are redelivered on the next run", err=True)
    finally:
        runtime.close()
    if failed:
        raise typer.Exit(code=1)


def _upload_filename(source: str | None) -> str | None:
    """The person's own file name of a run's upload key (None when the run has no source or
    its source is not an upload's key)."""
    if source is None:
        return None
    try:
        return keys.parse_source_key(source).filename
    except AutomlopsError:
        return None


@app.command()
def predict(
    file: Annotated[Path, typer.Argument(dir_okay=False, help="CSV or Parquet file to score.")],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset whose model scores it.")],
    version: Annotated[
        int | None, typer.Option("--version", min=1, help="Model version (default: champion).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Where to write the predictions (default: beside FILE)."),
    ] = None,
    explain: Annotated[
        int | None,
        typer.Option(
            "--explain",
            min=1,
            max=MAX_EXPLAIN,
            help="Top-K feature contributions per row, by raw column, with the base value "
            f"(at most {MAX_EXPLAIN}; more than the model's columns means all of them; "
            "multiclass: the predicted class's).",
        ),
    ] = None,
    home: Home = None,
) -> None:
    """Score FILE through the bucket (score/<dataset>/) and write its predictions."""
    from automlops.serving.lean_imports import import_learner_libraries

    # First, while this process has no other thread: scoring needs the boosters, not the
    # scikit-learn, pandas and SciPy.stats they would bring (a second of start-up).
    import_learner_libraries()
    from automlops.local.worker import Worker
    from automlops.ml.batch import ScoreOptions, progress_share
    from automlops.usecases import scoring

    runtime = _runtime(home)
    try:
        with cl.refusals(scoring.ScoreRefused):
            if not file.is_file():
                raise scoring.ScoreRefused(f"{file}: no such file")
            options = ScoreOptions(version=version, explain=explain)
            sub = scoring.submit(runtime.store, runtime.settings, file, dataset, options)
        typer.echo(f"scoring {file} with {dataset} v{sub.version} (run {sub.run.run_id})", err=True)
        with _share_bar("scoring") as advance:

            def on_progress(run_ref: keys.RunRef, stage: Any, text: str) -> None:
                share = progress_share(text)
                if run_ref.run_id == sub.run.run_id and share is not None:
                    advance(share)

            Worker(runtime, on_progress=on_progress).run_until_idle()
            done = scoring.outcome(runtime.store, runtime.settings, runtime.runlog, sub)
            if done.lineage is not None:
                advance(1.0)
    finally:
        runtime.close()
    if done.lineage is None:
        raise cl.fail(f"scoring {file} {done.status}: {done.error or 'no predictions'}")
    target = output or scoring.default_output(file)
    scoring.save(runtime.store, done.lineage, target)
    lineage = done.lineage
    if lineage.missing_columns:
        missing = ", ".join(lineage.missing_columns)
        typer.echo(f"warning: not in {file.name}, scored as missing: {missing}", err=True)
    typer.echo(
        f"{lineage.output_rows:,} predictions -> {target}"
        + (
            f" ({lineage.error_rows:,} unreadable rows: see {lineage.errors_key})"
            if lineage.error_rows
            else ""
        )
    )


@contextmanager
def _share_bar(label: str) -> Iterator[Callable[[float], None]]:
    """Progress on stderr driven by the share done (0..1): a bar on a terminal, else a line
    per percent (logs, pipes); yields the setter."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        said: set[int] = set()

        def say(share: float) -> None:
            percent = int(share * 100)
            if percent not in said:
                said.add(percent)
                typer.echo(f"{label}: {percent}%", err=True)

        yield say
        return
    columns = (BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(f"[bold]{label}", *columns, console=console) as bar:
        task = bar.add_task(label, total=1.0)
        yield lambda share: bar.update(task, completed=share)


@app.command()
def runs(dataset: cl.DatasetFilter = None, as_json: AsJson = False, home: Home = None) -> None:
    """Pipeline runs, newest first."""
    with cl.refusals(ValueError):
        records = list_runs(_runtime(home).runlog, dataset)
    items = [
        {
            "id": r.id,
            "dataset": r.dataset,
            "source": r.source,
            "status": r.status,
            "error": r.error,
            "stages": [
                {"name": s.name, "status": s.status, "duration_s": s.duration_s} for s in r.stages
            ],
            "model_version": r.model_version,
            "duplicate_of": r.duplicate_of,
            "headline": None
            if r.headline_metric is None
            else {"metric": r.headline_metric, "value": r.headline_value},
            "note": r.note,
            "filename": _upload_filename(r.source),  # last: earlier keys keep their order
        }
        for r in records
    ]
    lines = (_format_run(record) for record in records)
    empty = "no runs yet: `automlops upload FILE` then `automlops run --until-idle`"
    cl.show(items, as_json, lines, empty=empty)


@app.command()
def models(dataset: cl.DatasetFilter = None, as_json: AsJson = False, home: Home = None) -> None:
    """Model versions per dataset with their status and evaluation metrics."""
    with cl.refusals(ValueError):
        listing = list_models(_runtime(home).registry, dataset)
    items = [
        {
            "dataset": item.dataset,
            "version": v.version,
            "status": v.status.value,
            "created_at": v.created_at,
            "task": v.task,
            "learner": v.learner,
            "metrics": v.metrics,
            "source": v.source_key,
            "run_id": v.run_id,
            "endpoint": v.endpoint,
            "report": v.report_key,
            "reason": v.last_reason,
        }
        for item in listing
        for v in item.versions
    ]
    lines = (_format_version(entry.dataset, v) for entry in listing for v in entry.versions)
    cl.show(items, as_json, lines, empty="no models yet")


def _format_version(dataset: str, v: ModelVersion) -> str:
    best = headline(v)
    metric = "" if best is None else f"{best[0]}={best[1]:.4f}"
    return (
        f"{dataset:<16} v{v.version:<3} {v.status.value:<10} "
        f"{v.learner:<8} {metric}  {v.last_reason or ''}"
    )


AllowedHosts = Annotated[
    str | None,
    typer.Option(
        "--allowed-hosts",
        help="Comma-separated Host names to answer (e.g. models.example.com,*.corp.example); "
        "others get 400. Default: 127.0.0.1, localhost, [::1] and --host.",
    ),
]


def _allowed_hosts(option: str | None, host: str) -> tuple[str, ...]:
    from automlops.serving.auth import default_allowed_hosts, parse_allowed_hosts

    return default_allowed_hosts(host) if option is None else parse_allowed_hosts(option)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            "--api-key-env",
            help="Environment variable holding an API key every route but /ping then requires "
            "(Authorization: Bearer <key> or X-API-Key).",
        ),
    ] = None,
    home: Home = None,
    allowed_hosts: AllowedHosts = None,
) -> None:
    """Serve every dataset's champion over HTTP (follows promotions without a restart)."""
    import gc

    import uvicorn

    from automlops.serving.auth import allow_hosts, api_key_from_env, require_api_key
    from automlops.serving.lean_imports import import_learner_libraries

    import_learner_libraries()  # first, while this process has no other thread
    with cl.refusals(ValueError):
        api_key = None if api_key_env is None else api_key_from_env(api_key_env)
        hosts = _allowed_hosts(allowed_hosts, host)
    runtime = _runtime(home)
    server = runtime.create_app()
    if api_key is not None:
        require_api_key(server, api_key)
    allow_hosts(server, hosts)  # added last: the outermost check
    loaded = server.state.models.preload()  # models in memory before the port opens
    gc.freeze()  # start-up objects out of the collector's way: no full scans mid-request
    auth = "API key required" if api_key else "no API key"
    typer.echo(
        f"serving {runtime.home} on http://{host}:{port} ({auth}; {len(loaded)} models loaded)",
        err=True,
    )
    uvicorn.run(
        server,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


@app.command()
def up(
    home: Home = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API and the dashboard (/ui).")] = 8080,
    workers: Annotated[
        int, typer.Option(min=0, help="Worker threads running the pipeline's stages.")
    ] = 1,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            "--api-key-env",
            help="Environment variable holding the API key that the API and the dashboard's "
            "actions then require.",
        ),
    ] = None,
    protect_ui: Annotated[
        bool, typer.Option("--protect-ui", help="Reading the dashboard needs the key too.")
    ] = False,
    allowed_hosts: AllowedHosts = None,
    secure_cookies: Annotated[
        bool,
        typer.Option(
            "--secure-cookies",
            help="Mark the dashboard's cookies Secure even over http (behind a TLS proxy).",
        ),
    ] = False,
    monitor_every: Annotated[
        float | None,
        typer.Option(
            "--monitor-every",
            help="Minutes between monitor runs over every champion (drift, live quality, "
            "alerts, retrain policy); off when not given.",
        ),
    ] = None,
    alert_webhook: AlertWebhook = None,
) -> None:
    """Workers, the inference API and the dashboard at /ui in one process; Ctrl-C stops."""
    from automlops.serving.auth import api_key_from_env
    from automlops.ui.up import UpOptions, run_up

    with cl.refusals(ValueError):
        api_key = None if api_key_env is None else api_key_from_env(api_key_env)
        options = UpOptions(
            home=home,
            host=host,
            port=port,
            workers=workers,
            api_key=api_key,
            protect_ui=protect_ui,
            allowed_hosts=_allowed_hosts(allowed_hosts, host),
            secure_cookies=secure_cookies,
            monitor_every_min=monitor_every,
            alert_webhook=alert_webhook,
        )
    raise typer.Exit(code=run_up(options, echo=lambda line: typer.echo(line, err=True)))


@app.command()
def promote(
    dataset: str,
    version: int,
    reason: cl.Reason = "promoted by operator",
    home: Home = None,
) -> None:
    """Make VERSION the champion of DATASET."""
    with cl.refusals(ValueError, AutomlopsError):
        promotion.promote(_runtime(home).registry, dataset, version, reason)
    typer.echo(f"{dataset} v{version} is champion")


@app.command()
def rollback(dataset: str, home: Home = None) -> None:
    """Serve the previous champion of DATASET again."""
    with cl.refusals(ValueError, AutomlopsError):
        restored = promotion.rollback(_runtime(home).registry, dataset, "rolled back by operator")
    typer.echo(f"{dataset} v{restored.version} is champion again")


@app.command()
def monitor(
    dataset: str,
    hours: Annotated[
        float, typer.Option(min=0.01, help="Look at the captured traffic of the last HOURS.")
    ] = 24.0,
    as_json: AsJson = False,
    alert_webhook: AlertWebhook = None,
    home: Home = None,
) -> None:
    """Compare DATASET's served traffic and returned labels with what its champion learned
    (drift, volume, refusals, live metrics); the report goes to the monitoring bucket. Alerts
    go to the webhook, and the manifest's retrain policy may start a retrain."""
    from datetime import timedelta

    from automlops.usecases.alerts import AlertSender
    from automlops.usecases.loop import turn

    runtime = _runtime(home)
    ports = runtime.ports()
    sender = AlertSender(alert_webhook)
    try:
        with cl.refusals(ValueError, AutomlopsError):
            done = turn(ports, dataset, since=ports.clock() - timedelta(hours=hours), sender=sender)
    finally:
        sender.close()
    result = done.monitor
    report = result.report
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    typer.echo(
        f"{dataset} v{report.champion}: {report.requests} requests, {report.rows} rows, "
        f"{report.errors} refused; labels {report.labels.matched} matched, "
        f"{report.labels.duplicates} duplicates, {report.labels.unknown} unknown ids"
    )
    if report.live is not None:
        live = report.live
        typer.echo(
            f"live {live.metric} {live.value:.4f} [{live.low:.4f}, {live.high:.4f}] on "
            f"{live.rows} rows (test split: {live.test_value})"
        )
    for line in report.alerts or ["no alerts"]:
        typer.echo(f"  {line}")
    decision = done.decision
    if decision is not None:
        for reason in decision.reasons:
            typer.echo(f"  retrain trigger: {reason}")
        if decision.held_back:
            typer.echo(f"  retrain held back: {decision.held_back}")
    if done.upload is not None:
        typer.echo(f"retraining: uploaded {done.upload.bucket}/{done.upload.key}")
    bucket = runtime.settings.buckets.model_monitoring
    typer.echo(f"report: {runtime.home / bucket / result.html_key}")


@app.command()
def lineage(dataset: str, version: int, as_json: AsJson = False, home: Home = None) -> None:
    """Trace VERSION of DATASET: upload -> splits -> training and trials -> artifact -> reports
    -> decisions."""
    runtime = _runtime(home)
    with cl.refusals(ValueError, AutomlopsError):
        traced = trace(runtime.store, runtime.settings, dataset, version)
    if as_json:
        typer.echo(json.dumps(traced.model_dump(mode="json"), indent=2))
    else:
        typer.echo(_format_lineage(traced), nl=False)


def _format_lineage(traced: Lineage) -> str:
    """The lineage for people: one block per step, in pipeline order."""
    champion = " (serving)" if traced.is_champion else ""
    lines = [f"{traced.dataset} v{traced.version}: {traced.status.value}{champion}", ""]
    lines += _trigger_lines(traced)
    lines += _data_lines(traced)
    lines += _training_lines(traced)
    lines += _artifact_lines(traced)
    lines.append("decisions")
    for decision in traced.decisions:
        lines.append(f"  {decision.at}  {decision.status.value:<9} {decision.reason}")
    if not traced.decisions:
        lines.append("  none yet")
    return "\n".join(lines) + "\n"


def _trigger_lines(traced: Lineage) -> list[str]:
    trigger = traced.trigger
    if trigger is None:
        return []
    lines = [
        f"retrain    v{trigger.champion}'s traffic {trigger.window_start} to "
        f"{trigger.window_end}: {trigger.labelled_rows} labelled rows"
    ]
    lines += [f"           because {reason}" for reason in trigger.reasons]
    if trigger.monitor_report:
        lines.append(f"           monitor {trigger.monitor_report}")
    return lines


def _data_lines(traced: Lineage) -> list[str]:
    source, processed = traced.source, traced.processed
    lines = [
        f"source     {source.bucket}/{source.key}",
        f"           sha256 {source.sha256}",
        f"processed  {processed.bucket}/{processed.schema_key}",
    ]
    lines += [f"           {name:<10} {key}" for name, key in processed.splits.items()]
    if processed.drift:
        lines.append(f"           {'drift':<10} {processed.drift}")
    return lines


def _training_lines(traced: Lineage) -> list[str]:
    training = traced.training
    trials = training.trials
    states = Counter(str(trial.get("state", "?")) for trial in trials)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    lines = [
        f"training   run {training.run_id} at {training.created_at}",
        f"           learner {training.learner}, {len(trials)} trials"
        + (f" ({counts})" if counts else ""),
    ]
    members = training.params.get("members") or []
    if members:
        lines.append(
            "           members "
            + ", ".join(
                f"{m.get('learner', '?')} #{m.get('trial', '?')} {m.get('weight', 0):.2f}"
                for m in members
            )
        )
    for trial in trials[:20]:
        score = trial.get("score")
        shown = "-" if score is None else f"{score:.4f}"
        lines.append(
            f"           #{trial.get('number', '?'):<3} {trial.get('learner', '?'):<9} "
            f"{trial.get('state', '?'):<9} score {shown}"
        )
    if len(trials) > 20:
        lines.append(f"           … {len(trials) - 20} more (--json lists all)")
    return lines


def _artifact_lines(traced: Lineage) -> list[str]:
    artifact, evaluation = traced.artifact, traced.evaluation
    lines = [f"artifact   {artifact.bucket}/{artifact.key}"]
    if artifact.endpoint:
        lines.append(f"           endpoint {artifact.endpoint}")
    if not evaluation:
        return [*lines, "reports    not evaluated yet"]
    return [
        *lines,
        f"reports    {evaluation.bucket}/{evaluation.report_html}",
        f"           {evaluation.bucket}/{evaluation.report_json}",
        f"           {len(evaluation.plots)} plots",
    ]


@dlq_app.command("list")
def dlq_list(as_json: AsJson = False, home: Home = None) -> None:
    """Messages in the dead-letter queues."""
    runtime = _runtime(home)
    items = cl.dead_letter_documents(
        dead_letters.list_dead_letters(runtime.queue, runtime.settings.queues.served)
    )
    lines = (f"{item['id']}  {item['source_queue']}  {item['error']}" for item in items)
    cl.show(items, as_json, lines, empty="dead-letter queues are empty")


@dlq_app.command("redrive")
def dlq_redrive(
    message_id: cl.MessageId = None, all_: cl.AllMessages = False, home: Home = None
) -> None:
    """Move dead-lettered messages back to their queue."""
    target = cl.redrive_target(message_id, all_)
    runtime = _runtime(home)
    with cl.refusals(AutomlopsError):
        moved = dead_letters.redrive(runtime.queue, runtime.settings.queues.served, target)
    typer.echo(f"redrove {moved} message(s)")


@app.command()
def demo(
    home: Annotated[
        Path | None, typer.Option("--home", help="Workspace (default: a new temporary one).")
    ] = None,
    loop: Annotated[
        bool,
        typer.Option(
            "--loop",
            help="Then close the loop: serve, send traffic, drift it, send labels, monitor, "
            "retrain by policy and let the gate promote a new champion.",
        ),
    ] = False,
    alert_webhook: AlertWebhook = None,
) -> None:
    """Self-contained demo: sample data -> pipeline -> served model -> predictions."""
    from automlops.demo import run_demo, run_demo_loop

    workspace = home or Path(tempfile.mkdtemp(prefix="automlops-demo-"))
    if loop:
        sys.exit(run_demo_loop(workspace, echo=typer.echo, alert_webhook=alert_webhook))
    sys.exit(run_demo(workspace, echo=typer.echo))


if __name__ == "__main__":
    app()
