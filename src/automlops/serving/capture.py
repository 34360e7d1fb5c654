"""Data capture: what the champion served, written to the monitoring bucket off the hot path.

A request costs the server an inference id, a clock read and one append to a bounded buffer
(the raw request and answer bytes, nothing parsed or encoded); a background thread writes the
buffer every `flush_interval_s` as gzip JSONL objects, one per dataset, version and UTC hour
(`keys.capture_key`), in SageMaker's data-capture record shape (`wire.CaptureRecord`). A full
buffer drops the request and counts it: capture never makes a caller wait. What is lost when
the process is killed: at most the buffer, i.e. the last `flush_interval_s` of traffic; a
normal shutdown (the app's lifespan) writes it.

Only the champion route (`/endpoints/{dataset}/invocations`) is captured: that is the live
traffic; calls by version number are evaluations and tests (the evaluate stage scores test
splits that way), which would pass for traffic otherwise.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import random
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from automlops import keys
from automlops.config import CaptureSettings
from automlops.ml.predictor import Predictor
from automlops.ports import ObjectStore
from automlops.serving import wire
from automlops.serving.invocation import (
    ApiError,
    InvocationLimits,
    read_body,
    respond_to_body,
)

log = logging.getLogger(__name__)

# A caller's inference id is kept when it is short printable text without separators the
# feedback ids use; anything else is replaced by a generated one (never refused: capture must
# not change what a request answers).
_CALLER_ID = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{wire.MAX_ID_CHARS}}}")
# The body of a refused request is kept up to this many bytes (enough to see what was wrong).
ERROR_BODY_BYTES = 4096


def inference_id(headers: Headers) -> str:
    """The caller's inference id when it sent a usable one, else a new random one.

    Random, not counted: an id is what feedback names to label a prediction, so one caller's
    ids must not tell another's (a counter would; its saving, a fraction of a microsecond, is
    nothing beside a request)."""
    given = headers.get(wire.INFERENCE_ID_HEADER)
    if given is not None and _CALLER_ID.fullmatch(given):
        return given
    return os.urandom(16).hex()


class Captured(NamedTuple):
    """One request as the hot path hands it over: raw bytes, encoded later by the writer.

    A tuple: built in a fraction of a frozen dataclass's time, and, holding no container, let
    go by the garbage collector's tracking, so a full buffer costs its collections nothing.
    """

    dataset: str
    version: int
    inference_id: str
    time: float  # epoch seconds
    content_type: str
    body: bytes
    answer: bytes | None  # None: refused
    answer_type: str
    status: int = 200
    error: str | None = None


@dataclass(frozen=True)
class CaptureStats:
    """Counters since start: requests kept, dropped (buffer full), written, failed writes."""

    captured: int
    dropped: int
    written: int
    objects: int
    write_errors: int
    buffered: int


def _encoding(content_type: str) -> str:
    media = content_type.split(";")[0].strip().lower()
    return "CSV" if media in (wire.CSV, "application/csv") else "JSON"


@functools.lru_cache(maxsize=64)
def _channel_head(mode: str, content_type: str) -> bytes:
    """The constant part of an endpointInput/endpointOutput object, up to its `data` value."""
    head = {"observedContentType": content_type, "mode": mode, "encoding": _encoding(content_type)}
    return orjson.dumps(head)[:-1] + b',"data":'


# A record's line, from its parts (the input and output channels already whole); the ids need
# no escaping: generated ones are hex, a caller's matches `_CALLER_ID` (no quote, no
# backslash), an event id is the writer's own.
_LINE = (
    b'{"captureData":{"endpointInput":%s%s}%s},"eventMetadata":{"eventId":"%s",'
    b'"inferenceId":"%s","inferenceTime":"%s.%06dZ","dataset":"%s","modelVersion":%d,'
    b'"status":%d,"error":%s},"eventVersion":"0"}\n'
)


def capture_lines(items: Sequence[Captured], event_ids: Iterable[str]) -> bytes:
    """JSONL of `items` in the `wire.CaptureRecord` shape, `event_ids` in the same order.

    Assembled from bytes, not dumped from dicts: this runs on the writer thread, which holds
    the GIL the request handlers need, once per captured request. Only the request and answer
    text are escaped (orjson); each record is one `%` format, and the parts common to many
    records (channel heads, the time's second) are worked out once (measured: a third of the
    dict route's time, and half of a line-by-line assembly's).
    """
    dumps = orjson.dumps
    heads: dict[tuple[str, str], bytes] = {}
    second_of, second_text = -1, b""
    lines = []
    for item, event_id in zip(items, event_ids, strict=True):
        dataset, version, ident, at, content_type, body, answer, answer_type, status, error = item
        head = heads.get(("INPUT", content_type))
        if head is None:
            head = heads["INPUT", content_type] = _channel_head("INPUT", content_type)
        if answer is None:
            output = b""
            body = body[:ERROR_BODY_BYTES]
        else:
            out_head = heads.get(("OUTPUT", answer_type))
            if out_head is None:
                out_head = heads["OUTPUT", answer_type] = _channel_head("OUTPUT", answer_type)
            output = b',"endpointOutput":%s%s}' % (
                out_head,
                dumps(answer.decode("utf-8", errors="replace")),
            )
        second = int(at)
        if second != second_of:  # requests come in time order: one strftime per second
            second_of = second
            second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        lines.append(
            _LINE
            % (
                head,
                dumps(body.decode("utf-8", errors="replace")),  # an invalid byte: U+FFFD
                output,
                event_id.encode(),
                ident.encode(),
                second_text,
                int((at - second) * 1e6),
                dataset.encode(),
                version,
                status,
                b"null" if error is None else dumps(error),
            )
        )
    return b"".join(lines)


def capture_line(item: Captured, event_id: str) -> bytes:
    """One JSONL line in the `wire.CaptureRecord` shape (`capture_lines` of one request)."""
    return capture_lines([item], [event_id])


class CaptureWriter:
    """The bounded buffer and the thread that writes it to `bucket` of `store`.

    One lock guards the buffer and its counters; the hot path holds it for an append, the
    writer for swapping the buffer out (encoding and writing happen outside it).
    """

    def __init__(
        self,
        store: ObjectStore,
        bucket: str,
        settings: CaptureSettings,
        *,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.settings = settings
        self._rand = rand
        self._buffer: list[Captured] = []
        self._buffered_bytes = 0
        self._captured = self._dropped = 0
        self._written = self._objects = self._write_errors = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def sampled(self) -> bool:
        """Whether to capture the next request (the sample rate applied)."""
        rate = self.settings.sample_rate
        return rate >= 1.0 or (rate > 0.0 and self._rand() < rate)

    def record(self, item: Captured) -> bool:
        """Buffer one request; False (and counted) when the buffer is full. Never blocks."""
        size = len(item.body) + (len(item.answer) if item.answer is not None else 0)
        with self._lock:
            if (
                len(self._buffer) >= self.settings.buffer_size
                or self._buffered_bytes + size > self.settings.buffer_bytes
            ):
                self._dropped += 1
                return False
            self._buffer.append(item)
            self._buffered_bytes += size
            self._captured += 1
        if self._thread is None:
            self.start()
        return True

    def stats(self) -> CaptureStats:
        """The counters now."""
        return CaptureStats(
            captured=self._captured,
            dropped=self._dropped,
            written=self._written,
            objects=self._objects,
            write_errors=self._write_errors,
            buffered=len(self._buffer),
        )

    def start(self) -> None:
        """Start the writer thread (idempotent; `record` starts it on first use)."""
        with self._flush_lock:
            if self._thread is None:
                self._stopping.clear()
                self._thread = threading.Thread(
                    target=self._run, name="capture-writer", daemon=True
                )
                self._thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the thread and write what is buffered."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.settings.flush_interval_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write everything buffered now, one object per (dataset, version, hour); the number
        of requests written. A failed write is logged and counted, and its requests are lost:
        retrying would grow the buffer behind a store that is down."""
        with self._flush_lock:
            with self._lock:
                taken, self._buffer, self._buffered_bytes = self._buffer, [], 0
            if not taken:
                return 0
            groups: dict[tuple[str, int, int], list[Captured]] = defaultdict(list)
            for item in taken:
                groups[(item.dataset, item.version, int(item.time // 3600))].append(item)
            written = 0
            for (dataset, version, hour), items in groups.items():
                at = datetime.fromtimestamp(hour * 3600, UTC)
                part = f"{time.strftime('%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}"
                key = keys.capture_key(dataset, version, at, part)
                lines = capture_lines(items, [f"{part}-{n}" for n in range(len(items))])
                # Level 1: a few times faster than the default for 20 % more bytes (JSONL of
                # repeated column names compresses to about 5 % either way).
                data = gzip.compress(lines, compresslevel=1)
                try:
                    self.store.put(self.bucket, key, data)
                except Exception:  # any store failure: the server keeps serving regardless
                    self._write_errors += 1
                    log.exception("capture: writing %d requests to %s failed", len(items), key)
                    continue
                written += len(items)
                self._objects += 1
            with self._lock:
                self._written += written
            return written

    def lifespan(
        self, inner: Callable[[Any], AbstractAsyncContextManager[Any]]
    ) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
        """Wrap an app's lifespan: the writer starts with the app and is flushed when it
        stops (a normal shutdown loses nothing)."""

        @asynccontextmanager
        async def wrapped(app: Any) -> AsyncIterator[Any]:
            self.start()
            try:
                async with inner(app) as state:
                    yield state
            finally:
                self.close()

        return wrapped


def capture_writer(
    store: ObjectStore, bucket: str, settings: CaptureSettings
) -> CaptureWriter | None:
    """The writer an app captures with, None when capture is off."""
    return CaptureWriter(store, bucket, settings) if settings.enabled else None


async def respond_captured(
    writer: CaptureWriter | None,
    dataset: str,
    request: Request,
    version: int,
    predictor: Predictor,
    limits: InvocationLimits,
    csv_header: bytes | None = None,
) -> Response:
    """`invocation.respond`, with the request and its answer (or refusal) captured when
    sampled, and the inference id sent back in the `X-Amzn-SageMaker-Inference-Id` header
    (`csv_header` as `respond`'s: the body is captured as the caller sent it).

    What capture adds to a request: a clock read, a tuple and an append under a lock; the
    body is read once and answered as read (`respond_to_body`), the id header is set with the
    others."""
    started = time.perf_counter()
    headers = request.headers
    ident = inference_id(headers)
    body = await read_body(request, limits.max_body_bytes)
    answering = respond_to_body(
        body,
        headers,
        version,
        predictor,
        limits,
        csv_header=csv_header,
        started=started,
        extra_headers={wire.INFERENCE_ID_HEADER: ident},
    )
    if writer is None or not writer.sampled():
        return await answering
    at = time.time()
    content_type = headers.get("content-type", "")
    try:
        response = await answering
    except ApiError as exc:
        error = str(exc)[:1000]
        writer.record(
            Captured(dataset, version, ident, at, content_type, body, None, "", exc.status, error)
        )
        raise
    answer_type = response.media_type or wire.JSON
    writer.record(
        Captured(dataset, version, ident, at, content_type, body, bytes(response.body), answer_type)
    )
    return response
