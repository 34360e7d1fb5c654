"""Capture lines are assembled from bytes: each must be exactly the record the dict route
gives, for every shape of request (JSON, CSV, refused, odd text)."""

from __future__ import annotations

import orjson
import pytest

from automlops.serving import wire
from automlops.serving.capture import Captured, capture_line

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
