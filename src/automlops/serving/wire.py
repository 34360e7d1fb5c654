"""The invocation wire format, declared once: the bodies and how a caller builds and reads them.

`POST /endpoints/{dataset}/invocations` (and the SageMaker container's `/invocations`) take
`{"instances": [{column: value, ...}, ...]}` as JSON, or CSV with a header row, and answer
`{"model_version": "<n>", "predictions": [...]}`: a classification item is
`{"label": ..., "probabilities": {label: p}}`, a regression item `{"value": x}`; body columns
the model does not know are listed in `unknown_columns` (absent when there are none), and in
the `X-Automlops-Unknown-Columns` header of a JSON or CSV answer alike. With `Accept: text/csv`
the answer is one line per row: P(positive) (binary), the label (multiclass) or the value
(regression). A JSON body with `"explain": true` (or a number K)
gets an `explanation` in each item: why that row got its score (`Explanation`).

The pydantic models below are what `/openapi.json` shows. The server does not validate bodies
through them (it parses with orjson and checks each value in the same pass that encodes it, see
`serving.invocation`); callers (the evaluate stage, tests, any client) use the functions here
to build bodies and to read answers as typed records. This module imports no web framework, so
a stage can use it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import quote, unquote

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

if TYPE_CHECKING:
    import polars as pl

    from automlops.ports import ModelHost

JSON = "application/json"
CSV = "text/csv"

# A cell as a caller sends it: numbers may also come as text ("12.5"), null or "" is missing.
Value = str | int | float | bool | None


class InvocationRequest(BaseModel):
    """A JSON invocation body: raw rows, columns as in the uploaded CSV (the target left out).

    Names are matched as in training, ignoring case and surrounding spaces when that names one
    column. Values may be written as in the uploaded file (`1.234,5`, `$12`, `12%`, `TRUE`,
    `NA`) or plainly. Missing columns are imputed as in training; columns the model does not use
    are listed in the answer's `unknown_columns`, and a row with no known column is refused.
    """

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"instances": [{"age": 41, "job": "technician"}]}]}
    )

    instances: list[dict[str, Value]] = Field(description="One object per row: column -> value.")
    explain: bool | int = Field(
        default=False,
        description="true: each prediction also carries its `explanation`, every input "
        "column's contribution; an integer K >= 1: only the K largest by |contribution|.",
    )


class Contribution(BaseModel):
    """One input column's share of a row's raw score."""

    column: str
    value: float


class OutputExplanation(BaseModel):
    """One output's raw score taken apart: `base` + the sum of every column's contribution
    (all columns; with `explain: K` only the top K are listed, so the listed ones sum to
    less)."""

    base: float = Field(description="The raw score with no column contributing.")
    contributions: list[Contribution] = Field(description="Largest |value| first.")


class Explanation(BaseModel):
    """Why a row got its prediction: additive contributions of the raw input columns (one-hot
    categories and date parts summed back into their column) to the model's raw score.

    `raw_score` names the units: `value` (regression), `log-odds` of the positive label
    (binary: P = 1 / (1 + exp(-score))), `softmax logit` per class (multiclass: the
    probabilities are the softmax of the scores). Boosted trees give exact TreeSHAP values,
    the linear model coefficient x (value - training mean). `exact` is false for an ensemble
    of classifiers: it averages probabilities, and its contributions (the members', weighted)
    sum to the weighted mean of the members' raw scores, an approximation of its own.
    """

    raw_score: str
    exact: bool
    outputs: dict[str, OutputExplanation] = Field(
        description="By output: the target (regression), the positive label (binary) or "
        "each label (multiclass)."
    )


class ClassPrediction(BaseModel):
    """A classification answer for one row: the decided label and every label's probability."""

    label: str
    probabilities: dict[str, float]
    explanation: Explanation | None = Field(default=None, description="With `explain` only.")


class ValuePrediction(BaseModel):
    """A regression answer for one row."""

    value: float
    explanation: Explanation | None = Field(default=None, description="With `explain` only.")


# The body's columns the model does not know, in a header of every answer that has some (a CSV
# answer has no field for them): the sorted names percent-encoded (RFC 3986: a comma, a space or
# any non-ASCII character in a name is escaped) and comma-joined, at most
# UNKNOWN_COLUMNS_MAX_CHARS characters; names that do not fit are counted in a last element
# `+<n> more` (a `+` or a space in a name is always escaped, so it cannot be read as a name).
UNKNOWN_COLUMNS_HEADER = "X-Automlops-Unknown-Columns"
UNKNOWN_COLUMNS_MAX_CHARS = 1024
UNKNOWN_COLUMNS_DESCRIPTION = (
    "Columns of the body that are no input of the model (so not used), in JSON and CSV answers "
    "alike: sorted, percent-encoded, comma-joined; at most 1,024 characters, a last element "
    "`+<n> more` counting the names left out. Absent when every column is known."
)


def unknown_columns_header(names: Sequence[str]) -> str:
    """The `UNKNOWN_COLUMNS_HEADER` value naming `names` (sorted, as the answer lists them)."""
    quoted = [quote(name, safe="") for name in names]
    value = ",".join(quoted)
    if len(value) <= UNKNOWN_COLUMNS_MAX_CHARS:
        return value
    kept = 0
    size = 0  # of the kept names, each with its comma
    while size + len(quoted[kept]) + 1 + len(f"+{len(quoted) - kept - 1} more") <= (
        UNKNOWN_COLUMNS_MAX_CHARS
    ):
        size += len(quoted[kept]) + 1
        kept += 1
    return ",".join([*quoted[:kept], f"+{len(quoted) - kept} more"])


def read_unknown_columns_header(value: str) -> tuple[list[str], int]:
    """The names an `UNKNOWN_COLUMNS_HEADER` value lists, and how many more it left out."""
    parts = value.split(",") if value else []
    more = 0
    if parts and parts[-1].startswith("+"):  # a name's own `+` is escaped: this is the count
        more = int(parts.pop()[1:].split(" ", 1)[0])
    return [unquote(part) for part in parts], more


class InvocationResponse(BaseModel):
    """A JSON invocation answer: the serving version and one prediction per row, in order."""

    model_version: str = Field(description="The model version that answered, as a string.")
    predictions: list[ClassPrediction | ValuePrediction]
    unknown_columns: list[str] = Field(
        default_factory=list,
        description="Columns of the body that are no input of the model (so not used), sorted; "
        "absent from the answer when there are none (also in the `X-Automlops-Unknown-Columns` "
        "header, which CSV answers carry too).",
    )

    def values(self) -> np.ndarray:
        """Regression values as float64, one per row."""
        return np.array([_item(p, ValuePrediction).value for p in self.predictions], np.float64)

    def labels(self) -> list[str]:
        """The decided label of each row (classification)."""
        return [_item(p, ClassPrediction).label for p in self.predictions]

    def probability(self, label: str) -> np.ndarray:
        """P(`label`) of each row as float64 (binary: pass the positive label); WireError if
        an answer does not name that label."""
        items = [_item(p, ClassPrediction).probabilities for p in self.predictions]
        if any(label not in item for item in items):
            raise WireError(f"an answer holds no probability for label {label!r}")
        return np.array([item[label] for item in items], np.float64)

    def probabilities(self, labels: Sequence[str]) -> np.ndarray:
        """Probabilities as a (rows, len(labels)) float64 matrix, columns in `labels` order;
        a label the model does not know has probability 0."""
        items = [_item(p, ClassPrediction).probabilities for p in self.predictions]
        return np.array(
            [[item.get(label, 0.0) for label in labels] for item in items], np.float64
        ).reshape(len(items), len(labels))


class ErrorResponse(BaseModel):
    """A refused request (4xx). A value the model cannot read is named by row and column."""

    error: str
    row: int | None = Field(default=None, description="0-based row of the offending value.")
    column: str | None = Field(default=None, description="Column of the offending value.")


class Feature(BaseModel):
    """An input column of a model and how it is read."""

    name: str
    type: str = Field(description="numeric, categorical, datetime, ...")
    spelling: str | None = Field(
        default=None,
        description="How the uploaded file wrote this column's values when not plainly "
        "(e.g. 'decimal comma, '.' thousands separator, currency €'); such values and plain "
        "numbers are both accepted.",
    )


class EndpointDescription(BaseModel):
    """What `GET /endpoints/{dataset}` answers: the serving version and its input and output."""

    dataset: str
    version: int
    task: str
    target: str
    features: list[Feature]
    labels: list[str]
    positive_label: str | None
    threshold: float | None
    learner: str
    created_at: str


class WireError(ValueError):
    """An answer that does not have the declared shape."""


_T = TypeVar("_T", bound=BaseModel)


def _item(prediction: BaseModel, kind: type[_T]) -> _T:
    if not isinstance(prediction, kind):
        raise WireError(f"expected {kind.__name__} items, got {type(prediction).__name__}")
    return prediction


def json_body(rows: Iterable[Mapping[str, Any]], explain: bool | int = False) -> bytes:
    """A JSON invocation body for `rows` (numpy scalars and dates encoded as orjson does);
    `explain` as `InvocationRequest.explain`."""
    document: dict[str, Any] = {"instances": list(rows)}
    if explain is not False:
        document["explain"] = explain
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def csv_body(frame: pl.DataFrame) -> bytes:
    """A CSV invocation body: a header row and one line per row of `frame`."""
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    return buffer.getvalue()


def read_response(content: bytes) -> InvocationResponse:
    """A JSON invocation answer as a typed record; WireError when it is not one."""
    try:
        return InvocationResponse.model_validate_json(content)
    except ValueError as exc:
        raise WireError(f"not an invocation answer: {str(exc)[:300]}") from None


def read_csv_response(content: bytes) -> list[str]:
    """A `text/csv` invocation answer: one field per row (quoted labels unquoted)."""
    return [record[0] for record in csv.reader(io.StringIO(content.decode(), newline=""))]


def invoke(host: ModelHost, endpoint: str, rows: Iterable[Mapping[str, Any]]) -> InvocationResponse:
    """Predict `rows` through a model host's endpoint, JSON both ways."""
    answer = host.invoke(endpoint, json_body(rows), content_type=JSON, accept=JSON)
    return read_response(answer)


# Ground truth: `POST /endpoints/{dataset}/feedback` takes a list of FeedbackItem. An id names
# what was answered: the inference id of a one-row request (the `X-Amzn-SageMaker-Inference-Id`
# header of its answer), `<inference id>#<row>` for row `<row>` (0-based) of a bigger one.
INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
MAX_ID_CHARS = 256
MAX_FEEDBACK_ITEMS = 100_000


class FeedbackItem(BaseModel):
    """The true outcome of one answered row: `label` (classification) or `value` (regression)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"id": "3f2a...", "label": "yes"}]}
    )

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    label: str | int | bool | None = None
    value: float | None = None

    @model_validator(mode="after")
    def _one_outcome(self) -> FeedbackItem:
        if (self.label is None) == (self.value is None):
            raise ValueError("give exactly one of 'label' (classification) or 'value'")
        return self


class FeedbackBatch(RootModel[Annotated[list[FeedbackItem], Field(max_length=MAX_FEEDBACK_ITEMS)]]):
    """A feedback request body: `[{"id": ..., "label" | "value": ...}, ...]`."""


class FeedbackReceipt(BaseModel):
    """What `POST /endpoints/{dataset}/feedback` answers: how many labels were stored, where."""

    dataset: str
    received: int
    key: str = Field(description="The stored batch (monitoring bucket); joined by the monitor.")


class LabelRecord(BaseModel):
    """One stored label (a line of a labels batch): the item, when and how it arrived."""

    id: str
    label: str | None = None
    value: float | None = None
    received_at: str
    source: str


def label_lines(items: Iterable[LabelRecord]) -> bytes:
    """A labels batch as JSONL."""
    return b"".join(item.model_dump_json(exclude_none=True).encode() + b"\n" for item in items)


def read_label_lines(content: bytes) -> list[LabelRecord]:
    """The records of a labels batch, in order."""
    return [LabelRecord.model_validate_json(line) for line in content.splitlines() if line.strip()]


def label_text(label: str | int | bool) -> str:
    """A label as the models name labels: text, booleans as the CSV reader writes them."""
    return str(label).lower() if isinstance(label, bool) else str(label)


# Captured traffic: one JSON line per request, in the shape SageMaker's data capture writes
# (captureData.endpointInput/endpointOutput with the body as text, eventMetadata), so the
# monitor reads local capture and a SageMaker endpoint's alike. Local capture adds the dataset,
# model version, HTTP status and error to eventMetadata; a record of a refused request has no
# endpointOutput.


class CapturedData(BaseModel):
    """A request or answer body as captured."""

    observedContentType: str  # SageMaker's field names, camel case
    mode: str  # INPUT | OUTPUT
    data: str
    encoding: str  # JSON | CSV | BASE64


class CaptureData(BaseModel):
    endpointInput: CapturedData
    endpointOutput: CapturedData | None = None


class CaptureMetadata(BaseModel):
    eventId: str
    inferenceId: str | None = None
    inferenceTime: str
    dataset: str | None = None
    modelVersion: int | None = None
    status: int = 200
    error: str | None = None


class CaptureRecord(BaseModel):
    """One captured request (a line of a capture object)."""

    captureData: CaptureData
    eventMetadata: CaptureMetadata
    eventVersion: str = "0"


def read_capture_lines(content: bytes) -> list[CaptureRecord]:
    """The records of a (decompressed) capture object, in order; ValueError for a line that
    is not one."""
    # orjson first: validating the parsed dict is about 1.5x as fast as pydantic's own JSON
    # parsing of these lines, whose long `data` strings dominate (measured).
    return [
        CaptureRecord.model_validate(orjson.loads(line))
        for line in content.splitlines()
        if line.strip()
    ]
