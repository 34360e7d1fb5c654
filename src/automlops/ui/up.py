"""`automlops up`: worker threads, the data-folder watcher, the inference API, the dashboard and
(with --monitor-every) the monitor's schedule, in one process on one port. Ctrl-C stops it; a
message a worker held is redelivered later by the queue (visibility timeout), so nothing is lost."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from automlops.local.runlog import RunRecord
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.local.watcher import DataWatcher
from automlops.local.worker import Worker, WorkerPool
from automlops.serving.auth import (
    LOOPBACK_HOSTS,
    OPEN_PATHS,
    ApiKeyMiddleware,
    allow_hosts,
    default_allowed_hosts,
)
from automlops.ui import PREFIX, Guard, LiveProgress, mount_ui
from automlops.usecases.alerts import AlertSender
from automlops.usecases.loop import notify_run, turn_all

log = logging.getLogger(__name__)

# Besides /ping (serving/auth.py's open path): the browser's icon request.
_OPEN_PATHS = frozenset({"/favicon.ico"})


def check_protection(api_key: str | None, protect_ui: bool) -> None:
    """--protect-ui makes reading need the API key, so it needs one."""
    if protect_ui and api_key is None:
        raise ValueError("--protect-ui needs --api-key-env VAR: it needs an API key to ask for")


@dataclass
class UpOptions:
    """`automlops up`'s options, checked for consistency when built."""

    home: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    api_key: str | None = None
    protect_ui: bool = False
    watch_interval_s: float = 1.0
    stop_grace_s: float = 5.0
    # Host names the server answers (empty: loopback and `host`, serving.auth's default).
    allowed_hosts: tuple[str, ...] = ()
    secure_cookies: bool = False
    # Minutes between monitor turns over every champion (None: no schedule).
    monitor_every_min: float | None = None
    # Where alerts go for datasets whose manifest names no webhook (None: nowhere).
    alert_webhook: str | None = None

    def __post_init__(self) -> None:
        check_protection(self.api_key, self.protect_ui)
        if self.monitor_every_min is not None and not self.monitor_every_min > 0:
            raise ValueError("--monitor-every must be a positive number of minutes")
        if self.alert_webhook is not None and not self.alert_webhook.startswith(
            ("http://", "https://")
        ):
            raise ValueError("--alert-webhook must be an http:// or https:// URL")
        if not self.allowed_hosts:
            self.allowed_hosts = default_allowed_hosts(self.host)


def build_app(
    runtime: LocalRuntime,
    *,
    api_key: str | None = None,
    protect_ui: bool = False,
    progress: LiveProgress | None = None,
    allowed_hosts: Iterable[str] | None = None,
    secure_cookies: bool = False,
) -> FastAPI:
    """The inference app with the dashboard at /ui; with a key, both need it to act.

    `allowed_hosts`: the Host names answered (400 to others) and that a form's Origin must
    name; None only for an app reached in-process (tests), `up` always gives them.
    """
    check_protection(api_key, protect_ui)
    hosts = None if allowed_hosts is None else frozenset(h.lower() for h in allowed_hosts)
    app = runtime.create_app()
    guard = Guard(
        api_key=api_key,
        protect_reads=protect_ui,
        allowed_hosts=hosts,
        secure_cookies=secure_cookies,
    )
    mount_ui(app, runtime, guard=guard, progress=progress)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        # Browsers ask for it on every page without an icon of its own (report.html): answer
        # "nothing here" rather than a 404 in the console.
        return Response(status_code=204)

    if api_key is not None:
        _require_key_for_api(app, api_key)
    if hosts is not None:
        allow_hosts(app, sorted(hosts))  # added last: the outermost check
    return app


class _ApiKeyOutsideDashboard(ApiKeyMiddleware):
    """`automlops serve --api-key-env`'s guard for every route but the dashboard's, which checks
    the same key itself (a sign-in cookie or the header) and answers with pages, not JSON."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == PREFIX or path.startswith(f"{PREFIX}/")):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _require_key_for_api(app: FastAPI, api_key: str) -> None:
    app.add_middleware(
        _ApiKeyOutsideDashboard, api_key=api_key, open_paths=OPEN_PATHS | _OPEN_PATHS
    )


def monitor_schedule(
    runtime: LocalRuntime, stop: threading.Event, every_s: float, sender: AlertSender
) -> None:
    """Run a loop turn (monitor, alerts, retrain policy) over every champion each `every_s`
    seconds until `stop` is set; the first turn comes one period after start."""
    while not stop.wait(every_s):
        try:
            sweep = turn_all(runtime.ports(), sender=sender)
        except Exception:  # the schedule outlives a bad turn (turn_all logs per dataset)
            log.exception("the monitor's turn failed")
            continue
        retrains = [d for d, t in sweep.turns.items() if t.upload is not None]
        log.info(
            "monitored %d dataset(s) (%d failed); retraining %s",
            len(sweep.turns),
            len(sweep.failures),
            retrains or "none",
        )


class Background:
    """The worker pool, the watcher and the monitor's schedule, stopped together."""

    def __init__(
        self,
        runtime: LocalRuntime,
        *,
        workers: int,
        progress: LiveProgress,
        watch_interval_s: float = 1.0,
        monitor_every_s: float | None = None,
        sender: AlertSender | None = None,
    ) -> None:
        self.stop_event = threading.Event()
        self.sender = sender or AlertSender()
        ports = runtime.ports()

        def on_run_end(record: RunRecord) -> None:
            progress.finished(record)
            notify_run(ports, self.sender, record)  # queued: never holds the worker up

        self.pool = WorkerPool(
            [
                Worker(runtime, on_run_end=on_run_end, on_progress=progress.update)
                for _ in range(workers)
            ]
        )
        watcher = DataWatcher(runtime)
        self.threads = [
            threading.Thread(
                target=watcher.run,
                args=(self.stop_event, watch_interval_s),
                name="automlops-watcher",
                daemon=True,
            )
        ]
        if monitor_every_s is not None:
            self.threads.append(
                threading.Thread(
                    target=monitor_schedule,
                    args=(runtime, self.stop_event, monitor_every_s, self.sender),
                    name="automlops-monitor",
                    daemon=True,
                )
            )

    @property
    def watcher(self) -> threading.Thread:
        return self.threads[0]

    def start(self) -> None:
        self.pool.start()
        for thread in self.threads:
            thread.start()

    def stop(self, grace_s: float = 5.0) -> list[str]:
        """Ask every thread to stop; returns the names of those still busy after `grace_s`."""
        self.stop_event.set()
        busy = self.pool.stop(grace_s)
        for thread in self.threads:
            thread.join(timeout=grace_s / (len(self.pool.workers) + len(self.threads)))
        self.sender.close(timeout_s=grace_s / 2)
        return busy + [t.name for t in self.threads if t.is_alive()]


def _serve(server: uvicorn.Server) -> None:
    """Run uvicorn until Ctrl-C or SIGTERM, then return normally.

    uvicorn shuts down gracefully on those signals and then raises them again for the previous
    handlers; ours turns SIGTERM into KeyboardInterrupt too, so both end here and the workers
    are stopped and the workspace closed by the caller.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupt) if main else None
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def run_up(options: UpOptions, echo: Callable[[str], None] = print) -> int:
    """Serve until interrupted; returns the process exit code."""
    runtime = open_runtime(options.home)
    progress = LiveProgress()
    try:
        app = build_app(
            runtime,
            api_key=options.api_key,
            protect_ui=options.protect_ui,
            progress=progress,
            allowed_hosts=options.allowed_hosts,
            secure_cookies=options.secure_cookies,
        )
        background = Background(
            runtime,
            workers=options.workers,
            progress=progress,
            watch_interval_s=options.watch_interval_s,
            monitor_every_s=None
            if options.monitor_every_min is None
            else options.monitor_every_min * 60,
            sender=AlertSender(options.alert_webhook),
        )
        config = uvicorn.Config(
            app, host=options.host, port=options.port, log_level="warning", access_log=False
        )
        server = uvicorn.Server(config)
        shown = "localhost" if options.host in ("0.0.0.0", "::") else options.host
        echo(f"workspace {runtime.home}")
        echo(
            f"dashboard http://{shown}:{options.port}{PREFIX}/   API http://{shown}:{options.port}/"
        )
        echo(
            f"{options.workers} worker(s); CSVs copied into {runtime.home / 'data' / 'data'}/"
            "<dataset>/ are picked up too. Ctrl-C stops."
        )
        if options.monitor_every_min is not None:
            echo(
                f"monitor: every {options.monitor_every_min:g} min (drift, live quality, "
                "retrain policy)"
            )
        if options.host in ("0.0.0.0", "::") and options.allowed_hosts == LOOPBACK_HOSTS:
            echo(
                "note: only requests to 127.0.0.1/localhost are answered; name the others "
                "with --allowed-hosts"
            )
        if options.api_key is None and options.host not in ("127.0.0.1", "localhost", "::1"):
            echo(f"warning: listening on {options.host} without an API key (--api-key-env)")
        background.start()
        try:
            _serve(server)
        finally:
            busy = background.stop(options.stop_grace_s)
            if any(name.startswith("automlops-worker") for name in busy):
                echo(
                    "stopped; a stage was interrupted: its message is redelivered after the "
                    f"visibility timeout ({runtime.settings.visibility_timeout_s:.0f} s)"
                )
            else:
                echo("stopped")
    finally:
        runtime.close()
    return 0 if server.started else 1
