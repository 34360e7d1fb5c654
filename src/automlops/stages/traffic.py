"""What a champion served and what came back: captured traffic read, labels ingested and joined.

Captured requests are read from two key layouts under `keys.capture_prefix(dataset, version)`
of the monitoring bucket, both holding `wire.CaptureRecord` lines:

- the inference server's own (`serving.capture`): `<yyyy-mm-dd>/<hh>/<part>.jsonl.gz`;
- SageMaker data capture, whose endpoint config names that prefix as its destination
  (`aws.hosting.data_capture_config`), SageMaker adding its own layout beneath:
  `<endpoint>/<variant>/<yyyy>/<mm>/<dd>/<hh>/<file>.jsonl`, plain JSONL whose bodies may be
  base64 (a content type the config does not list as CSV or JSON).

The prefix names the dataset and version, so both map to them alike. Captured requests
become rows with an id each: the inference id of a one-row request,
`<inference id>#<row>` in a bigger one (the ids `POST .../feedback` takes). Labels arrive as
batches in the monitoring bucket (the feedback route) or as CSVs under `feedback/<dataset>/`
of the data bucket, which `ingest_feedback_files` turns into batches once per file content.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import polars as pl
from pydantic import BaseModel, Field, ValidationError

from automlops import keys
from automlops.ports import ObjectStore
from automlops.serving import wire

_LISTED_IDS = 20  # unknown ids named in a report
# SageMaker's layout under the destination: <endpoint>/<variant>/<yyyy>/<mm>/<dd>/<hh>/<file>.
_SAGEMAKER_TAIL = re.compile(r"([^/]+)/[^/]+/(\d{4})/(\d{2})/(\d{2})/(\d{2})/[^/]+\.jsonl")


@dataclass(frozen=True)
class CaptureObject:
    """What a capture object's key says: its UTC hour and who wrote it."""

    hour: str  # yyyy-mm-dd/hh, which sorts as time does
    endpoint: str | None  # the SageMaker endpoint (None: the inference server's own capture)
    compressed: bool


def capture_object(key: str, prefix: str) -> CaptureObject | None:
    """Read a key under `prefix` (a version's capture prefix) in either layout; None for a key
    in neither."""
    hour = keys.capture_key_hour(key)
    if hour is not None:
        return CaptureObject(hour=hour, endpoint=None, compressed=True)
    match = _SAGEMAKER_TAIL.fullmatch(key.removeprefix(prefix)) if key.startswith(prefix) else None
    if match is None:
        return None
    endpoint, year, month, day, hh = match.groups()
    return CaptureObject(hour=f"{year}-{month}-{day}/{hh}", endpoint=endpoint, compressed=False)


@dataclass
class Traffic:
    """Captured requests of one version in a time window, flattened to rows."""

    rows: list[dict[str, object]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    # Per row: the decided label (classification, None when the answer does not say), the
    # value (regression), every label's probability or P(positive) alone (CSV answers).
    labels: list[str | None] = field(default_factory=list)
    values: list[float | None] = field(default_factory=list)
    probabilities: list[dict[str, float] | None] = field(default_factory=list)
    p_positive: list[float | None] = field(default_factory=list)
    hours: list[str] = field(default_factory=list)  # per row, "yyyy-mm-ddThh"
    requests: Counter[str] = field(default_factory=Counter)  # by hour
    errors: Counter[str] = field(default_factory=Counter)  # refused requests by hour
    unreadable: int = 0  # records that could not be read (counted, skipped)
    objects: int = 0

    def frame(self) -> pl.DataFrame:
        """The captured rows as text columns (what a CSV upload reads; the drift code reads
        numbers out of text)."""
        columns = sorted({name for row in self.rows for name in row})
        # Cast by polars (numbers and booleans to text as the CSV reader writes them, a key a
        # row lacks as missing); "" is missing, as in an upload.
        frame = pl.DataFrame(self.rows, schema=dict.fromkeys(columns, pl.String), strict=False)
        return frame.with_columns(pl.all().replace("", None))


def read_traffic(
    store: ObjectStore,
    bucket: str,
    dataset: str,
    version: int,
    since: datetime,
    until: datetime,
    task: str,
    *,
    endpoint: str | None = None,
) -> Traffic:
    """Every captured request of `version` with since <= time < until, in either layout.

    `endpoint`, when given, keeps only the SageMaker captures of that endpoint: a version's
    endpoint config is also the one its candidate endpoint ran under evaluation, whose test
    rows are not traffic (the server's own capture records the champion route only).

    Lines are read as plain JSON in the `wire.CaptureRecord` shape, not validated into the
    model: on a day of traffic the validation cost more than everything else together
    (measured: 2/3 of the stage's time); a line without the fields read counts as unreadable.
    """
    traffic = Traffic()
    first, last = f"{since:%Y-%m-%d/%H}", f"{until:%Y-%m-%d/%H}"
    prefix = keys.capture_prefix(dataset, version)
    for key in store.list(bucket, prefix):
        found = capture_object(key, prefix)
        if found is None or not first <= found.hour <= last:
            continue
        if endpoint is not None and found.endpoint not in (None, endpoint):
            continue
        traffic.objects += 1
        try:
            data = store.get(bucket, key)
            lines = (gzip.decompress(data) if found.compressed else data).splitlines()
        except (OSError, EOFError):
            traffic.unreadable += 1
            continue
        for line in lines:
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                at = datetime.fromisoformat(record["eventMetadata"]["inferenceTime"])
                if since <= at < until:
                    _add(traffic, record, at, task)
            except (ValueError, KeyError, TypeError, AttributeError, pl.exceptions.PolarsError):
                traffic.unreadable += 1
    return traffic


def _add(traffic: Traffic, record: dict[str, Any], at: datetime, task: str) -> None:
    """One captured request: counted in its hour, its rows and answers kept; raises
    KeyError/TypeError/ValueError for a record that is not in the capture shape."""
    hour = f"{at:%Y-%m-%dT%H}"
    meta, data = record["eventMetadata"], record["captureData"]
    output = data.get("endpointOutput")
    if int(meta.get("status", 200)) >= 400 or output is None:
        traffic.requests[hour] += 1
        traffic.errors[hour] += 1
        return
    rows = _input_rows(*_decoded(data["endpointInput"]))
    answers = _answers(*_decoded(output), task)
    if len(answers) != len(rows):
        raise ValueError("a captured answer does not have one prediction per row")
    traffic.requests[hour] += 1
    ident = str(meta.get("inferenceId") or meta["eventId"])
    for i, (row, answer) in enumerate(zip(rows, answers, strict=True)):
        traffic.rows.append(row)
        traffic.ids.append(ident if len(rows) == 1 else f"{ident}#{i}")
        traffic.hours.append(hour)
        label, value, probabilities, p = answer
        traffic.labels.append(label)
        traffic.values.append(value)
        traffic.probabilities.append(probabilities)
        traffic.p_positive.append(p)


def _decoded(captured: dict[str, Any]) -> tuple[str, str]:
    """(CSV or JSON, the body as text) of a captured body; SageMaker writes a body whose
    content type its config does not list as BASE64, told apart by the observed type."""
    encoding, data = captured["encoding"], captured["data"]
    if encoding != "BASE64":
        return encoding, data
    try:
        text = base64.b64decode(data, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("a captured body is not base64 text") from None
    media = str(captured.get("observedContentType", "")).split(";")[0].strip().lower()
    return ("CSV" if media in (wire.CSV, "application/csv") else "JSON"), text


def _input_rows(encoding: str, data: str) -> list[dict[str, object]]:
    if encoding == "CSV":
        frame = pl.read_csv(io.StringIO(data), infer_schema=False, null_values=[""])
        return frame.to_dicts()
    payload = orjson.loads(data)
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list) or not all(isinstance(r, dict) for r in instances):
        raise ValueError("not an invocation body")
    return instances


Answer = tuple[str | None, float | None, dict[str, float] | None, float | None]


def _answers(encoding: str, data: str, task: str) -> list[Answer]:
    """(label, value, probabilities, P(positive)) per answered row."""
    if encoding == "CSV":
        fields = wire.read_csv_response(data.encode())
        if task == "regression":
            return [(None, float(f), None, None) for f in fields]
        if task == "binary":
            return [(None, None, None, float(f)) for f in fields]
        return [(f, None, None, None) for f in fields]
    out: list[Answer] = []
    for item in wire.read_response(data.encode()).predictions:
        if isinstance(item, wire.ValuePrediction):
            out.append((None, item.value, None, None))
        else:
            out.append((item.label, None, item.probabilities, None))
    return out


class LabelJoin(BaseModel):
    """How the labels received matched what was served."""

    batches: int = 0
    labels: int = 0  # label records read, duplicates included
    distinct: int = 0
    duplicates: int = 0  # records for an id already labelled (the last one wins)
    matched: int = 0  # captured rows in the window with a label
    unknown: int = 0  # labelled ids not among the captured rows of the window
    unknown_ids: list[str] = Field(default_factory=list)  # the first few
    files_ingested: list[str] = Field(default_factory=list)  # feedback CSVs read this time
    files_refused: dict[str, str] = Field(default_factory=dict)  # CSV key -> why


def ingest_feedback_files(
    store: ObjectStore,
    data_bucket: str,
    monitoring_bucket: str,
    dataset: str,
    now: datetime,
    join: LabelJoin,
) -> None:
    """Turn each new CSV under feedback/<dataset>/ (columns id and label or value) into a
    labels batch named by the file's ETag, so a file is read once however often the monitor
    runs; a file that cannot be read is named in `join.files_refused` and left where it is."""
    done = {
        key.rsplit("-csv-", 1)[1].removesuffix(".jsonl")
        for key in store.list(monitoring_bucket, keys.labels_prefix(dataset))
        if "-csv-" in key
    }
    for key in store.list(data_bucket, keys.feedback_prefix(dataset)):
        info = store.head(data_bucket, key)
        if info is None or info.etag in done or not key.lower().endswith(".csv"):
            continue
        try:
            records = _csv_labels(store.get(data_bucket, key), now, key)
        except (ValueError, pl.exceptions.PolarsError) as exc:
            join.files_refused[key] = str(exc).splitlines()[0][:300]
            continue
        batch = keys.labels_key(dataset, now, f"csv-{info.etag}")
        store.put(monitoring_bucket, batch, wire.label_lines(records))
        join.files_ingested.append(key)


def _csv_labels(data: bytes, now: datetime, source: str) -> list[wire.LabelRecord]:
    frame = pl.read_csv(io.BytesIO(data), infer_schema=False)
    if "id" not in frame.columns or not {"label", "value"} & set(frame.columns):
        raise ValueError(f"expected columns id and label (or value), found {frame.columns}")
    column = "label" if "label" in frame.columns else "value"
    records = []
    for i, (ident, outcome) in enumerate(frame.select("id", column).iter_rows()):
        try:
            item = wire.FeedbackItem.model_validate({"id": ident, column: outcome})
        except ValidationError:
            raise ValueError(f"line {i + 2}: not an id with a {column}") from None
        records.append(
            wire.LabelRecord(
                id=item.id,
                label=None if item.label is None else wire.label_text(item.label),
                value=item.value,
                received_at=now.isoformat(),
                source=source,
            )
        )
    return records


def read_labels(
    store: ObjectStore, bucket: str, dataset: str, join: LabelJoin
) -> dict[str, wire.LabelRecord]:
    """The latest label of every id: batches in arrival order (their keys sort so), lines in
    order, a later one replacing an earlier one (counted as a duplicate)."""
    latest: dict[str, wire.LabelRecord] = {}
    for key in store.list(bucket, keys.labels_prefix(dataset)):
        join.batches += 1
        for record in wire.read_label_lines(store.get(bucket, key)):
            join.labels += 1
            if record.id in latest:
                join.duplicates += 1
            latest[record.id] = record
    join.distinct = len(latest)
    return latest


def join_labels(
    traffic: Traffic, latest: dict[str, wire.LabelRecord], join: LabelJoin
) -> list[tuple[int, wire.LabelRecord]]:
    """(row index in `traffic`, its label) for every labelled captured row; the labels that
    match no captured row are counted as unknown."""
    index = {ident: i for i, ident in enumerate(traffic.ids)}
    matched = [(index[ident], label) for ident, label in latest.items() if ident in index]
    unknown = [ident for ident in latest if ident not in index]
    join.matched, join.unknown = len(matched), len(unknown)
    join.unknown_ids = unknown[:_LISTED_IDS]
    return sorted(matched, key=lambda pair: pair[0])
