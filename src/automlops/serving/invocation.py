"""One invocation, whichever app serves it: read the body, parse, predict, encode the answer.

This is the public surface both apps are built from: the registry-backed API (`serving.app`)
and the SageMaker container's single-model app (`serving.sagemaker`). Each declares its routes
and hands a request to `respond`, so the two cannot drift apart.

Bodies are parsed here, by hand, not by FastAPI: JSON with orjson and CSV with polars, each
value checked once by the transform that encodes it (a pydantic pass per row would cost more
than the prediction). Their schemas, declared in `serving.wire`, reach `/openapi.json` through
`invocation_body()` and `INVOCATION_RESPONSES`.

Work per request is bounded: a body holds at most `InvocationLimits.max_instances` rows, and
a body over `INLINE_BODY_BYTES` is parsed and predicted in a worker thread, so `/ping` and
small requests keep being answered while a big batch runs. A thread helps as far as the work
lets go of the GIL: polars and the boosters do, Python loops do every few milliseconds, but
orjson holds it for a whole parse (0.2 s or more for 3 million `{}`, the most a 10 MB body can
hold). So the instances of a big JSON body are counted on its bytes first
(`serving.instance_count`, a chunked numpy scan that stops past the cap), and a body over the
cap is refused before orjson sees it; what orjson parses holds at most the cap's rows.
"""

from __future__ import annotations

import copy
import io
import os
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
import orjson
import polars as pl
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from automlops.config import Task
from automlops.errors import PermanentError
from automlops.ml.columns.transform import InvalidValueError
from automlops.ml.predictor import Predictions, Predictor
from automlops.serving import wire
from automlops.serving.instance_count import count_instances


class ApiError(Exception):
    """An error answered to the caller as JSON (`wire.ErrorResponse`) with a 4xx status."""

    def __init__(self, status: int, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.fields = fields


class OrjsonResponse(JSONResponse):
    """JSON rendered by orjson (numpy arrays and scalars included)."""

    media_type = wire.JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def handle_api_errors(app: FastAPI) -> None:
    """Answer every `ApiError` raised in `app` as `{"error": ..., "row"?, "column"?}`."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return OrjsonResponse({"error": str(exc), **exc.fields}, status_code=exc.status)


def error_response(description: str) -> dict[str, Any]:
    """An OpenAPI response entry for a 4xx answer (`wire.ErrorResponse`)."""
    return {"model": wire.ErrorResponse, "description": description}


# An invocation route parses its own body, so FastAPI cannot see it: the request body schemas
# are declared here (route argument `openapi_extra`), the answers in INVOCATION_RESPONSES.
# FastAPI puts this dict into the app's OpenAPI document as it is (not a copy): routes take
# `invocation_body()`, a fresh copy each, so no document shares it with another.
_INVOCATION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            wire.JSON: {"schema": wire.InvocationRequest.model_json_schema()},
            wire.CSV: {
                "schema": {
                    "type": "string",
                    "description": "CSV with a header row; columns as in the uploaded CSV.",
                },
                "example": "age,job\n41,technician\n",
            },
        },
    }
}


def invocation_body() -> dict[str, Any]:
    """The `openapi_extra` of an invocation route: its JSON and CSV request bodies."""
    return copy.deepcopy(_INVOCATION_BODY)


INVOCATION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": wire.InvocationResponse,
        "description": "One prediction per row, in order. With `Accept: text/csv`, one "
        "line per row: P(positive) (binary), the label (multiclass) or the value.",
        "content": {wire.CSV: {"schema": {"type": "string"}, "example": "0.93\n0.02\n"}},
    },
    400: error_response("A body or value the model cannot read (row and column named)."),
    404: error_response("No such dataset or version, or no model serves it."),
    413: error_response("The body is over the size limit or holds more rows than the cap."),
    415: error_response("A content type other than JSON or CSV."),
    503: error_response("The version's model cannot be loaded; the error says why."),
}


def describe(dataset: str, version: int, predictor: Predictor) -> wire.EndpointDescription:
    """The model's version, task, input columns and labels, as `GET /endpoints/{dataset}`."""
    meta = predictor.metadata
    return wire.EndpointDescription(
        dataset=dataset,
        version=version,
        task=meta.task.value,
        target=meta.target.name,
        features=[wire.Feature(name=c.name, type=c.kind) for c in meta.inputs],
        labels=meta.target.labels,
        positive_label=meta.target.positive,
        threshold=meta.threshold,
        learner=meta.learner,
        created_at=meta.created_at,
    )


# Bodies up to this size are answered on the event loop, bigger ones in a worker thread. The
# thread hop costs about as much as a one-row prediction (measured in-process: a 0.4 ms request
# became 0.55 ms), while a 64 KiB body (~80 rows) holds the loop for about a millisecond.
INLINE_BODY_BYTES = 64 * 1024


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class InvocationLimits:
    """What one app allows an invocation: body bytes, rows, and big bodies worked at once.

    `workers` bounds the threads big bodies run in (one per core: the work is CPU, more threads
    would only hold more bodies in memory); requests beyond it wait without holding the loop,
    and the default thread pool stays free for the app's other routes. One per app, as an
    app runs in one event loop.
    """

    max_body_bytes: int
    max_instances: int
    workers: anyio.CapacityLimiter = field(
        default_factory=lambda: anyio.CapacityLimiter(max(2, _cores())), compare=False
    )


async def respond(
    request: Request, version: int, predictor: Predictor, limits: InvocationLimits
) -> Response:
    """Answer one invocation request with `predictor`; ApiError (4xx) for bad input."""
    started = time.perf_counter()
    body = await read_body(request, limits.max_body_bytes)
    headers = request.headers
    arguments = (
        predictor,
        version,
        body,
        headers.get("content-type", ""),
        headers.get("accept", wire.JSON),
        limits.max_instances,
    )
    if len(body) <= INLINE_BODY_BYTES:
        content, media_type = answer(*arguments)
    else:
        content, media_type = await anyio.to_thread.run_sync(
            answer, *arguments, limiter=limits.workers
        )
    # The app's own time (body read, parse, predict, encode): what a load test cannot see.
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    return Response(
        content,
        media_type=media_type,
        headers={"Server-Timing": f"app;dur={elapsed_ms:.3f}"},
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed `limit` bytes."""
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


def answer(
    predictor: Predictor,
    version: int,
    body: bytes,
    content_type: str,
    accept: str,
    max_instances: int | None = None,
) -> tuple[bytes, str]:
    """The response to one invocation body: (content, media type); ApiError for bad input.

    Everything of a request but HTTP itself, so it can also be timed in-process. More rows
    than `max_instances` (None: no cap) is a 413, checked before anything is predicted.
    """
    parsed = _parse(body, content_type, max_instances)
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
    if wire.CSV in accept and wire.JSON not in accept:
        return _as_csv(predictions, predictor), wire.CSV
    # Built as plain data (the shape of wire.InvocationResponse): no model objects per row.
    document = {"model_version": str(version), "predictions": _as_items(predictions, predictor)}
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY), wire.JSON


def _parse(
    body: bytes, content_type: str, max_instances: int | None
) -> pl.DataFrame | list[dict[str, Any]]:
    """A CSV body as a frame, a JSON body as its validated rows; 413 over `max_instances`."""
    media = content_type.split(";")[0].strip().lower()
    if media in (wire.CSV, "application/csv"):
        frame = _parse_csv(body)
        if max_instances is not None and frame.height > max_instances:
            raise _too_many(frame.height, max_instances)
        return frame
    if media in (wire.JSON, "") or media.endswith("+json"):
        return _parse_json(body, max_instances)
    raise ApiError(415, f"unsupported content type {media!r}; send application/json or text/csv")


def _too_many(rows: int, max_instances: int, *, at_least: bool = False) -> ApiError:
    counted = f"over {max_instances}" if at_least else f"{rows}"
    return ApiError(
        413,
        f"{counted} instances in one request; at most {max_instances} are allowed "
        "(AUTOMLOPS_MAX_INSTANCES): send them in several requests",
    )


def _parse_json(body: bytes, max_instances: int | None) -> list[dict[str, Any]]:
    """The instances of a JSON body; objects and arrays as values are refused later, by the
    transform, in the same pass that reads each column."""
    if (
        max_instances is not None
        and len(body) > INLINE_BODY_BYTES
        and _may_be_over(body, max_instances)
    ):
        # Counted before parsing: a parse of millions of rows would hold the GIL (see above).
        counted = count_instances(body, max_instances)
        if counted is not None and counted > max_instances:
            raise _too_many(counted, max_instances, at_least=True)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list):
        raise ApiError(400, 'expected a JSON object {"instances": [{"column": value, ...}, ...]}')
    if max_instances is not None and len(instances) > max_instances:
        rows = len(instances)
        # Freed here, in the worker thread: the error's traceback would otherwise keep the
        # millions of parsed rows alive until the event loop handles it, and free them there.
        del payload, instances
        raise _too_many(rows, max_instances)
    for i, row in enumerate(instances):
        if not isinstance(row, dict):
            raise ApiError(400, f"row {i}: each instance must be a JSON object", row=i)
    return instances


def _may_be_over(body: bytes, max_instances: int) -> bool:
    """Whether a JSON body may hold more instances than the cap, as far as a count of its
    brackets can tell (a few milliseconds for 10 MB): each instance is an object, so a body
    with no more `{` and `[` than the cap (and its own) cannot be over it, and a body of
    rows near the cap is not scanned. Instances that are not objects are refused after the
    parse (400); their parse costs a fraction of that of as many `{}` or `[]`."""
    return body.count(b"{") + body.count(b"[") - 2 > max_instances


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
