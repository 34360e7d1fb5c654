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
import functools
import gzip
import io
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
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
_READERS = 4  # capture objects read at once (at most one per core)
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


# What a captured request's envelope holds, read column-wise (the bodies stay text here).
_CHANNEL = pl.Struct({"encoding": pl.String, "data": pl.String})
_ENVELOPE = {
    "captureData": pl.Struct({"endpointInput": _CHANNEL, "endpointOutput": _CHANNEL}),
    "eventMetadata": pl.Struct(
        {
            "eventId": pl.String,
            "inferenceId": pl.String,
            "inferenceTime": pl.String,
            "status": pl.Int64,
        }
    ),
}
# The inference server and SageMaker both write UTC with a Z and microseconds.
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"
# Per answered row: the decided label (classification; None when the answer does not say), the
# value (regression), P(positive) alone (CSV answers of a binary model), every label's
# probability as a JSON object (read back for the labelled rows only).
_ANSWER_SCHEMA = {
    "id": pl.String,
    "hour": pl.String,  # yyyy-mm-ddThh
    "label": pl.String,
    "value": pl.Float64,
    "p_positive": pl.Float64,
    "probabilities": pl.String,
}


class _Fallback(Exception):
    """An object the column-wise reader cannot vouch for: read line by line instead."""


@dataclass
class Traffic:
    """Captured requests of one version in a time window, flattened to rows: the inputs as
    text columns and one answer row each, in the order they were served.

    Held column-wise (polars), not as a dict per row: a day of traffic is a million rows.
    """

    inputs: pl.DataFrame = field(default_factory=pl.DataFrame)
    answers: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_ANSWER_SCHEMA))
    requests: Counter[str] = field(default_factory=Counter)  # by hour
    errors: Counter[str] = field(default_factory=Counter)  # refused requests by hour
    unreadable: int = 0  # records that could not be read (counted, skipped)
    objects: int = 0

    @property
    def height(self) -> int:
        """Captured rows."""
        return self.answers.height

    @property
    def ids(self) -> list[str]:
        """Each row's feedback id."""
        return self.answers["id"].to_list()

    @property
    def hours(self) -> list[str]:
        """Each row's UTC hour, yyyy-mm-ddThh."""
        return self.answers["hour"].to_list()

    @property
    def labels(self) -> list[str | None]:
        return self.answers["label"].to_list()

    @property
    def values(self) -> list[float | None]:
        return self.answers["value"].to_list()

    @functools.cached_property
    def rows(self) -> list[dict[str, object]]:
        """Each row's inputs as a dict (text; None for missing), made once on first use:
        for a few rows; `frame()` for many."""
        return self.inputs.to_dicts()

    def frame(self) -> pl.DataFrame:
        """The captured rows as text columns, named in sorted order (what a CSV upload reads;
        the drift code reads numbers out of text); "" is missing, as in an upload."""
        return self.inputs

    def probabilities_at(self, rows: list[int]) -> list[dict[str, float] | None]:
        """Every label's probability of the given rows (None: the answer had none)."""
        texts = self.answers["probabilities"].gather(rows).to_list() if rows else []
        return [None if t is None else _probabilities(t) for t in texts]


def _probabilities(text: str) -> dict[str, float]:
    # A label an answer lacked is null in the column-wise text: absent, as in the answer.
    return {k: float(v) for k, v in orjson.loads(text).items() if v is not None}


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

    Objects are read on every core, each into frames (no dict per row is kept: a day is a
    million rows): polars reads the envelopes column-wise, orjson the bodies, when every
    record in the window is plain JSON both ways with the times the writers use. Any other
    object (CSV or base64 bodies, a line that is not JSON, an answer that does not fit its
    request) is read line by line, where a record that cannot be read is counted as
    unreadable and skipped. Both routes give the same rows.
    """
    traffic = Traffic()
    first, last = f"{since:%Y-%m-%d/%H}", f"{until:%Y-%m-%d/%H}"
    prefix = keys.capture_prefix(dataset, version)
    chosen = []
    for key in store.list(bucket, prefix):
        found = capture_object(key, prefix)
        if found is None or not first <= found.hour <= last:
            continue
        if endpoint is not None and found.endpoint not in (None, endpoint):
            continue
        chosen.append((key, found.compressed))

    def read(item: tuple[str, bool]) -> Traffic:
        return _read_object(store, bucket, *item, since, until, task)

    inputs: list[pl.DataFrame] = []
    answers: list[pl.DataFrame] = []
    # Objects on every core: the decoding runs in polars and zlib, outside the GIL; in order.
    with ThreadPoolExecutor(max_workers=min(_READERS, os.cpu_count() or 1)) as pool:
        for part in pool.map(read, chosen):
            traffic.objects += 1
            traffic.requests.update(part.requests)
            traffic.errors.update(part.errors)
            traffic.unreadable += part.unreadable
            if part.answers.height:
                inputs.append(part.inputs)
                answers.append(part.answers)
    if answers:
        frame = pl.concat(inputs, how="diagonal")
        traffic.inputs = frame.select(pl.col(c).replace("", None) for c in sorted(frame.columns))
        traffic.answers = pl.concat(answers)
    return traffic


def _read_object(
    store: ObjectStore,
    bucket: str,
    key: str,
    compressed: bool,
    since: datetime,
    until: datetime,
    task: str,
) -> Traffic:
    """One capture object's requests in the window (an object that cannot be read at all
    counts as one unreadable record)."""
    try:
        data = store.get(bucket, key)
        lines = [
            line
            for line in (gzip.decompress(data) if compressed else data).splitlines()
            if line.strip()
        ]
    except (OSError, EOFError):
        return Traffic(unreadable=1)
    del data
    try:
        return _columns(lines, since, until)
    except _Fallback:
        return _line_by_line(lines, since, until, task)


def _columns(lines: list[bytes], since: datetime, until: datetime) -> Traffic:
    """One object's records read column-wise; _Fallback when it holds anything but what the
    writers write in plain JSON (the line-by-line reader then decides, record by record)."""
    part = Traffic()
    try:
        records = pl.read_ndjson(b"\n".join(lines), schema=_ENVELOPE)
    except pl.exceptions.PolarsError:
        raise _Fallback from None
    if records.height != len(lines):
        raise _Fallback
    meta = records["eventMetadata"].struct
    at = meta.field("inferenceTime").str.to_datetime(_TIME_FORMAT, time_zone="UTC", strict=False)
    if at.null_count():
        raise _Fallback
    data = records["captureData"].struct
    frame = pl.DataFrame(
        {
            "at": at,
            "status": meta.field("status").fill_null(200),
            "inference_id": meta.field("inferenceId"),
            "event_id": meta.field("eventId"),
            "in_encoding": data.field("endpointInput").struct.field("encoding"),
            "body": data.field("endpointInput").struct.field("data"),
            "out_encoding": data.field("endpointOutput").struct.field("encoding"),
            "answer": data.field("endpointOutput").struct.field("data"),
        }
    )
    frame = frame.filter((pl.col("at") >= since) & (pl.col("at") < until)).with_columns(
        hour=pl.col("at").dt.strftime("%Y-%m-%dT%H"),
        # The caller's inference id, else the event's (as `inferenceId or eventId`).
        ident=pl.when(pl.col("inference_id").str.len_bytes() > 0)
        .then(pl.col("inference_id"))
        .otherwise(pl.col("event_id")),
    )
    refused = (pl.col("status") >= 400) | pl.col("answer").is_null()
    for hour, count in frame.group_by("hour").len().iter_rows():
        part.requests[hour] += count
    for hour, count in frame.filter(refused).group_by("hour").len().iter_rows():
        part.errors[hour] += count
    served = frame.filter(~refused)
    if not served.height:
        return part
    if not (
        (served["in_encoding"] == "JSON").all()
        and (served["out_encoding"] == "JSON").all()
        and served["ident"].null_count() == 0
        and served["body"].null_count() == 0
    ):
        raise _Fallback
    part.inputs, part.answers = _served(served)
    return part


def _served(served: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The inputs (text columns) and answers of JSON requests answered in JSON; _Fallback
    unless each body is an invocation body and each answer a plain invocation answer with
    one prediction per row (anything else is left to the line-by-line reader's rules)."""
    rows: list[dict[str, object]] = []
    answers: dict[str, list[Any]] = {name: [] for name in _ANSWER_SCHEMA}
    try:
        for ident, hour, body, answer in served.select(
            "ident", "hour", "body", "answer"
        ).iter_rows():
            instances = orjson.loads(body).get("instances")
            predictions = orjson.loads(answer)
            items = predictions.get("predictions")
            if (
                type(instances) is not list
                or type(items) is not list
                or len(items) != len(instances)
                or type(predictions.get("model_version")) is not str
            ):
                raise _Fallback
            single = len(instances) == 1
            for n, (row, item) in enumerate(zip(instances, items, strict=True)):
                if type(row) is not dict:
                    raise _Fallback
                rows.append(row)
                answers["id"].append(ident if single else f"{ident}#{n}")
                answers["hour"].append(hour)
                _answer(answers, item)
    except (orjson.JSONDecodeError, AttributeError):  # not JSON, or not a JSON object
        raise _Fallback from None
    columns = sorted({name for row in rows for name in row})
    try:
        # Cast by polars, as the line-by-line reader does: numbers and booleans to text as
        # the CSV reader writes them, a key a row lacks as missing.
        inputs = pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String), strict=False)
    except pl.exceptions.PolarsError:
        raise _Fallback from None
    return inputs, pl.DataFrame(answers, schema=_ANSWER_SCHEMA)


def _answer(answers: dict[str, list[Any]], item: object) -> None:
    """One prediction of a JSON answer, appended; _Fallback for one the wire model would
    have to coerce or refuse (left to it, on the line-by-line route)."""
    if type(item) is not dict:
        raise _Fallback
    label, probabilities, value = item.get("label"), item.get("probabilities"), item.get("value")
    if type(label) is str and type(probabilities) is dict:
        if not all(type(p) is float or type(p) is int for p in probabilities.values()):
            raise _Fallback
        answers["label"].append(label)
        answers["value"].append(None)
        answers["probabilities"].append(
            orjson.dumps({k: float(p) for k, p in probabilities.items()}).decode()
        )
    elif label is None and probabilities is None and type(value) in (float, int):
        assert isinstance(value, float | int)  # for the type checker: `type` said so
        answers["label"].append(None)
        answers["value"].append(float(value))
        answers["probabilities"].append(None)
    else:
        raise _Fallback
    answers["p_positive"].append(None)


def _line_by_line(lines: list[bytes], since: datetime, until: datetime, task: str) -> Traffic:
    """One object's records, one at a time: a record that is not in the capture shape is
    counted as unreadable and skipped."""
    part = Traffic()
    rows: list[dict[str, object]] = []
    answers: dict[str, list[Any]] = {name: [] for name in _ANSWER_SCHEMA}
    for line in lines:
        try:
            record = orjson.loads(line)
            at = datetime.fromisoformat(record["eventMetadata"]["inferenceTime"])
            if since <= at < until:
                _add(part, rows, answers, record, at, task)
        except (ValueError, KeyError, TypeError, AttributeError, pl.exceptions.PolarsError):
            part.unreadable += 1
    columns = sorted({name for row in rows for name in row})
    # Cast by polars (numbers and booleans to text as the CSV reader writes them, a key a
    # row lacks as missing), as the column-wise reader's JSON decoding does.
    part.inputs = pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String), strict=False)
    part.answers = pl.DataFrame(answers, schema=_ANSWER_SCHEMA)
    return part


def _add(
    traffic: Traffic,
    rows: list[dict[str, object]],
    columns: dict[str, list[Any]],
    record: dict[str, Any],
    at: datetime,
    task: str,
) -> None:
    """One captured request: counted in its hour, its rows and answers kept; raises
    KeyError/TypeError/ValueError for a record that is not in the capture shape."""
    hour = f"{at:%Y-%m-%dT%H}"
    meta, data = record["eventMetadata"], record["captureData"]
    output = data.get("endpointOutput")
    if int(meta.get("status", 200)) >= 400 or output is None:
        traffic.requests[hour] += 1
        traffic.errors[hour] += 1
        return
    served = _input_rows(*_decoded(data["endpointInput"]))
    answers = _answers(*_decoded(output), task)
    if len(answers) != len(served):
        raise ValueError("a captured answer does not have one prediction per row")
    traffic.requests[hour] += 1
    ident = str(meta.get("inferenceId") or meta["eventId"])
    for i, (row, answer) in enumerate(zip(served, answers, strict=True)):
        rows.append(row)
        label, value, probabilities, p = answer
        columns["id"].append(ident if len(served) == 1 else f"{ident}#{i}")
        columns["hour"].append(hour)
        columns["label"].append(label)
        columns["value"].append(value)
        columns["p_positive"].append(p)
        columns["probabilities"].append(
            None if probabilities is None else orjson.dumps(probabilities).decode()
        )


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
    if not latest:
        join.matched, join.unknown, join.unknown_ids = 0, 0, []
        return []
    index = {ident: i for i, ident in enumerate(traffic.ids)}
    matched = [(index[ident], label) for ident, label in latest.items() if ident in index]
    unknown = [ident for ident in latest if ident not in index]
    join.matched, join.unknown = len(matched), len(unknown)
    join.unknown_ids = unknown[:_LISTED_IDS]
    return sorted(matched, key=lambda pair: pair[0])
