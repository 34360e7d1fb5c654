"""One invocation, whichever app serves it: read the body, parse, predict, encode the answer.

This is the public surface both apps are built from: the registry-backed API (`serving.app`)
and the SageMaker container's single-model app (`serving.sagemaker`). Each declares its routes
and hands a request to `respond`, so the two cannot drift apart.

Bodies are parsed here, by hand, not by FastAPI: JSON with orjson and CSV with polars, each
value checked once by the transform that encodes it (a pydantic pass per row would cost more
than the prediction). Their schemas, declared in `serving.wire`, reach `/openapi.json` through
`invocation_body()` and `INVOCATION_RESPONSES`.

Column names are matched to the model's inputs as `serving.columns` says (case and word
separators forgiven when unambiguous); columns no input matches are named in the answer's
`X-Automlops-Unknown-Columns` header (`wire.unknown_columns_header`; a CSV answer has no other
place for them) and in a JSON answer's `unknown_columns`; a row of unknown columns only is
refused. A CSV body must start with a header; its delimiter (`, ; tab |`) is the one whose
split of the header names the model's columns, and values are read in each column's training
spelling (`tabular.spelling`).

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
import csv
import io
import os
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import anyio
import anyio.to_thread
import numpy as np
import orjson
import polars as pl
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from automlops.config import Task
from automlops.errors import PermanentError
from automlops.ml.columns.transform import InvalidValueError, NumericColumn
from automlops.ml.explain.records import Explanation
from automlops.ml.predictor import Predictions, Predictor
from automlops.serving import wire
from automlops.serving.columns import ColumnMatchError, match_columns
from automlops.serving.instance_count import count_instances
from automlops.tabular.csv_reader import DELIMITERS
from automlops.tabular.spelling import looks_like_a_value


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
        "headers": {
            wire.UNKNOWN_COLUMNS_HEADER: {
                "description": wire.UNKNOWN_COLUMNS_DESCRIPTION,
                "schema": {"type": "string"},
            },
        },
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
    spellings = {
        c.name: c.spelling.describe()
        for c in predictor.transform.columns
        if isinstance(c, NumericColumn) and c.spelling is not None
    }
    return wire.EndpointDescription(
        dataset=dataset,
        version=version,
        task=meta.task.value,
        target=meta.target.name,
        features=[
            wire.Feature(name=c.name, type=c.kind, spelling=spellings.get(c.name))
            for c in meta.inputs
        ],
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
# An explanation costs up to a hundred predictions a row (TreeSHAP): a body asking for one is
# answered on the loop only when it holds a few rows (4 KiB: ~5 bank rows, ~5 ms at most).
INLINE_EXPLAIN_BYTES = 4 * 1024


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
    request: Request,
    version: int,
    predictor: Predictor,
    limits: InvocationLimits,
    csv_header: bytes | None = None,
) -> Response:
    """Answer one invocation request with `predictor`; ApiError (4xx) for bad input.

    `csv_header`: the header line a CSV body lacking one is read with (a Batch Transform job
    splits a file into mini-batches and only the first holds the file's header).
    """
    started = time.perf_counter()
    body = await read_body(request, limits.max_body_bytes)
    return await respond_to_body(
        body, request.headers, version, predictor, limits, csv_header=csv_header, started=started
    )


async def respond_to_body(
    body: bytes,
    headers: Mapping[str, str],
    version: int,
    predictor: Predictor,
    limits: InvocationLimits,
    *,
    csv_header: bytes | None = None,
    started: float | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> Response:
    """`respond` for a body already read (data capture keeps the bytes it answered):
    `headers` are the request's, `extra_headers` go into the response (an inference id);
    `started` is the `time.perf_counter()` the request's `Server-Timing` counts from."""
    if started is None:
        started = time.perf_counter()
    content_type = headers.get("content-type", "")
    if csv_header is not None and wire.CSV in content_type.lower():
        body = with_csv_header(body, csv_header)
    arguments = (
        predictor,
        version,
        body,
        content_type,
        headers.get("accept", wire.JSON),
        limits.max_instances,
    )
    inline = INLINE_EXPLAIN_BYTES if b'"explain"' in body else INLINE_BODY_BYTES
    if len(body) <= inline:
        done = invoke(*arguments)
    else:
        done = await anyio.to_thread.run_sync(invoke, *arguments, limiter=limits.workers)
    # The app's own time (body read, parse, predict, encode): what a load test cannot see.
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    answer_headers = {"Server-Timing": f"app;dur={elapsed_ms:.3f}"}
    if done.unknown_columns:
        answer_headers[wire.UNKNOWN_COLUMNS_HEADER] = wire.unknown_columns_header(
            done.unknown_columns
        )
    if extra_headers:
        answer_headers.update(extra_headers)
    return Response(done.content, media_type=done.media_type, headers=answer_headers)


def with_csv_header(body: bytes, header: bytes) -> bytes:
    """`body` with `header` as its first line, unless that is its first line already."""
    first = body.split(b"\n", 1)[0].rstrip(b"\r")
    return body if first == header.rstrip(b"\r\n") else header.rstrip(b"\r\n") + b"\n" + body


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


@dataclass(frozen=True, slots=True)
class Answer:
    """The response to one invocation body: its bytes, media type, and the body's columns the
    model does not know (sorted; they go into `wire.UNKNOWN_COLUMNS_HEADER`)."""

    content: bytes
    media_type: str
    unknown_columns: list[str]


def answer(
    predictor: Predictor,
    version: int,
    body: bytes,
    content_type: str,
    accept: str,
    max_instances: int | None = None,
) -> tuple[bytes, str]:
    """`invoke`'s content and media type: for in-process callers that need the answer only
    (the dashboard's scoring, timings)."""
    done = invoke(predictor, version, body, content_type, accept, max_instances)
    return done.content, done.media_type


def invoke(
    predictor: Predictor,
    version: int,
    body: bytes,
    content_type: str,
    accept: str,
    max_instances: int | None = None,
) -> Answer:
    """The response to one invocation body; ApiError for bad input.

    Everything of a request but HTTP itself, so it can also be timed in-process. More rows
    than `max_instances` (None: no cap) is a 413, checked before anything is predicted.
    """
    parsed, unknown = _parse(body, content_type, max_instances, _inputs(predictor))
    accept = accept.lower()
    as_csv = wire.CSV in accept and wire.JSON not in accept
    explain = None if isinstance(parsed, pl.DataFrame) else explain_request(body)
    if explain is not None and as_csv:
        raise ApiError(400, "explain needs a JSON answer: send Accept: application/json")
    explanation = None
    try:
        if isinstance(parsed, pl.DataFrame):
            predictions = predictor.predict(parsed)
        elif explain is None:
            predictions = predictor.predict_rows(parsed)
        else:
            explained = predictor.explain_rows(parsed, explain.top)
            predictions, explanation = explained.predictions, explained.explanation
    except InvalidValueError as exc:
        raise ApiError(400, str(exc), row=exc.row, column=exc.column) from None
    except PermanentError as exc:
        raise ApiError(400, str(exc)) from None
    if as_csv:
        return Answer(_as_csv(predictions, predictor), wire.CSV, unknown)
    # Built as plain data (the shape of wire.InvocationResponse): no model objects per row.
    items = _as_items(predictions, predictor)
    if explanation is not None:
        for item, why in zip(items, _explanation_items(explanation), strict=True):
            item["explanation"] = why
    document: dict[str, Any] = {"model_version": str(version), "predictions": items}
    if unknown:
        document["unknown_columns"] = unknown
    return Answer(orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY), wire.JSON, unknown)


class _Inputs(NamedTuple):
    """A model's input columns, in order, and the names a body may hold without being told
    they are unknown: the inputs and the target (rows copied from the training file hold it)."""

    names: list[str]
    known: frozenset[str]


_INPUTS: weakref.WeakKeyDictionary[Predictor, _Inputs] = weakref.WeakKeyDictionary()


def _inputs(predictor: Predictor) -> _Inputs:
    """The input columns of a loaded model (worked out once per model)."""
    inputs = _INPUTS.get(predictor)
    if inputs is None:
        names = predictor.input_columns
        known = frozenset([*names, predictor.metadata.target.name])
        inputs = _INPUTS[predictor] = _Inputs(names, known)
    return inputs


@dataclass(frozen=True)
class ExplainRequest:
    """A body's `explain`: the top `top` contributions per row (None: every column)."""

    top: int | None


def explain_request(body: bytes) -> ExplainRequest | None:
    """The `explain` of a JSON body (`wire.InvocationRequest.explain`), None when not asked;
    400 for a value that is neither a boolean nor a whole number >= 1.

    Read apart from the rows, so the row parser stays as it is: a body that does not hold
    the word (nearly every one) costs a byte search; one that does is parsed again, which
    is small beside explaining its rows.
    """
    if b'"explain"' not in body:
        return None
    payload = orjson.loads(body)  # the rows' parse succeeded: this one does too
    value = payload.get("explain", False)
    if value is False or value is None:
        return None
    if value is True:
        return ExplainRequest(None)
    if isinstance(value, int) and value >= 1:
        return ExplainRequest(value)
    shown = repr(value) if len(repr(value)) <= 40 else type(value).__name__
    raise ApiError(400, f"explain must be true, false or a whole number >= 1, not {shown}")


def _explanation_items(explanation: Explanation) -> list[dict[str, Any]]:
    """Each row's `wire.Explanation` as plain data, contributions largest first."""
    columns = explanation.columns
    order, kept = explanation.top()
    bases = explanation.base.tolist()
    head = {"raw_score": explanation.raw_score.value, "exact": explanation.exact}
    return [
        {
            **head,
            "outputs": {
                output: {
                    "base": base,
                    "contributions": [
                        {"column": columns[c], "value": v}
                        for c, v in zip(row_order[o], row_kept[o], strict=True)
                    ],
                }
                for o, (output, base) in enumerate(zip(explanation.outputs, row_base, strict=True))
            },
        }
        for row_order, row_kept, row_base in zip(order.tolist(), kept.tolist(), bases, strict=True)
    ]


def _parse(
    body: bytes, content_type: str, max_instances: int | None, inputs: _Inputs
) -> tuple[pl.DataFrame | list[dict[str, Any]], list[str]]:
    """A CSV body as a frame, a JSON body as its validated rows, with column names matched to
    the model's inputs (`serving.columns`), and the body's columns the model does not know;
    413 over `max_instances`."""
    media = content_type.split(";")[0].strip().lower()
    try:
        if media in (wire.CSV, "application/csv"):
            frame, unknown = _parse_csv(body, inputs)
            if max_instances is not None and frame.height > max_instances:
                raise _too_many(frame.height, max_instances)
            return frame, unknown
        if media in (wire.JSON, "") or media.endswith("+json"):
            return _match_rows(_parse_json(body, max_instances), inputs)
    except ColumnMatchError as exc:
        raise ApiError(400, str(exc)) from None
    raise ApiError(415, f"unsupported content type {media!r}; send application/json or text/csv")


def _expected(inputs: _Inputs) -> str:
    names = inputs.names
    shown = ", ".join(names[:30]) + (f", ... ({len(names)} in all)" if len(names) > 30 else "")
    return f"the model's columns are: {shown}"


def _match_rows(
    instances: list[dict[str, Any]], inputs: _Inputs
) -> tuple[list[dict[str, Any]], list[str]]:
    """JSON rows with their column names matched; 400 for a row none of whose columns is an
    input. The common case (every name an input) costs one set union, in C."""
    names = set().union(*instances)
    if names <= inputs.known:
        return instances, []
    match = match_columns(names, inputs.names, inputs.known)
    if match.renames:
        renames = match.renames
        instances = [{renames.get(k, k): v for k, v in row.items()} for row in instances]
    unknown = frozenset(match.unknown)
    for i, row in enumerate(instances):
        if row and unknown.issuperset(row):
            raise ApiError(
                400,
                f"row {i}: none of its columns ({', '.join(sorted(row))}) is an input of the "
                f"model; {_expected(inputs)}",
                row=i,
            )
    return instances, match.unknown


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


def _parse_csv(body: bytes, inputs: _Inputs) -> tuple[pl.DataFrame, list[str]]:
    """A CSV body with a header row as a frame of text, its names matched to the model's
    inputs, and the columns the model does not know.

    The delimiter is the one of `, ; tab |` whose split of the header names the most inputs;
    old Mac line ends (CR only) are read as lines. 400 for a body whose first row is data, or
    whose columns are none of the model's.
    """
    if not body.strip():
        raise ApiError(400, "CSV body is empty; send a header row and data rows")
    try:
        text = body.decode("utf-8")  # polars reads a header with bad bytes lossily
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"CSV body is not UTF-8 (bad byte at offset {exc.start})") from None
    if "\n" not in text and "\r" in text:
        body = body.replace(b"\r", b"\n")
        text = text.replace("\r", "\n")
    delimiter = _delimiter(text.lstrip("\ufeff").split("\n", 1)[0], inputs)
    try:
        frame = pl.read_csv(
            io.BytesIO(body), separator=delimiter, infer_schema=False, null_values=[""]
        )
    except (pl.exceptions.PolarsError, UnicodeDecodeError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ApiError(400, f"body is not a readable CSV with a header: {message}") from None
    match = match_columns(frame.columns, inputs.names, inputs.known)
    if match.renames:
        frame = frame.rename(match.renames)
    if frame.width and inputs.known.isdisjoint(frame.columns):
        data = [name for name in frame.columns if looks_like_a_value(name)]
        if data:
            raise ApiError(
                400,
                f"CSV body has no header row: its first row reads as data ({', '.join(data[:5])}"
                f"); the first row must name the columns; {_expected(inputs)}",
            )
        raise ApiError(
            400,
            f"none of the CSV body's columns ({', '.join(frame.columns[:30])}) is an input of "
            f"the model; {_expected(inputs)}",
        )
    return frame, match.unknown


def _delimiter(header: str, inputs: _Inputs) -> str:
    """The delimiter of a CSV body: the one whose split of the header names the most model
    inputs, then gives the most fields (a comma when nothing tells)."""
    best, best_score = ",", (-1, -1)
    header = header.rstrip("\r")
    for delimiter in DELIMITERS:
        try:
            fields = next(csv.reader([header], delimiter=delimiter), [])
        except csv.Error:  # a stray CR inside the line: polars' reading will say what is wrong
            continue
        score = (len(inputs.known.intersection(f.strip() for f in fields)), len(fields))
        if score > best_score:
            best, best_score = delimiter, score
        if delimiter == "," and score[0] == len(fields):
            break  # every field an input: the common case, settled
    return best


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
