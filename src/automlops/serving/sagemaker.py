"""The SageMaker container contract for one model: `GET /ping`, `POST /invocations` on 8080.

SageMaker unpacks the endpoint's model.tar.gz into `/opt/ml/model` (or `$SM_MODEL_DIR`) and
starts the image with `serve`. Requests and responses are exactly those of
`POST /endpoints/{dataset}/invocations` of the main app (same parsing, errors, formats and
OpenAPI declaration, all from `serving.invocation`): this module only swaps the registry
lookup for the one model in the directory.

Capture: given a `CaptureWriter` (the container's entry point, `aws.container`, builds one
over S3 when the model's environment names a capture bucket), `/invocations` records what it
serves as the main app's champion route does, in the same layout, so the monitor reads AWS
traffic as it reads local traffic. A serverless endpoint's container may be frozen between
invocations, which stops the writer's timer; so each request also checks whether the buffer is
due (`CaptureFlush`: older than the flush interval, or `FLUSH_REQUESTS` requests) and writes it
before answering. SIGTERM (uvicorn's shutdown, the app's lifespan) writes what is buffered.
What can be lost: the requests buffered since the last write when the container is reclaimed
while frozen without a SIGTERM: at most `FLUSH_REQUESTS` requests, or the flush interval's
worth of traffic before the container's last request. Requests the project sends itself
(evaluation and canary rows, through `SageMakerModelHost.invoke`) carry
`NO_CAPTURE_ATTRIBUTE` in SageMaker's custom attributes and are not captured: they are not
traffic.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel

from automlops.config import max_instances_setting
from automlops.errors import DataError, PermanentError
from automlops.ml.artifact import METADATA, TRANSFORM, ModelArtifact, ModelMetadata
from automlops.ml.batch import BatchScorer, ScoreOptions, TableFormat, open_table, table_bytes
from automlops.ml.columns.transform import FittedTransform
from automlops.ml.predictor import Predictor
from automlops.ports import ObjectStore
from automlops.serving import wire
from automlops.serving.capture import CaptureWriter, respond_captured
from automlops.serving.invocation import (
    INVOCATION_RESPONSES,
    ApiError,
    InvocationLimits,
    OrjsonResponse,
    describe,
    handle_api_errors,
    invocation_body,
    read_body,
    respond,
    with_csv_header,
)
from automlops.serving.transform_batches import MiniBatchLog, MiniBatchRecord, mini_batch_record
from automlops.serving.wire import EndpointDescription

DEFAULT_MODEL_DIR = "/opt/ml/model"
DEFAULT_PORT = 8080
ENV_VERSION = "AUTOMLOPS_MODEL_VERSION"
ENV_DATASET = "AUTOMLOPS_DATASET"
# Set by a Batch Transform job: the scored file's header line, which every mini-batch but the
# first lacks (`aws/transform.py`).
ENV_CSV_HEADER = "AUTOMLOPS_CSV_HEADER"
# Set by a Batch Transform job: its scoring run's options (`ml.batch.ScoreOptions` as JSON). The
# container then answers each mini-batch as the local score stage writes a file's rows.
ENV_SCORE_OPTIONS = "AUTOMLOPS_SCORE_OPTIONS"
# Set by a Batch Transform job: its scoring run (EventBridge's detail carries them back to the
# job's end) and the bucket the container records each mini-batch's outcome in
# (`serving.transform_batches`; absent: nothing is recorded).
ENV_SCORE_DATASET = "AUTOMLOPS_SCORE_DATASET"
ENV_SCORE_RUN = "AUTOMLOPS_SCORE_RUN"
ENV_SCORE_BUCKET = "AUTOMLOPS_SCORE_BUCKET"
# The monitoring bucket the endpoint's traffic is captured to (set when hosting creates the
# model; absent: nothing is captured).
ENV_CAPTURE_BUCKET = "AUTOMLOPS_CAPTURE_BUCKET"
# SageMaker forwards InvokeEndpoint's CustomAttributes verbatim in this header.
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
# The custom attribute of a request that is not traffic (evaluation, canary).
NO_CAPTURE_ATTRIBUTE = "automlops-capture=off"
# A buffer of this many requests is written at the next request, whatever its age.
FLUSH_REQUESTS = 1000
# Rows of a mini-batch left out that are named in the log (the rest counted).
_LOGGED_ROW_ERRORS = 20

log = logging.getLogger(__name__)


class ContainerStatus(BaseModel):
    """The answer of the container's `GET /ping`."""

    status: str
    dataset: str
    model_version: str


def model_dir(explicit: str | Path | None = None) -> Path:
    """The model directory: explicit, else $SM_MODEL_DIR, else /opt/ml/model."""
    return Path(explicit or os.environ.get("SM_MODEL_DIR") or DEFAULT_MODEL_DIR)


def load_model_dir(path: str | Path) -> Predictor:
    """Load an unpacked model.tar.gz (metadata.json, transform.json, the model file).

    A directory still holding the archive itself (model.tar.gz) is read from the archive.
    """
    root = Path(path)
    archive = root / "model.tar.gz"
    if not (root / METADATA).exists() and archive.exists():
        return Predictor(ModelArtifact.from_tar_gz(archive.read_bytes(), str(archive)))
    try:
        metadata = ModelMetadata.model_validate_json((root / METADATA).read_bytes())
        transform = FittedTransform.model_validate_json((root / TRANSFORM).read_bytes())
        model = (root / metadata.model_file).read_bytes()
    except FileNotFoundError as exc:
        raise PermanentError(f"{root}: not an automlops model directory: {exc}") from None
    except ValueError as exc:
        raise PermanentError(f"{root}: invalid model metadata: {exc}") from None
    return Predictor(ModelArtifact(metadata=metadata, transform=transform, model=model))


class CaptureFlush:
    """When a request finds the capture buffer due for a write: `FLUSH_REQUESTS` requests
    buffered, or some buffered and the last write (or the start) longer ago than the writer's
    flush interval. The writer's own timer does the same while the container runs; this check
    is what still happens in a container frozen between invocations."""

    def __init__(self, writer: CaptureWriter, clock: Callable[[], float] = time.monotonic) -> None:
        self.writer = writer
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def due(self) -> bool:
        """Whether the buffer should be written now."""
        buffered = self.writer.stats().buffered
        if buffered >= FLUSH_REQUESTS:
            return True
        return buffered > 0 and self._clock() - self._last >= self.writer.settings.flush_interval_s

    def flush_if_due(self) -> int:
        """Write the buffer when due (one caller at a time); the requests written."""
        if not self.due() or not self._lock.acquire(blocking=False):
            return 0
        try:
            written = self.writer.flush()
            self._last = self._clock()
            return written
        finally:
            self._lock.release()


def captured(request: Request) -> bool:
    """Whether a request is traffic to capture (not one the project sends itself)."""
    attributes = request.headers.get(CUSTOM_ATTRIBUTES_HEADER, "")
    return NO_CAPTURE_ATTRIBUTE not in (a.strip() for a in attributes.split(","))


@dataclass(frozen=True)
class MiniBatchAnswer:
    """A mini-batch's answer (CSV rows) and its record (rows read, scored, left out)."""

    rows: bytes
    record: MiniBatchRecord


def score_mini_batch(
    predictor: Predictor, options: ScoreOptions, body: bytes, header: bytes | None
) -> MiniBatchAnswer:
    """A Batch Transform mini-batch (CSV lines of the scored file) answered as the local score
    stage writes them (`ml.batch.BatchScorer`): the input's columns (or the id column), then
    `prediction` and `probability_<label>` per class (and the explanation columns when asked),
    in the file's delimiter. The file's header line is answered with the output's header; the
    other mini-batches, which SageMaker sends without it, get `header` to be read and answer
    rows only, so the assembled output is one CSV with one header. A row that cannot be scored
    is left out, logged (the container's log) and named in the mini-batch's record, from which
    the job's end writes the run's errors file as the local stage does.
    """
    first_line = body.split(b"\n", 1)[0].rstrip(b"\r").removeprefix(b"\xef\xbb\xbf")
    has_header = header is None or first_line == header.rstrip(b"\r\n")
    data = body if has_header or header is None else with_csv_header(body, header)
    parts: list[bytes] = []
    with tempfile.TemporaryDirectory(prefix="automlops-transform-") as tmp:
        source = Path(tmp) / "mini-batch.csv"
        source.write_bytes(data)
        reader = open_table(source, TableFormat.csv)
        scorer = BatchScorer(predictor, options, reader.names)
        errors = []
        read = 0
        for chunk in reader.chunks:
            read += chunk.table.num_rows
            scored = scorer.score(chunk, reader.skipped)
            errors += scored.errors
            table = scorer.output(chunk, scored.predictions)
            # Each chunk's CSV starts with the header line: kept once, for the file's header.
            written = table_bytes(table, reader.format)
            head, _, rows = written.partition(b"\n")
            if has_header and not parts:
                parts.append(head + b"\n")
            parts.append(rows)
        errors = reader.skipped + errors
    for error in errors[:_LOGGED_ROW_ERRORS]:
        log.warning("row %d left out (%s): %s", error.row, error.column, error.message)
    if len(errors) > _LOGGED_ROW_ERRORS:
        log.warning("%d more rows of this mini-batch left out", len(errors) - _LOGGED_ROW_ERRORS)
    # Rows numbered in `data`, which has the header line whether `body` has it or not.
    record = mini_batch_record(data, True, read + len(reader.skipped), errors)
    # SageMaker ends each answer with a newline itself (AssembleWith: Line).
    return MiniBatchAnswer(b"".join(parts).rstrip(b"\n"), record)


def transform_batch_log(
    store: ObjectStore, environ: Mapping[str, str] = os.environ
) -> MiniBatchLog | None:
    """Where a transform job's container records its mini-batches: the run and bucket its
    environment names (`aws.transform` sets them); None outside a transform job."""
    bucket = environ.get(ENV_SCORE_BUCKET)
    dataset = environ.get(ENV_SCORE_DATASET)
    run_id = environ.get(ENV_SCORE_RUN)
    if not bucket or not dataset or not run_id:
        return None
    return MiniBatchLog(store, bucket, dataset, run_id)


def create_sagemaker_app(
    path: str | Path | None = None,
    *,
    version: int | str | None = None,
    max_body_bytes: int = 6 * 1024 * 1024,
    max_instances: int | None = None,
    capture: CaptureWriter | None = None,
    batches: MiniBatchLog | None = None,
) -> FastAPI:
    """The contract app over one model, loaded now so a broken model fails the container start.

    `version` (default $AUTOMLOPS_MODEL_VERSION, set by the deploy stage) is echoed as
    `model_version` in responses. 6 MB is above SageMaker's own payload limits.
    `max_instances` (default $AUTOMLOPS_MAX_INSTANCES, else 100,000) caps rows per request.
    `capture` records the traffic `/invocations` serves (see the module); None: nothing is.
    A Batch Transform job (its CSV header in the environment) is never captured; `batches`
    records each of its mini-batches (`transform_batch_log`; None: only logged).
    """
    directory = model_dir(path)
    predictor = load_model_dir(directory)
    label = str(version if version is not None else os.environ.get(ENV_VERSION, "1"))
    numeric = int(label) if label.isdigit() else 0
    dataset = os.environ.get(ENV_DATASET) or predictor.metadata.dataset
    app = FastAPI(
        title="automlops model (SageMaker contract)", default_response_class=OrjsonResponse
    )
    app.state.predictor = predictor
    limits = InvocationLimits(
        max_body_bytes, max_instances if max_instances is not None else max_instances_setting()
    )
    handle_api_errors(app)
    header = os.environ.get(ENV_CSV_HEADER)
    csv_header = header.encode() if header else None
    given_options = os.environ.get(ENV_SCORE_OPTIONS)
    score_options = (
        None if given_options is None else ScoreOptions.model_validate_json(given_options)
    )
    if score_options is not None:
        csv_header = csv_header or b""
    if csv_header is not None:
        capture = None  # a transform job scores a file: not traffic
    flusher = None if capture is None else CaptureFlush(capture)
    app.state.capture = capture
    if capture is not None:
        app.router.lifespan_context = capture.lifespan(app.router.lifespan_context)

    @app.get("/ping")
    async def ping() -> ContainerStatus:  # async: answered on the loop, needing no pool thread
        """Health check: 200 once the model is loaded (it is, or the app would not exist)."""
        return ContainerStatus(status="ok", dataset=dataset, model_version=label)

    @app.get("/model")
    def describe_model() -> EndpointDescription:
        """The model's task, input columns and labels (as GET /endpoints/{dataset})."""
        return describe(dataset, numeric, predictor)

    @app.post("/invocations", openapi_extra=invocation_body(), responses=INVOCATION_RESPONSES)
    async def invocations(request: Request) -> Response:
        """Predict raw rows: JSON `{"instances": [...]}` or CSV with a header."""
        if score_options is not None:  # a Batch Transform job's mini-batch
            body = await read_body(request, limits.max_body_bytes)
            try:
                answer = await asyncio.to_thread(
                    score_mini_batch, predictor, score_options, body, csv_header or None
                )
            except (DataError, PermanentError) as exc:
                raise ApiError(400, str(exc)) from None
            if batches is not None:  # before the answer: a record that fails fails the batch
                await asyncio.to_thread(batches.write, body, answer.record)
            return Response(answer.rows, media_type=wire.CSV)
        if flusher is None:
            return await respond(request, numeric, predictor, limits, csv_header)
        writer = capture if captured(request) else None
        response = await respond_captured(writer, dataset, request, numeric, predictor, limits)
        if flusher.due():  # the write off the loop; this request waits for it
            await asyncio.to_thread(flusher.flush_if_due)
        return response

    return app


def serve(
    path: str | Path | None = None,
    *,
    host: str = "0.0.0.0",
    port: int | None = None,
    capture: CaptureWriter | None = None,
    batches: MiniBatchLog | None = None,
) -> None:
    """Run the contract app (the container's `serve` command); one process, model loaded once.
    uvicorn's shutdown on SIGTERM runs the app's lifespan, which writes the capture buffer."""
    import uvicorn

    from automlops.serving.lean_imports import import_learner_libraries

    import_learner_libraries()  # first, while this process has no other thread
    port = port or int(os.environ.get("SAGEMAKER_BIND_TO_PORT", DEFAULT_PORT))
    app = create_sagemaker_app(path, capture=capture, batches=batches)
    uvicorn.run(app, host=host, port=port, log_level="info")
