"""The dashboard's pages (GET): overview, runs, run detail, models, report, drift, dead letters,
plus the live JSON and the report files of the monitoring bucket."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from automlops import keys
from automlops.errors import AutomlopsError
from automlops.local.runlog import RunRecord
from automlops.manifests import load_manifest
from automlops.ml.learners.catalog import LEARNER_NAMES
from automlops.ui import views
from automlops.ui.context import PREFIX, UiContext, UiError, valid_dataset, valid_run_id
from automlops.ui.score import build_score_pages
from automlops.usecases.lineage import trace

# The files a run page may show as text (automl-data bucket), by name.
RUN_FILES = ("schema.json", "transform.json", "drift.json")
DRIFT_COLUMNS_PLOTTED = 6

# Report files served from the monitoring bucket: these types only, scripts never run.
_FILE_TYPES = {
    ".png": "image/png",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".md": "text/plain; charset=utf-8",
}
_FILE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "private, max-age=60",
}


@dataclass(frozen=True)
class WorkspacePage:
    """A live page of the whole workspace: no parameters, its data read through `views`."""

    path: str
    template: str
    nav: str
    title: str
    doc: str
    data: Callable[[UiContext], dict[str, Any]]


def _datasets(ui: UiContext) -> dict[str, Any]:
    return {"datasets": views.datasets(ui.runtime)}


WORKSPACE_PAGES = (
    WorkspacePage(
        "/",
        "overview.html",
        "overview",
        "Overview",
        "Datasets with their champion, headline metric, last run and drift flag.",
        lambda ui: {
            **_datasets(ui),
            "runs": views.runs(ui.runtime, ui.progress, limit=5),
            "queued": views.queued_uploads(ui.runtime),
        },
    ),
    WorkspacePage(
        "/models",
        "models_index.html",
        "models",
        "Models",
        "Datasets, each linking to its model versions.",
        _datasets,
    ),
    WorkspacePage(
        "/drift",
        "drift_index.html",
        "drift",
        "Drift",
        "Datasets and whether their latest upload drifted.",
        _datasets,
    ),
    WorkspacePage(
        "/dlq",
        "dlq.html",
        "dlq",
        "Dead letters",
        "Messages that failed every delivery, with their errors; redrive from here.",
        lambda ui: {"messages": views.dead_letters(ui.runtime)},
    ),
)


def build_pages(ui: UiContext) -> APIRouter:
    """The GET routes of the dashboard."""
    router = APIRouter()
    runtime = ui.runtime

    @router.get("", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @router.get("/api/state")
    def state(request: Request) -> Response:
        """The live JSON the pages poll: runs, queued uploads, datasets, a change fingerprint."""
        if not ui.guard.may_read(request):
            return JSONResponse({"error": "sign in first"}, status_code=401)
        return JSONResponse(
            views.state(runtime, ui.progress), headers={"Cache-Control": "no-store"}
        )

    # Every page below shows the workspace: reading it needs the key under --protect-ui.
    pages = APIRouter(dependencies=[Depends(ui.require_read)])

    def add_workspace_page(page: WorkspacePage) -> None:
        def show(request: Request) -> Response:
            return ui.render(
                request, page.template, nav=page.nav, live=True, title=page.title, **page.data(ui)
            )

        show.__doc__ = page.doc
        pages.add_api_route(page.path, show, methods=["GET"], name=page.template)

    for page in WORKSPACE_PAGES:
        add_workspace_page(page)
    _run_pages(pages, ui)
    _model_pages(pages, ui)
    _drift_page(pages, ui)
    _file_pages(pages, ui)
    router.include_router(pages)
    router.include_router(build_score_pages(ui))
    return router


def _run_pages(pages: APIRouter, ui: UiContext) -> None:
    """The runs list, a run, a run's JSON files."""
    runtime = ui.runtime

    @pages.get("/runs")
    def runs(request: Request, dataset: str | None = None) -> Response:
        """Every run as a timeline of its stages, newest first."""
        if dataset:
            valid_dataset(dataset)
        return ui.render(
            request,
            "runs.html",
            nav="runs",
            live=True,
            title="Runs",
            dataset=dataset,
            runs=views.runs(runtime, ui.progress, dataset),
            queued=[
                q for q in views.queued_uploads(runtime) if not dataset or q["dataset"] == dataset
            ],
        )

    @pages.get("/runs/{run_id}")
    def run_detail(request: Request, run_id: str) -> Response:
        """Stages, errors in full, the run's files, its model's lineage and reports."""
        record = runtime.runlog.get(valid_run_id(run_id))
        if record is None:
            raise UiError(404, "No such run", f"No run {run_id!r} in this workspace.")
        return ui.render(
            request,
            "run.html",
            nav="runs",
            live=True,
            title=f"Run {record.id}",
            **_run_context(ui, record),
        )

    @pages.get("/runs/{run_id}/files/{name}")
    def run_file(request: Request, run_id: str, name: str) -> Response:
        """One of a run's JSON files (schema, transform, drift), shown as text."""
        record = runtime.runlog.get(valid_run_id(run_id))
        if record is None or name not in RUN_FILES:
            raise UiError(404, "No such file", f"Run {run_id!r} has no file {name!r} to show.")
        key = keys.run_prefix(record.dataset, record.id) + name
        try:
            raw = runtime.store.get(runtime.settings.buckets.automl_data, key)
        except AutomlopsError:
            raise UiError(404, "No such file", f"{key} does not exist (yet).") from None
        try:
            text = json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
        except ValueError:
            text = raw.decode("utf-8", "replace")
        return ui.render(
            request,
            "file.html",
            nav="runs",
            title=name,
            run=record,
            bucket=runtime.settings.buckets.automl_data,
            key=key,
            text=text,
        )


def _run_context(ui: UiContext, record: RunRecord) -> dict[str, Any]:
    """What a run's page shows: its stages, files, model and that model's lineage."""
    runtime = ui.runtime
    files: list[str] = []
    with contextlib.suppress(AutomlopsError):
        prefix = keys.run_prefix(record.dataset, record.id)
        files = [
            k.removeprefix(prefix)
            for k in runtime.store.list(runtime.settings.buckets.automl_data, prefix)
        ]
    model_key = keys.model_key(record.dataset, record.id)
    has_model = runtime.store.head(runtime.settings.buckets.model_output, model_key) is not None
    entry = runtime.registry.read(record.dataset).by_run(record.id)
    traced = None
    if entry is not None:
        with contextlib.suppress(AutomlopsError, ValueError):
            traced = trace(runtime.store, runtime.settings, record.dataset, entry.version)
    return {
        "run": views.run_view(record, ui.progress),
        "files": files,
        "viewable": RUN_FILES,
        "buckets": runtime.settings.buckets,
        "model_key": model_key if has_model else None,
        "version": None if entry is None else entry.version,
        "trace": traced,
    }


def _model_pages(pages: APIRouter, ui: UiContext) -> None:
    """A dataset's versions, a version's report."""
    runtime = ui.runtime

    @pages.get("/models/{dataset}")
    def models(request: Request, dataset: str) -> Response:
        """Versions of a dataset: status, learner, metrics, the gate's decision and numbers."""
        name = valid_dataset(dataset)
        return ui.render(
            request,
            "models.html",
            nav="models",
            live=True,
            title=f"Models of {name}",
            registry=views.models(runtime, name),
            runs=views.runs(runtime, ui.progress, name, limit=3),
        )

    @pages.get("/models/{dataset}/versions/{version}/report")
    def report(request: Request, dataset: str, version: int) -> Response:
        """The evaluation report of a version: decision, metrics, comparison and plots."""
        name = valid_dataset(dataset)
        doc = runtime.registry.read(name)
        try:
            entry = doc.get(version)
        except AutomlopsError:
            raise UiError(404, "No such version", f"{name} has no version {version}.") from None
        if entry.report_key is None:
            raise UiError(
                404,
                "Not evaluated yet",
                f"Version {version} of {name} has no evaluation report yet; it appears when the "
                "evaluate stage of its run finishes.",
            )
        bucket = runtime.settings.buckets.model_monitoring
        try:
            report = json.loads(runtime.store.get(bucket, entry.report_key))
        except (AutomlopsError, ValueError):
            raise UiError(
                404, "Report missing", f"{bucket}/{entry.report_key} is missing."
            ) from None
        prefix = entry.report_key.removesuffix("report.json")
        return ui.render(
            request,
            "report.html",
            nav="models",
            title=f"Report of {name} v{version}",
            dataset=name,
            version=version,
            report=report,
            files=keys.report_files(entry.report_key),
            plot_prefix=prefix,
            comparisons=report.get("comparisons") or [],
        )


def _drift_page(pages: APIRouter, ui: UiContext) -> None:
    """The most drifted columns of an upload."""
    runtime = ui.runtime

    @pages.get("/drift/{dataset}")
    def drift(request: Request, dataset: str, run: str | None = None) -> Response:
        """The most drifted columns of an upload, with plots."""
        name = valid_dataset(dataset)
        report = views.drift(runtime, name, valid_run_id(run) if run else None)
        plots: list[dict[str, Any]] = []
        plot_prefix = ""
        if report is not None:
            entry = runtime.registry.read(name).by_run(report["run_id"])
            if entry is not None and entry.report_key:
                plot_prefix = entry.report_key.removesuffix("report.json")
                with contextlib.suppress(AutomlopsError, ValueError):
                    evaluation = json.loads(
                        runtime.store.get(
                            runtime.settings.buckets.model_monitoring, entry.report_key
                        )
                    )
                    plots = [p for p in evaluation.get("plots", []) if p.get("section") == "drift"]
        columns = (report or {}).get("columns") or []
        return ui.render(
            request,
            "drift.html",
            nav="drift",
            live=True,
            title=f"Drift of {name}",
            dataset=name,
            report=report,
            plotted=columns[:DRIFT_COLUMNS_PLOTTED],
            plots=plots,
            plot_prefix=plot_prefix,
        )


def _file_pages(pages: APIRouter, ui: UiContext) -> None:
    """The upload form and the monitoring bucket's report files."""
    runtime = ui.runtime

    @pages.get("/upload")
    def upload_form(request: Request) -> Response:
        """The upload form: a CSV and its manifest options."""
        return render_upload(ui, request)

    @pages.get("/files/{key:path}")
    def report_file(request: Request, key: str) -> Response:
        """A file of the model-monitoring bucket (reports and plots) and nothing else."""
        suffix = "." + key.rsplit(".", 1)[-1].lower() if "." in key else ""
        media_type = _FILE_TYPES.get(suffix)
        bucket = runtime.settings.buckets.model_monitoring
        if media_type is None:
            raise UiError(404, "No such report file", "Only report files and plots are served.")
        try:
            data = runtime.store.get(bucket, key)  # refuses keys that would leave the bucket
        except AutomlopsError:
            raise UiError(404, "No such report file", f"{bucket}/{key} does not exist.") from None
        return Response(data, media_type=media_type, headers=_FILE_HEADERS)


def render_upload(
    ui: UiContext,
    request: Request,
    *,
    status: int = 200,
    error: str | None = None,
    values: dict[str, Any] | None = None,
) -> Response:
    """The upload page, with the stored manifests so the form can show a dataset's options."""
    runtime = ui.runtime
    manifests = {}
    for name in views.dataset_names(runtime):
        with contextlib.suppress(AutomlopsError):
            manifest = load_manifest(runtime.store, runtime.settings.buckets.data, name)
            manifests[name] = manifest.model_dump(mode="json")
    return ui.render(
        request,
        "upload.html",
        status=status,
        nav="upload",
        title="Upload",
        manifests=manifests,
        learners=LEARNER_NAMES,
        error=error,
        values=values or {},
        max_upload_mb=ui.max_upload_bytes // (1024 * 1024),
    )
