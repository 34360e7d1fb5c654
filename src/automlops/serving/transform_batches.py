"""What a Batch Transform job's container records of each mini-batch it answers.

A mini-batch is lines of the scored file (SplitType Line). SageMaker tells the container
neither where a mini-batch sits in the file nor which rows of the file it holds, so the
container records what it knows, beside the job's output: how many data rows it read, how many
it scored, and the rows it left out by their line (SHA-256 of the whole line, to find it in the
file exactly; its first `TEXT_CHARS` characters, to show), with the column and the message; at
most `MAX_NAMED_ROWS` rows by name, the rest counted. The job's end (`aws.transform`) sums the
records and numbers the rows by streaming the file once.

A record is named after the mini-batch's content and a random part
(`keys.transform_batch_key`): answers never overwrite each other, and a retried mini-batch
(the same content) is recognised when the records are summed.

Lines are the file's bytes split at `\\n`, a trailing `\\r` dropped; empty lines are no rows
(as the CSV reader skips them). A quoted value holding a line break is split by SageMaker too,
so it is not supported in a file a transform job scores.
"""

from __future__ import annotations

import hashlib
import uuid

from pydantic import BaseModel, Field

from automlops import keys
from automlops.ml.batch import RowError
from automlops.ports import ObjectStore

# Rows left out that a mini-batch's record names (the rest are counted): a 6 MB mini-batch of
# bank rows holds ~40,000, so this names every bad row up to a 2.5% share of one.
MAX_NAMED_ROWS = 1000
# What a record keeps of a bad line's text, to show in errors.csv (the hash matches it whole).
TEXT_CHARS = 300


class BadLine(BaseModel):
    """A row a mini-batch left out, by its line."""

    sha256: str = Field(description="SHA-256 (hex) of the whole line, without its line break.")
    length: int = Field(description="The line's length in bytes (a cheap test before hashing).")
    text: str = Field(description=f"The line's first {TEXT_CHARS} characters.")
    column: str
    message: str


class MiniBatchRecord(BaseModel):
    """One mini-batch's outcome (`transform/batches/<sha256>-<random>.json`)."""

    rows: int = Field(ge=0, description="Data rows read (the header line is none).")
    scored: int = Field(ge=0, description="Rows answered with a prediction.")
    bad: int = Field(ge=0, description="Rows left out, named or not.")
    named: list[BadLine] = Field(default_factory=list, description="The first rows left out.")


def line_digest(line: bytes) -> str:
    """The hash a bad line is recorded and found by (the line without its line break)."""
    return hashlib.sha256(line).hexdigest()


def split_lines(data: bytes) -> list[bytes]:
    """The non-empty lines of CSV text, without their line breaks (`\\n` or `\\r\\n`)."""
    lines = (line.removesuffix(b"\r") for line in data.split(b"\n"))
    return [line for line in lines if line]


def mini_batch_record(
    body: bytes, has_header: bool, rows: int, errors: list[RowError]
) -> MiniBatchRecord:
    """The record of a mini-batch (`body` as SageMaker sent it, with the file's header line
    when `has_header`) whose `rows` data rows were read and `errors` left out (numbered from 1
    among the mini-batch's data rows, as the reader numbers them)."""
    lines = split_lines(body)
    data = lines[1:] if has_header else lines
    named = []
    for error in sorted(errors, key=lambda e: e.row)[:MAX_NAMED_ROWS]:
        if not 1 <= error.row <= len(data):  # a row the reader counted unlike the lines: counted
            continue
        line = data[error.row - 1]
        named.append(
            BadLine(
                sha256=line_digest(line),
                length=len(line),
                text=line[: TEXT_CHARS * 4].decode("utf-8", "replace")[:TEXT_CHARS],
                column=error.column,
                message=error.message,
            )
        )
    return MiniBatchRecord(rows=rows, scored=rows - len(errors), bad=len(errors), named=named)


class MiniBatchLog:
    """Writes a transform job's mini-batch records for one scoring run."""

    def __init__(self, store: ObjectStore, bucket: str, dataset: str, run_id: str) -> None:
        self.store = store
        self.bucket = bucket
        self.dataset = dataset
        self.run_id = run_id

    def write(self, body: bytes, record: MiniBatchRecord) -> str:
        """Store one mini-batch's record (before its answer: a mini-batch whose record could
        not be written fails, and SageMaker retries it); returns its key."""
        content = hashlib.sha256(body).hexdigest()
        key = keys.transform_batch_key(self.dataset, self.run_id, content, uuid.uuid4().hex[:12])
        self.store.put(self.bucket, key, record.model_dump_json().encode())
        return key
