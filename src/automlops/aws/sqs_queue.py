"""Queue on Amazon SQS (boto3), handing out messages in the shape Lambda receives them.

A queue's dead-letter queue is the one its RedrivePolicy names (`deadLetterTargetArn`), as the
deployment declares it; SQS itself moves a message there once it was received
`maxReceiveCount` times. SQS has no way to read a queue without receiving from it, so listing
and redriving dead letters receive them (hidden for `hide_s`) and then release or move them:

- a dead letter another consumer holds at that moment (listing it, redriving it) is not seen;
- each listing counts as one more receive of the listed messages (their receive counts are
  approximate);
- receives are long-polled `poll_wait_s` seconds, so that an empty answer means an empty queue
  (a short poll asks only some of SQS's servers).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from typing import Any

from automlops.errors import AutomlopsError, NotFoundError
from automlops.events import SqsRecord
from automlops.ports import DeadLetter

_MAX_DELAY_S = 900  # SQS's limit for DelaySeconds
_MAX_VISIBILITY_S = 43_200  # SQS's limit for a visibility timeout (12 h)
_BATCH = 10  # SQS's limit of messages per receive and per batch call

# Message attributes a message carries in the dead-letter queue when `dead_letter` put it there.
_ERROR = "automlops-error"
_RECEIVES = "automlops-receive-count"
_SENT = "automlops-sent-at"
_OURS = {_ERROR, _RECEIVES, _SENT}
_MAX_ERROR_CHARS = 4_000  # the message and its attributes must fit SQS's size limit


class SqsQueue:
    """Queues by name; URLs, ARNs and dead-letter queues are looked up once and cached."""

    def __init__(
        self,
        client: Any,
        *,
        region: str | None = None,
        poll_wait_s: int = 1,
        hide_s: int = 60,
    ) -> None:
        self.client = client
        self.region = region or client.meta.region_name
        self.poll_wait_s = poll_wait_s
        self.hide_s = hide_s
        self._urls: dict[str, str] = {}
        self._arns: dict[str, str] = {}
        self._dlqs: dict[str, str] = {}
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

    def dead_letter_queue(self, queue: str) -> str:
        """The name of `queue`'s dead-letter queue, from its RedrivePolicy; NotFoundError when
        it has none."""
        url = self.url(queue)
        with self._lock:
            if queue not in self._dlqs:
                attributes = self.client.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["RedrivePolicy"]
                ).get("Attributes", {})
                policy = json.loads(attributes.get("RedrivePolicy", "{}"))
                if "deadLetterTargetArn" not in policy:
                    raise NotFoundError(
                        f"queue {queue} has no dead-letter queue (no RedrivePolicy)"
                    )
                self._dlqs[queue] = queue_name_from_arn(policy["deadLetterTargetArn"])
            return self._dlqs[queue]

    # -- messages ----------------------------------------------------------------------------

    def send(self, queue: str, body: str, *, delay_s: float = 0.0) -> str:
        """Send a message (visible after `delay_s`, rounded up, at most 900 s); returns its id."""
        delay = max(0, min(_MAX_DELAY_S, math.ceil(delay_s)))
        response = self.client.send_message(
            QueueUrl=self.url(queue), MessageBody=body, DelaySeconds=delay
        )
        return str(response["MessageId"])

    def receive(
        self,
        queue: str,
        *,
        max_messages: int = 1,
        visibility_timeout_s: float | None = None,
        wait_s: int = 0,
    ) -> list[SqsRecord]:
        """Receive up to `max_messages` (at most 10), long-polling up to `wait_s` seconds.

        The visibility timeout is whole seconds, rounded up (a message is hidden at least as
        long as asked); None: the queue's own.
        """
        extra: dict[str, Any] = {}
        if visibility_timeout_s is not None:
            extra["VisibilityTimeout"] = _seconds(visibility_timeout_s, _MAX_VISIBILITY_S)
        response = self.client.receive_message(
            QueueUrl=self.url(queue),
            MaxNumberOfMessages=max(1, min(_BATCH, max_messages)),
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
        """Hide an in-flight message for `timeout_s` more seconds, rounded up (0: visible now)."""
        self.client.change_message_visibility(
            QueueUrl=self.url(queue),
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=_seconds(timeout_s, _MAX_VISIBILITY_S),
        )

    def record_error(self, queue: str, receipt_handle: str, error: str) -> None:
        """Nothing: SQS cannot annotate a message in place.

        A message the redrive policy dead-letters therefore lists without an error; its
        failures are in the consumer's log and the run log. `dead_letter` does keep its reason.
        """
        return None

    def dead_letter(self, queue: str, message: SqsRecord, error: str) -> None:
        """Send a received message to the dead-letter queue with the error, receive count and
        first send time as message attributes, then delete it from `queue`.

        Sent before it is deleted: a crash in between leaves it in both queues (at least once),
        never in neither. Its id in the dead-letter queue is a new one.
        """
        attributes = _api_attributes(message.message_attributes)
        attributes[_ERROR] = _string(error[:_MAX_ERROR_CHARS] or "(no message)")
        attributes[_RECEIVES] = _number(message.receive_count)
        sent_ms = message.attributes.get("SentTimestamp")
        if sent_ms is not None:
            attributes[_SENT] = _number(int(sent_ms))
        self.client.send_message(
            QueueUrl=self.url(self.dead_letter_queue(queue)),
            MessageBody=message.body,
            MessageAttributes=attributes,
        )
        self.delete(queue, message.receipt_handle)

    def dead_letter_exhausted(self, queue: str) -> list[DeadLetter]:
        """[]: the queue's redrive policy moves exhausted messages itself, on receive."""
        return []

    def counts(self, queue: str) -> tuple[int, int]:
        """(visible, not visible: in flight or delayed), approximate as SQS reports them."""
        attributes = self.client.get_queue_attributes(
            QueueUrl=self.url(queue),
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        visible = int(attributes.get("ApproximateNumberOfMessages", 0))
        hidden = int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)) + int(
            attributes.get("ApproximateNumberOfMessagesDelayed", 0)
        )
        return visible, hidden

    # -- dead letters ------------------------------------------------------------------------

    def dead_letters(self, queue: str) -> list[DeadLetter]:
        """`queue`'s dead letters, oldest first: received (hidden while listing), then made
        visible again. See the module's notes for what a listing cannot see."""
        dlq = self.url(self.dead_letter_queue(queue))
        held: dict[str, dict[str, Any]] = {}
        try:
            for batch in self._batches(dlq):
                seen = all(m["MessageId"] in held for m in batch)
                held.update((m["MessageId"], m) for m in batch)  # re-received: latest receipt
                if seen:
                    break  # back to messages hidden at the start: a listing longer than hide_s
        finally:
            self._release(dlq, list(held.values()))
        letters = [_as_dead_letter(m, queue) for m in held.values()]
        return sorted(letters, key=lambda d: (d.sent_at or 0.0, d.id))

    def redrive(self, queue: str, message_id: str | None = None) -> int:
        """Move `queue`'s dead letters (one by id, or all) back to it as new messages (fresh
        receive count, without the dead-letter attributes); returns how many moved.

        One by id receives until it is found and releases the others; NotFoundError when it is
        not there (or held by another consumer). Each is sent before it is deleted (at least
        once). SQS's StartMessageMoveTask is not used: it moves all or nothing, asynchronously,
        without telling how many.
        """
        source = self.url(queue)
        dlq = self.url(self.dead_letter_queue(queue))
        if message_id is not None:
            passed: dict[str, dict[str, Any]] = {}
            try:
                for batch in self._batches(dlq):
                    found = [m for m in batch if m["MessageId"] == message_id]
                    if not found and all(m["MessageId"] in passed for m in batch):
                        break  # back to messages passed over: it is not there
                    # Others are released with their latest receipt (see `finally`).
                    passed.update((m["MessageId"], m) for m in batch if m not in found)
                    if found:
                        self._move(found[:1], source, dlq)
                        return 1
            finally:
                self._release(dlq, list(passed.values()))
            raise NotFoundError(f"no message {message_id} in the dead-letter queue of {queue}")
        moved = 0
        for batch in self._batches(dlq):
            moved += self._move(batch, source, dlq)
        return moved

    def _batches(self, url: str) -> Iterator[list[dict[str, Any]]]:
        """A queue's messages, a receive (at most 10) at a time, each hidden for `hide_s`,
        until a receive finds none."""
        while True:
            messages = self.client.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=_BATCH,
                VisibilityTimeout=self.hide_s,
                WaitTimeSeconds=self.poll_wait_s,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                return
            yield messages

    def _release(self, url: str, messages: list[dict[str, Any]]) -> None:
        """Make held messages visible again at once."""
        for start in range(0, len(messages), _BATCH):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(messages[start : start + _BATCH])
            ]
            # A failed entry stays hidden until `hide_s` passes: late, not lost.
            self.client.change_message_visibility_batch(QueueUrl=url, Entries=entries)

    def _move(self, messages: list[dict[str, Any]], source: str, dlq: str) -> int:
        """Send held dead letters (at most 10) to `source`, then delete those sent."""
        entries = [
            {
                "Id": str(i),
                "MessageBody": m["Body"],
                "MessageAttributes": {
                    k: v for k, v in m.get("MessageAttributes", {}).items() if k not in _OURS
                },
            }
            for i, m in enumerate(messages)
        ]
        response = self.client.send_message_batch(QueueUrl=source, Entries=entries)
        sent = [messages[int(entry["Id"])] for entry in response.get("Successful", [])]
        if sent:
            self.client.delete_message_batch(
                QueueUrl=dlq,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(sent)
                ],
            )
        failed = response.get("Failed", [])
        if failed:
            # The unsent stay in the dead-letter queue, visible again after `hide_s`.
            raise AutomlopsError(
                f"{len(failed)} dead letter(s) not sent back (moved {len(sent)} of this batch): "
                f"{failed[0].get('Code', '')} {failed[0].get('Message', '')}"
            )
        return len(sent)


def queue_name_from_arn(arn: str) -> str:
    """arn:aws:sqs:<region>:<account>:<name> -> <name>."""
    return arn.rsplit(":", 1)[-1]


def _seconds(value: float, limit: int) -> int:
    return max(0, min(limit, math.ceil(value)))


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _number(value: int) -> dict[str, str]:
    return {"DataType": "Number", "StringValue": str(value)}


def _as_dead_letter(message: dict[str, Any], queue: str) -> DeadLetter:
    ours = message.get("MessageAttributes", {})
    attributes = message.get("Attributes", {})

    def value(name: str) -> str | None:
        return ours[name].get("StringValue") if name in ours else None

    receives = value(_RECEIVES)
    sent_ms = value(_SENT) or attributes.get("SentTimestamp")
    return DeadLetter(
        id=message["MessageId"],
        source_queue=queue,
        body=message["Body"],
        # Without our attribute: SQS's count, less the receive of this listing.
        receive_count=(
            int(receives)
            if receives is not None
            else max(0, int(attributes.get("ApproximateReceiveCount", "1")) - 1)
        ),
        error=value(_ERROR),
        sent_at=int(sent_ms) / 1000 if sent_ms is not None else None,
    )


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


def _api_attributes(attributes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    # Back from Lambda's spelling to the API's, for re-sending a received message.
    result: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        if name in _OURS:
            continue
        kind = value.get("dataType", "String")
        if value.get("stringValue") is not None:
            result[name] = {"DataType": kind, "StringValue": value["stringValue"]}
        elif value.get("binaryValue") is not None:
            result[name] = {"DataType": kind, "BinaryValue": value["binaryValue"]}
    return result
