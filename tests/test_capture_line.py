"""Capture lines are assembled from bytes: each must be exactly the record the dict route
gives, for every shape of request (JSON, CSV, refused, odd text)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from starlette.datastructures import Headers

from automlops.serving import wire
from automlops.serving.capture import Captured, capture_line, capture_lines, inference_id

CASES = [
    Captured(
        "cancer",
        1,
        "a1b2",
        1_764_500_000.25,
        wire.JSON,
        b'{"instances": [{"a": 1}]}',
        b'{"model_version":1,"predictions":[{"value":2.0}]}',
        wire.JSON,
    ),
    Captured(
        "d.s-1",
        12,
        "caller:7_x-y.z",
        1.5,
        "text/csv; charset=utf-8",
        'a,b\n1,"é ""q"""\n'.encode() + b"\xff\x00",
        b"0.5\n",
        "text/csv",
    ),
    Captured("d", 3, "x", 0.0, "", b'\\"\n\t' * 3000, None, "", 400, 'bad "body"\n\\ é'),
]


@pytest.mark.parametrize("item", CASES, ids=["json", "csv-odd-bytes", "refused"])
def test_a_line_is_the_capture_record_of_the_request(item: Captured) -> None:
    line = capture_line(item, "p-7")
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = wire.read_capture_lines(line)[0]
    meta, data = record.eventMetadata, record.captureData
    assert (meta.eventId, meta.inferenceId, meta.dataset) == (
        "p-7",
        item.inference_id,
        item.dataset,
    )
    assert (meta.modelVersion, meta.status, meta.error) == (item.version, item.status, item.error)
    sent = item.body if item.answer is not None else item.body[:4096]
    assert data.endpointInput.data == sent.decode("utf-8", errors="replace")
    assert data.endpointInput.encoding == ("CSV" if "csv" in item.content_type else "JSON")
    assert data.endpointInput.observedContentType == item.content_type
    if item.answer is None:
        assert data.endpointOutput is None
    else:
        assert data.endpointOutput is not None
        assert data.endpointOutput.data == item.answer.decode()
    parsed = orjson.loads(line)
    assert parsed["eventVersion"] == "0"
    assert parsed["eventMetadata"]["inferenceTime"].endswith("Z")


def test_a_batch_is_its_lines_in_order_across_seconds() -> None:
    """The writer encodes a batch at once (the time's second worked out once per second): the
    same bytes as each request alone, every record's time its own."""
    times = [1_764_500_000.999999, 1_764_500_001.0, 1_764_500_001.5, 1_764_503_600.25]
    items = [item._replace(time=at) for at, item in zip(times, CASES * 2, strict=False)]
    ids = [f"part-{n}" for n in range(len(items))]
    batch = capture_lines(items, ids)
    assert batch == b"".join(capture_line(item, i) for item, i in zip(items, ids, strict=True))
    records = wire.read_capture_lines(batch)
    stamps = [r.eventMetadata.inferenceTime for r in records]
    assert stamps == [
        datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for at in times
    ]
    assert [r.eventMetadata.eventId for r in records] == ids


def test_generated_inference_ids_are_unique_hex_and_a_callers_is_kept() -> None:
    ids = {inference_id(Headers({})) for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    # Random, not counted: one answer's id does not tell the next (feedback labels by id).
    first, second = (int(inference_id(Headers({})), 16) for _ in range(2))
    assert abs(second - first) > 2**64
    assert inference_id(Headers({wire.INFERENCE_ID_HEADER: "caller:7"})) == "caller:7"
    # Not an id the feedback could name (a `#` separates rows): replaced, never refused.
    replaced = inference_id(Headers({wire.INFERENCE_ID_HEADER: "a#1"}))
    assert replaced != "a#1" and len(replaced) == 32
