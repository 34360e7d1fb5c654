"""AWS event shapes: S3 event notifications and SQS messages.

The local runtime produces exactly these shapes so that handlers are written and tested once.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from pydantic import BaseModel, ConfigDict, Field


class S3Bucket(BaseModel):
    name: str
    arn: str = ""


class S3Object(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    key: str  # URL-encoded, as S3 sends it
    size: int = 0
    e_tag: str = Field(default="", alias="eTag")
    sequencer: str = ""


class S3Entity(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    s3_schema_version: str = Field(default="1.0", alias="s3SchemaVersion")
    configuration_id: str = Field(default="", alias="configurationId")
    bucket: S3Bucket
    object: S3Object


class S3EventRecord(BaseModel):
    """One record of an S3 event notification."""

    model_config = ConfigDict(populate_by_name=True)

    event_version: str = Field(default="2.1", alias="eventVersion")
    event_source: str = Field(default="aws:s3", alias="eventSource")
    aws_region: str = Field(default="local", alias="awsRegion")
    event_time: str = Field(alias="eventTime")
    event_name: str = Field(alias="eventName")
    s3: S3Entity

    @property
    def bucket(self) -> str:
        return self.s3.bucket.name

    @property
    def key(self) -> str:
        """The object key, URL-decoded (S3 encodes a space as '+')."""
        return unquote_plus(self.s3.object.key)


class S3Event(BaseModel):
    """An S3 event notification as delivered to Lambda or in an SQS message body."""

    records: list[S3EventRecord] = Field(default_factory=list, alias="Records")

    model_config = ConfigDict(populate_by_name=True)


def object_created(
    bucket: str, key: str, *, size: int, etag: str, configuration_id: str, region: str = "local"
) -> S3Event:
    """Build the notification S3 sends for a PUT of `key` into `bucket`."""
    now = datetime.now(UTC)
    record = S3EventRecord(
        eventTime=now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        eventName="ObjectCreated:Put",
        awsRegion=region,
        s3=S3Entity(
            configurationId=configuration_id,
            bucket=S3Bucket(name=bucket, arn=f"arn:aws:s3:::{bucket}"),
            object=S3Object(
                key=quote_plus(key, safe="/"),
                size=size,
                eTag=etag,
                sequencer=f"{now.timestamp() * 1e6:020.0f}",
            ),
        ),
    )
    return S3Event(Records=[record])


class SqsRecord(BaseModel):
    """One SQS message in the shape Lambda receives it."""

    model_config = ConfigDict(populate_by_name=True)

    message_id: str = Field(alias="messageId")
    receipt_handle: str = Field(alias="receiptHandle")
    body: str
    attributes: dict[str, str] = Field(default_factory=dict)
    message_attributes: dict[str, Any] = Field(default_factory=dict, alias="messageAttributes")
    md5_of_body: str = Field(default="", alias="md5OfBody")
    event_source: str = Field(default="aws:sqs", alias="eventSource")
    event_source_arn: str = Field(default="", alias="eventSourceARN")
    aws_region: str = Field(default="local", alias="awsRegion")

    @property
    def receive_count(self) -> int:
        return int(self.attributes.get("ApproximateReceiveCount", "1"))


def md5_hex(body: str) -> str:
    """The MD5 of a message body, as SQS reports it (an integrity check, not security)."""
    return hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()


class EvaluationMessage(BaseModel):
    """What deploy puts on the evaluation queue."""

    dataset: str
    version: int
    run_id: str
    endpoint: str
    test_key: str
    bucket: str
