"""Queue on Amazon SQS (boto3), handing out messages in the shape Lambda receives them."""

from __future__ import annotations

import threading
from typing import Any

from automlops.events import SqsRecord

_MAX_DELAY_S = 900  # SQS's limit for DelaySeconds
_MAX_VISIBILITY_S = 43_200  # SQS's limit for a visibility timeout (12 h)


class SqsQueue:
    """Queues by name; URLs and ARNs are looked up once and cached."""

    def __init__(self, client: Any, *, region: str | None = None) -> None:
        self.client = client
        self.region = region or client.meta.region_name
        self._urls: dict[str, str] = {}
        self._arns: dict[str, str] = {}
        self._lock = threading.Lock()

    def url(self, queue: str) -> str:
        """The queue's URL."""
        with self._lock:
            if queue not in self._urls:
                self._urls[queue] = self.client.get_queue_url(QueueName=queue)["QueueUrl"]
            return self._urls[queue]

    def arn(self, queue: str) -> str:
        """The queue's ARN (what Lambda reports as eventSourceARN)."""
        url = self.url(queue)
        with self._lock:
            if queue not in self._arns:
                attributes = self.client.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["QueueArn"]
                )["Attributes"]
                self._arns[queue] = attributes["QueueArn"]
            return self._arns[queue]

    def send(self, queue: str, body: str, *, delay_s: float = 0.0) -> str:
        """Send a message; returns its id."""
        delay = max(0, min(_MAX_DELAY_S, round(delay_s)))
        response = self.client.send_message(
            QueueUrl=self.url(queue), MessageBody=body, DelaySeconds=delay
        )
        return response["MessageId"]

    def receive(
        self,
        queue: str,
        *,
        max_messages: int = 1,
        visibility_timeout_s: float | None = None,
        wait_s: int = 0,
    ) -> list[SqsRecord]:
        """Receive up to `max_messages` (≤ 10), long-polling up to `wait_s` seconds."""
        extra: dict[str, Any] = {}
        if visibility_timeout_s is not None:
            extra["VisibilityTimeout"] = int(visibility_timeout_s)
        response = self.client.receive_message(
            QueueUrl=self.url(queue),
            MaxNumberOfMessages=max(1, min(10, max_messages)),
            WaitTimeSeconds=wait_s,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            **extra,
        )
        arn = self.arn(queue)
        return [
            SqsRecord(
                messageId=m["MessageId"],
                receiptHandle=m["ReceiptHandle"],
                body=m["Body"],
                attributes=m.get("Attributes", {}),
                messageAttributes=_lambda_attributes(m.get("MessageAttributes", {})),
                md5OfBody=m.get("MD5OfBody", ""),
                eventSourceARN=arn,
                awsRegion=self.region,
            )
            for m in response.get("Messages", [])
        ]

    def delete(self, queue: str, receipt_handle: str) -> None:
        """Acknowledge a message."""
        self.client.delete_message(QueueUrl=self.url(queue), ReceiptHandle=receipt_handle)

    def change_visibility(self, queue: str, receipt_handle: str, timeout_s: float) -> None:
        """Hide an in-flight message for `timeout_s` more seconds (0: visible now)."""
        timeout = max(0, min(_MAX_VISIBILITY_S, round(timeout_s)))
        self.client.change_message_visibility(
            QueueUrl=self.url(queue), ReceiptHandle=receipt_handle, VisibilityTimeout=timeout
        )


def queue_name_from_arn(arn: str) -> str:
    """arn:aws:sqs:<region>:<account>:<name> -> <name>."""
    return arn.rsplit(":", 1)[-1]


def _lambda_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    # The SQS API says StringValue/DataType; Lambda's event says stringValue/dataType.
    return {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType", "String"),
        }
        for name, value in attributes.items()
    }
