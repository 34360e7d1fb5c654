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
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from automlops import keys
from automlops.config import CaptureSettings
from automlops.ml.predictor import Predictor
from automlops.ports import ObjectStore
from automlops.serving import wire
from automlops.serving.invocation import ApiError, InvocationLimits, read_body, respond

log = logging.getLogger(__name__)

# A caller's inference id is kept when it is short printable text without separators the
# feedback ids use; anything else is replaced by a generated one (never refused: capture must
# not change what a request answers).
_CALLER_ID = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{wire.MAX_ID_CHARS}}}")
# The body of a refused request is kept up to this many bytes (enough to see what was wrong).
ERROR_BODY_BYTES = 4096


def inference_id(headers: Headers) -> str:
    """The caller's inference id when it sent a usable one, else a new random one."""
    given = headers.get(wire.INFERENCE_ID_HEADER)
    if given is not None and _CALLER_ID.fullmatch(given):
        return given
    return os.urandom(16).hex()  # as random as uuid4, a quarter of its cost


@dataclass(frozen=True, slots=True)
class Captured:
    """One request as the hot path hands it over: raw bytes, encoded later by the writer."""

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


@functools.lru_cache(maxsize=4)
def _iso_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _iso_time(epoch: float) -> str:
    """ISO 8601 UTC with microseconds, as SageMaker writes `inferenceTime` (the second's text
    cached: a flush formats thousands of times within a few seconds)."""
    second = int(epoch)
    return f"{_iso_second(second)}.{int((epoch - second) * 1e6):06d}Z"


@functools.lru_cache(maxsize=64)
def _channel_head(mode: str, content_type: str) -> bytes:
    """The constant part of an endpointInput/endpointOutput object, up to its `data` value."""
    head = {"observedContentType": content_type, "mode": mode, "encoding": _encoding(content_type)}
    return orjson.dumps(head)[:-1] + b',"data":'


def _text(data: bytes) -> bytes:
    """`data` as a JSON string (UTF-8; an invalid byte becomes U+FFFD)."""
    return orjson.dumps(data.decode("utf-8", errors="replace"))


def capture_line(item: Captured, event_id: str) -> bytes:
    """One JSONL line in the `wire.CaptureRecord` shape.

    Assembled from bytes rather than dumped from a dict: this runs on the writer thread, which
    holds the GIL the request handlers need, once per captured request; only the request and
    answer text are escaped (measured: a third of the dict route's time). The ids need no
    escaping: generated ones are hex, a caller's matches `_CALLER_ID` (no quote, no backslash).
    """
    body = item.body if item.answer is not None else item.body[:ERROR_BODY_BYTES]
    parts = [
        b'{"captureData":{"endpointInput":',
        _channel_head("INPUT", item.content_type),
        _text(body),
        b"}",
    ]
    if item.answer is not None:
        parts += [
            b',"endpointOutput":',
            _channel_head("OUTPUT", item.answer_type),
            _text(item.answer),
            b"}",
        ]
    error = b"null" if item.error is None else orjson.dumps(item.error)
    parts.append(
        b'},"eventMetadata":{"eventId":"%s","inferenceId":"%s","inferenceTime":"%s",'
        b'"dataset":"%s","modelVersion":%d,"status":%d,"error":%s},"eventVersion":"0"}\n'
        % (
            event_id.encode(),
            item.inference_id.encode(),
            _iso_time(item.time).encode(),
            item.dataset.encode(),
            item.version,
            item.status,
            error,
        )
    )
    return b"".join(parts)


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
        self._buffer: deque[Captured] = deque()
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
                taken, self._buffer, self._buffered_bytes = self._buffer, deque(), 0
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
                lines = b"".join(capture_line(i, f"{part}-{n}") for n, i in enumerate(items))
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
) -> Response:
    """`invocation.respond`, with the request and its answer (or refusal) captured when
    sampled, and the inference id sent back in the `X-Amzn-SageMaker-Inference-Id` header."""
    ident = inference_id(request.headers)
    if writer is None or not writer.sampled():
        response = await respond(request, version, predictor, limits)
        response.headers[wire.INFERENCE_ID_HEADER] = ident
        return response
    started = time.time()
    body = await read_body(request, limits.max_body_bytes)
    content_type = request.headers.get("content-type", "")
    try:
        # The body is read once: the invocation gets it replayed through ASGI's receive.
        response = await respond(Request(request.scope, _replay(body)), version, predictor, limits)
    except ApiError as exc:
        writer.record(
            Captured(
                dataset,
                version,
                ident,
                started,
                content_type,
                body,
                None,
                "",
                exc.status,
                str(exc)[:1000],
            )
        )
        raise
    answer_type = response.media_type or wire.JSON
    writer.record(
        Captured(
            dataset, version, ident, started, content_type, body, bytes(response.body), answer_type
        )
    )
    response.headers[wire.INFERENCE_ID_HEADER] = ident
    return response


def _replay(body: bytes) -> Callable[[], Any]:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
