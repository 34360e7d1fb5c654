"""The inference API (FastAPI): raw rows in, predictions out."""

from __future__ import annotations

import io
import re
import time
from typing import Any

import numpy as np
import orjson
import polars as pl
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from automlops.config import Task
from automlops.errors import NotFoundError, PermanentError
from automlops.ml.columns.transform import InvalidValueError
from automlops.ml.predictor import Predictions, Predictor
from automlops.serving.auth import require_api_key
from automlops.serving.models import ModelCache

_DATASET = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class ApiError(Exception):
    """An error answered to the caller as JSON with a 4xx status."""

    def __init__(self, status: int, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.fields = fields


class OrjsonResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def create_app(
    models: ModelCache, *, max_body_bytes: int = 10 * 1024 * 1024, api_key: str | None = None
) -> FastAPI:
    """The HTTP app over a model cache; with `api_key`, every route but /ping requires it."""
    app = FastAPI(title="automlops inference API", default_response_class=OrjsonResponse)
    app.state.models = models
    if api_key is not None:
        require_api_key(app, api_key)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return OrjsonResponse({"error": str(exc), **exc.fields}, status_code=exc.status)

    @app.get("/ping")
    def ping() -> dict[str, str]:
        """Liveness: 200 when the server is up."""
        return {"status": "ok"}

    @app.get("/endpoints")
    def list_endpoints() -> dict[str, Any]:
        """Datasets and the versions serving them."""
        items = []
        for dataset in models.registry.datasets():
            doc = models.registry.read(dataset)
            items.append({"dataset": dataset, "version": doc.champion})
        return {"endpoints": items}

    @app.get("/endpoints/{dataset}")
    def describe(dataset: str) -> dict[str, Any]:
        """The champion's version, task, input columns and labels."""
        version, predictor = _champion(models, dataset)
        return _describe(dataset, version, predictor)

    @app.get("/endpoints/{dataset}/versions/{version}")
    def describe_version(dataset: str, version: int) -> dict[str, Any]:
        return _describe(dataset, version, _version(models, dataset, version))

    @app.post("/endpoints/{dataset}/invocations")
    async def invoke(dataset: str, request: Request) -> Response:
        """Predict raw rows with the dataset's champion."""
        version, predictor = _champion(models, dataset)
        return await _invoke(request, version, predictor, max_body_bytes)

    @app.post("/endpoints/{dataset}/versions/{version}/invocations")
    async def invoke_version(dataset: str, version: int, request: Request) -> Response:
        """Predict raw rows with one specific version (candidates are evaluated this way)."""
        predictor = _version(models, dataset, version)
        return await _invoke(request, version, predictor, max_body_bytes)

    return app


def _champion(models: ModelCache, dataset: str) -> tuple[int, Predictor]:
    if not _DATASET.match(dataset):
        raise ApiError(404, f"unknown dataset {dataset!r}")
    try:
        return models.champion(dataset)
    except NotFoundError as exc:
        raise ApiError(404, str(exc)) from None


def _version(models: ModelCache, dataset: str, version: int) -> Predictor:
    if not _DATASET.match(dataset):
        raise ApiError(404, f"unknown dataset {dataset!r}")
    try:
        return models.version(dataset, version)
    except NotFoundError as exc:
        raise ApiError(404, str(exc)) from None


def _describe(dataset: str, version: int, predictor: Predictor) -> dict[str, Any]:
    meta = predictor.metadata
    return {
        "dataset": dataset,
        "version": version,
        "task": meta.task.value,
        "target": meta.target.name,
        "features": [{"name": c.name, "type": c.kind} for c in meta.inputs],
        "labels": meta.target.labels,
        "positive_label": meta.target.positive,
        "threshold": meta.threshold,
        "learner": meta.learner,
        "created_at": meta.created_at,
    }


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body over the {limit}-byte limit")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes, content_type: str) -> pl.DataFrame | list[dict[str, Any]]:
    """A CSV body as a frame, a JSON body as its validated rows."""
    media = content_type.split(";")[0].strip().lower()
    if media in ("text/csv", "application/csv"):
        return _parse_csv(body)
    if media in ("application/json", "") or media.endswith("+json"):
        return _parse_json(body)
    raise ApiError(415, f"unsupported content type {media!r}; send application/json or text/csv")


def _parse_json(body: bytes) -> list[dict[str, Any]]:
    """The instances of a JSON body; objects and arrays as values are refused later, by the
    transform, in the same pass that reads each column."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list):
        raise ApiError(400, 'expected a JSON object {"instances": [{"column": value, ...}, ...]}')
    for i, row in enumerate(instances):
        if not isinstance(row, dict):
            raise ApiError(400, f"row {i}: each instance must be a JSON object", row=i)
    return instances


def _parse_csv(body: bytes) -> pl.DataFrame:
    if not body.strip():
        raise ApiError(400, "CSV body is empty; send a header row and data rows")
    try:
        body.decode("utf-8")  # polars reads a header with bad bytes lossily, losing the column
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"CSV body is not UTF-8 (bad byte at offset {exc.start})") from None
    try:
        return pl.read_csv(io.BytesIO(body), infer_schema=False, null_values=[""])
    except (pl.exceptions.PolarsError, UnicodeDecodeError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ApiError(400, f"body is not a readable CSV with a header: {message}") from None


async def _invoke(
    request: Request, version: int, predictor: Predictor, max_body_bytes: int
) -> Response:
    started = time.perf_counter()
    body = await _read_body(request, max_body_bytes)
    headers = request.headers
    content, media_type = answer(
        predictor,
        version,
        body,
        headers.get("content-type", ""),
        headers.get("accept", "application/json"),
    )
    # The app's own time (body read, parse, predict, encode): what a load test cannot see.
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    return Response(
        content,
        media_type=media_type,
        headers={"Server-Timing": f"app;dur={elapsed_ms:.3f}"},
    )


def answer(
    predictor: Predictor, version: int, body: bytes, content_type: str, accept: str
) -> tuple[bytes, str]:
    """The response to one invocation body: (content, media type); ApiError for bad input.

    Everything of a request but HTTP itself, so it can also be timed in-process.
    """
    parsed = _parse(body, content_type)
    try:
        if isinstance(parsed, pl.DataFrame):
            predictions = predictor.predict(parsed)
        else:
            predictions = predictor.predict_rows(parsed)
    except InvalidValueError as exc:
        raise ApiError(400, str(exc), row=exc.row, column=exc.column) from None
    except PermanentError as exc:
        raise ApiError(400, str(exc)) from None
    accept = accept.lower()
    if "text/csv" in accept and "application/json" not in accept:
        return _as_csv(predictions, predictor), "text/csv"
    document = {"model_version": str(version), "predictions": _as_items(predictions, predictor)}
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY), "application/json"


def _as_items(predictions: Predictions, predictor: Predictor) -> list[dict[str, Any]]:
    if predictions.task is Task.regression:
        assert predictions.values is not None
        return [{"value": v} for v in predictions.values.tolist()]
    assert predictions.proba is not None and predictions.label_index is not None
    labels = predictor.labels
    return [
        {"label": labels[i], "probabilities": dict(zip(labels, row, strict=True))}
        for i, row in zip(predictions.label_index.tolist(), predictions.proba.tolist(), strict=True)
    ]


def _csv_field(text: str) -> str:
    """A label as one CSV field (RFC 4180): quoted, inner quotes doubled, when it holds a
    comma, a quote or a line break. The answer is for programs, so a formula-like label is left
    as it is (spreadsheet-style defusing would change the value)."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _as_csv(predictions: Predictions, predictor: Predictor) -> bytes:
    """One line per row: no rows, no lines."""
    if predictions.task is Task.regression:
        assert predictions.values is not None
        column = predictions.values
    elif predictions.task is Task.binary:
        assert predictions.proba is not None
        column = predictions.proba[:, 1]
    else:
        assert predictions.label_index is not None
        labels = np.array([_csv_field(label) for label in predictor.labels], dtype=object)
        return "".join(f"{label}\n" for label in labels[predictions.label_index]).encode()
    return "".join(f"{float(v)!r}\n" for v in column).encode()
