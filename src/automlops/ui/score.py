"""The dashboard's Score page: a file to score goes through the scoring use case
(`automlops.usecases.scoring`), its run shows live like any other, its predictions are
previewed and downloaded, and a row (picked from a scored file or pasted as JSON or CSV) is
explained by the same answering code as the HTTP API (`serving.invocation.answer`).

GET routes are here (`build_score_pages`); the two forms (submit a file, explain a pasted
row) are posted to actions.py, which checks the key and CSRF token and calls `submit_form`
and `explain_pasted`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response

from automlops import keys
from automlops.errors import AutomlopsError
from automlops.ml.batch import MAX_EXPLAIN, ScoreLineage, ScoreOptions, TableFormat
from automlops.names import is_dataset_name
from automlops.serving import wire
from automlops.serving.invocation import ApiError, answer
from automlops.serving.models import ModelCache
from automlops.ui import views
from automlops.ui.context import UiContext, UiError, valid_dataset, valid_run_id
from automlops.usecases import scoring

PREVIEW_ROWS = 20  # rows of a scored file shown (and offered to explain)
MAX_PASTED_ROWS = 20
RUNS_SHOWN = 20
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_FILE_MAX = 120
# Columns batch scoring writes with --explain (ml/explain/table.py): base, column_i,
# contribution_i, each ending in [label] for multiclass.
_EXPLAIN_COLUMN = re.compile(r"^(base|column_\d+|contribution_\d+)(\[.*\])?$")
_MEDIA = {
    TableFormat.csv: "text/csv; charset=utf-8",
    TableFormat.parquet: "application/vnd.apache.parquet",
}
_DOWNLOAD_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


class ScoreFormError(ValueError):
    """A Score form that cannot be accepted as filled in; the message says what to change."""


@dataclass(frozen=True)
class ScoreForm:
    """The submit form's fields, as posted (strings; empty means the default)."""

    filename: str
    dataset: str
    version: str = ""
    explain: str = ""
    id_column: str = ""


def score_filename(filename: str) -> str:
    """A submitted file's name in the bucket: its last path part, safe characters only (the
    suffix, .csv or .parquet, is checked by the use case)."""
    base = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    name = _UNSAFE.sub("_", base).lstrip(".")
    stem, dot, suffix = name.rpartition(".")
    if len(name) > _FILE_MAX and dot:
        name = f"{stem[: _FILE_MAX - len(suffix) - 1]}.{suffix}"
    return name or "file.csv"


def _whole(text: str, what: str, *, low: int, high: int | None = None) -> int | None:
    if not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        raise ScoreFormError(f"{what} must be a whole number") from None
    if value < low or (high is not None and value > high):
        limit = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ScoreFormError(f"{what} must be {limit}")
    return value


def options_of(form: ScoreForm) -> ScoreOptions:
    """The form as scoring options (only parsing here; the use case checks the rest)."""
    return ScoreOptions(
        version=_whole(form.version, "the version", low=1),
        explain=_whole(form.explain, "the number of contributions", low=1, high=MAX_EXPLAIN),
        id_column=form.id_column.strip() or None,
    )


def spool(upload_file: BinaryIO, filename: str) -> Path:
    """Copy an uploaded file, in 1 MiB pieces, to a private directory under the name it will
    have in the bucket (the use case names the object after the file). The caller removes
    the directory (see `submit_form`)."""
    folder = Path(tempfile.mkdtemp(prefix="automlops-score-"))
    path = folder / score_filename(filename)
    with open(path, "wb") as out:
        shutil.copyfileobj(upload_file, out, 1 << 20)
    return path


def submit_form(ui: UiContext, form: ScoreForm, source: Path) -> scoring.Submission:
    """Check the form and submit the spooled file for scoring; the spool goes either way."""
    try:
        options = options_of(form)
        runtime = ui.runtime
        return scoring.submit(runtime.store, runtime.settings, source, form.dataset, options)
    except scoring.ScoreRefused as exc:
        raise ScoreFormError(str(exc)) from None
    finally:
        shutil.rmtree(source.parent, ignore_errors=True)


def pasted_rows(text: str) -> list[dict[str, Any]]:
    """Rows pasted in the form: a JSON object (or a list of them), or CSV lines with a header
    line first."""
    text = text.strip()
    if not text:
        raise ScoreFormError("paste a row: a JSON object, or a CSV header line and a row")
    if text[0] in "{[":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ScoreFormError(f"the row is not valid JSON: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("instances"), list):
            data = data["instances"]  # an invocation body pasted whole
        rows = data if isinstance(data, list) else [data]
        if not rows or not all(isinstance(row, dict) for row in rows):
            raise ScoreFormError("JSON rows must be objects of column: value")
    else:
        reader = csv.DictReader(io.StringIO(text))
        rows = [dict(row) for row in reader]
        if not rows:
            raise ScoreFormError("CSV needs a header line, then at least one row")
        if any(None in row for row in rows):
            raise ScoreFormError("a CSV row has more values than the header has columns")
    if len(rows) > MAX_PASTED_ROWS:
        raise ScoreFormError(f"paste at most {MAX_PASTED_ROWS} rows")
    return rows


def explain_rows(
    models: ModelCache, dataset: str, version: int | None, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """Predict and explain `rows` with a version (None: the champion), through the same
    answering code as POST /invocations: its row checks, its errors, its JSON."""
    try:
        if version is None:
            version, predictor = models.champion(dataset)
        else:
            predictor = models.version(dataset, version)
    except AutomlopsError as exc:
        raise ScoreFormError(str(exc)) from None
    body = wire.json_body(rows, explain=True)
    try:
        content, _ = answer(predictor, version, body, wire.JSON, wire.JSON)
    except ApiError as exc:
        raise ScoreFormError(str(exc)) from None
    response = wire.InvocationResponse.model_validate_json(content)
    return {
        "version": version,
        "unknown_columns": response.unknown_columns,
        "rows": [
            _explained_row(index, row, prediction)
            for index, (row, prediction) in enumerate(zip(rows, response.predictions, strict=True))
        ],
    }


def explain_pasted(models: ModelCache, dataset: str, version: str, text: str) -> dict[str, Any]:
    """The explanation of pasted rows, for the Score page."""
    if not is_dataset_name(dataset):
        raise ScoreFormError("choose a dataset to explain with")
    return explain_rows(models, dataset, _whole(version, "the version", low=1), pasted_rows(text))


def _explained_row(
    index: int, row: dict[str, Any], prediction: wire.ClassPrediction | wire.ValuePrediction
) -> dict[str, Any]:
    """One answered row, shaped for the template: the prediction and each output's
    contributions with their bar widths (share of the largest |contribution|)."""
    shown: dict[str, Any]
    if isinstance(prediction, wire.ClassPrediction):
        shown = {"label": prediction.label, "probabilities": prediction.probabilities}
    else:
        shown = {"value": prediction.value}
    outputs = []
    why = prediction.explanation
    for output, part in ({} if why is None else why.outputs).items():
        largest = max((abs(c.value) for c in part.contributions), default=0.0) or 1.0
        total = part.base + sum(c.value for c in part.contributions)
        contributions = [
            {
                "column": c.column,
                "value": c.value,
                "input": row.get(c.column),
                "share": round(abs(c.value) / largest, 4),
            }
            for c in part.contributions
        ]
        outputs.append(
            {"name": output, "base": part.base, "score": total, "contributions": contributions}
        )
    return {
        "index": index,
        "prediction": shown,
        "raw_score": None if why is None else why.raw_score,
        "exact": True if why is None else why.exact,
        "outputs": outputs,
    }


def scoring_runs(ui: UiContext, limit: int = RUNS_SHOWN) -> list[dict[str, Any]]:
    """Scoring runs, newest first, with their live progress."""
    found = []
    for record in ui.runtime.runlog.list(None, limit=1000):
        if any(stage.name == "score" for stage in record.stages):
            found.append(views.run_view(record, ui.progress))
            if len(found) >= limit:
                break
    return found


def scoring_datasets(ui: UiContext) -> list[dict[str, Any]]:
    """Datasets that have a champion to score with."""
    found = []
    for name in views.dataset_names(ui.runtime):
        with contextlib.suppress(AutomlopsError):
            doc = ui.runtime.registry.read(name)
            if doc.champion is not None:
                found.append({"name": name, "champion": doc.champion})
    return found


def lineage_of(ui: UiContext, dataset: str, run_id: str) -> ScoreLineage | None:
    """The lineage of a finished scoring run, None until it is written."""
    store, bucket = ui.runtime.store, ui.runtime.settings.buckets.model_output
    key = keys.prediction_lineage_key(dataset, run_id)
    try:
        return ScoreLineage.model_validate_json(store.get(bucket, key))
    except (AutomlopsError, ValueError):
        return None


def preview(ui: UiContext, lineage: ScoreLineage, rows: int = PREVIEW_ROWS) -> pl.DataFrame:
    """The first rows of a run's predictions, every value as text (shown as written)."""
    store = ui.runtime.store
    local = store.local_file(lineage.output_bucket, lineage.output_key)
    source: Path | io.BytesIO = (
        local
        if local is not None
        else io.BytesIO(store.get(lineage.output_bucket, lineage.output_key))
    )
    if TableFormat.of(lineage.output_key) is TableFormat.parquet:
        frame = pl.read_parquet(source, n_rows=rows)
        return frame.select(pl.all().cast(pl.String))
    return pl.read_csv(source, n_rows=rows, infer_schema=False)


def stored_explanation(columns: list[str], row: dict[str, Any]) -> list[dict[str, Any]]:
    """The contributions batch scoring wrote into a row (`--explain K`), per output."""
    outputs: dict[str, dict[str, Any]] = {}
    for name in columns:
        match = _EXPLAIN_COLUMN.match(name)
        if match is None:
            continue
        output = (match.group(2) or "")[1:-1]
        entry = outputs.setdefault(output, {"name": output, "base": None, "contributions": []})
        kind = match.group(1)
        if kind == "base":
            entry["base"] = row.get(name)
        elif kind.startswith("column_"):
            i = kind.removeprefix("column_")
            suffix = match.group(2) or ""
            entry["contributions"].append(
                {"column": row.get(name), "value": row.get(f"contribution_{i}{suffix}")}
            )
    return list(outputs.values())


def _download(ui: UiContext, bucket: str, key: str, media_type: str) -> Response:
    store = ui.runtime.store
    name = key.rsplit("/", 1)[-1]
    headers = {**_DOWNLOAD_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
    local = store.local_file(bucket, key)
    if local is not None:
        return FileResponse(local, media_type=media_type, headers=headers)
    try:
        data = store.get(bucket, key)
    except AutomlopsError:
        raise UiError(404, "No such file", f"{bucket}/{key} does not exist.") from None
    return Response(data, media_type=media_type, headers=headers)


def render_score(
    ui: UiContext,
    request: Request,
    *,
    status: int = 200,
    error: str | None = None,
    explain_error: str | None = None,
    values: dict[str, Any] | None = None,
    explained: dict[str, Any] | None = None,
) -> Response:
    """The Score page: the submit form, the paste-a-row form (and its answer), the runs."""
    return ui.render(
        request,
        "score.html",
        status=status,
        nav="score",
        live=True,
        title="Score",
        datasets=scoring_datasets(ui),
        runs=scoring_runs(ui),
        error=error,
        explain_error=explain_error,
        values=values or {},
        explained=explained,
        max_explain=MAX_EXPLAIN,
        max_upload_mb=ui.max_upload_bytes // (1024 * 1024),
    )


@dataclass(frozen=True)
class PickedRow:
    """A row picked from a scoring run's preview, with its contributions or why there are none."""

    values: dict[str, Any]
    explained: dict[str, Any] | None = None
    error: str | None = None


def pick_row(models: ModelCache, lineage: ScoreLineage, table: pl.DataFrame, row: int) -> PickedRow:
    """Row `row` of the preview, explained by the model that scored it."""
    if not 0 <= row < table.height:
        raise UiError(404, "No such row", f"The preview has rows 1 to {table.height}.")
    values = table.row(row, named=True)
    if lineage.options.id_column is not None:
        # The output kept only the id column: the row's inputs are not in it.
        return PickedRow(
            values,
            error=(
                f"This file was scored keeping only {lineage.options.id_column!r}: the row's "
                "input values are not in the predictions. Paste the row on the Score page to "
                "explain it."
            ),
        )
    inputs = {k: v for k, v in values.items() if not _EXPLAIN_COLUMN.match(k)}
    try:
        explained = explain_rows(models, lineage.dataset, lineage.model_version, [inputs])
    except ScoreFormError as exc:
        return PickedRow(values, error=str(exc))
    return PickedRow(values, explained=explained)


def build_score_pages(ui: UiContext) -> APIRouter:
    """The GET routes of the Score page (reading them needs the key under --protect-ui)."""
    router = APIRouter(dependencies=[Depends(ui.require_read)])
    runtime = ui.runtime

    @router.get("/score")
    def score_page(request: Request) -> Response:
        """Submit a file to score, explain a pasted row, follow the scoring runs."""
        return render_score(ui, request)

    @router.get("/score/{dataset}/{run_id}")
    def score_run(request: Request, dataset: str, run_id: str, row: int | None = None) -> Response:
        """A scoring run: its progress, then its predictions (a preview, downloads) and the
        contributions of a row picked from the preview."""
        name, run = valid_dataset(dataset), valid_run_id(run_id)
        record = runtime.runlog.get(run)
        if record is not None and record.dataset != name:
            raise UiError(404, "No such run", f"{name} has no scoring run {run!r}.")
        lineage = lineage_of(ui, name, run)
        table: pl.DataFrame | None = None
        picked: PickedRow | None = None
        if lineage is not None:
            with contextlib.suppress(AutomlopsError, OSError, pl.exceptions.PolarsError):
                table = preview(ui, lineage)
        if table is not None and lineage is not None and row is not None:
            picked = pick_row(request.app.state.models, lineage, table, row)
        columns = [] if table is None else table.columns
        return ui.render(
            request,
            "score_run.html",
            nav="score",
            live=lineage is None,
            title=f"Scoring run {run}",
            dataset=name,
            run_id=run,
            run=None if record is None else views.run_view(record, ui.progress),
            lineage=lineage,
            columns=columns,
            explain_columns=[c for c in columns if _EXPLAIN_COLUMN.match(c)],
            rows=[] if table is None else table.rows(),
            picked=row if picked is not None else None,
            stored=[] if picked is None else stored_explanation(columns, picked.values),
            explained=None if picked is None else picked.explained,
            explain_error=None if picked is None else picked.error,
        )

    @router.get("/score/{dataset}/{run_id}/predictions")
    def predictions(dataset: str, run_id: str) -> Response:
        """Download a run's predictions file."""
        lineage = lineage_of(ui, valid_dataset(dataset), valid_run_id(run_id))
        if lineage is None:
            raise UiError(404, "Not scored yet", "The run has no predictions (yet).")
        fmt = TableFormat.of(lineage.output_key)
        return _download(ui, lineage.output_bucket, lineage.output_key, _MEDIA[fmt])

    @router.get("/score/{dataset}/{run_id}/errors.csv")
    def errors(dataset: str, run_id: str) -> Response:
        """Download a run's error file (the rows that could not be read, and why)."""
        lineage = lineage_of(ui, valid_dataset(dataset), valid_run_id(run_id))
        if lineage is None:
            raise UiError(404, "Not scored yet", "The run has no error file (yet).")
        return _download(ui, lineage.output_bucket, lineage.errors_key, _MEDIA[TableFormat.csv])

    return router
