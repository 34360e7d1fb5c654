"""One contract for the Queue port, held by the SQLite queue and by SQS (moto).

What both guarantee, where they differ: SQS keeps times in whole seconds (rounded up, so a
message is hidden at least as long as asked), gives a dead letter that `dead_letter` moved a new
id, cannot keep `record_error`'s error, and counts approximately (moto: exactly). Behaviour only
the SQLite queue has (stale receipts ignored, a killed consumer) is in tests/test_sqlite_queue.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from automlops.aws.sqs_queue import SqsQueue
from automlops.errors import NotFoundError
from automlops.local.sqlite_queue import SqliteQueue
from automlops.ports import Queue

MAX_RECEIVES = 2
Q = "work"


def _sqs() -> SqsQueue:
    client = boto3.client("sqs", region_name="us-east-1")
    # Named unlike the source on purpose: SqsQueue finds it through the RedrivePolicy only.
    dlq = client.create_queue(QueueName="failures-of-work")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
    policy = {
        "deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"],
        "maxReceiveCount": str(MAX_RECEIVES),
    }
    client.create_queue(
        QueueName=Q,
        Attributes={"VisibilityTimeout": "30", "RedrivePolicy": json.dumps(policy)},
    )
    # No long polls: moto answers for the whole queue at once.
    return SqsQueue(client, poll_wait_s=0, hide_s=30)


@pytest.fixture(params=["sqlite", "sqs"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Queue]:
    if request.param == "sqlite":
        yield SqliteQueue(tmp_path / "q.db", visibility_timeout_s=30, max_receives=MAX_RECEIVES)
    else:
        with mock_aws():
            yield _sqs()


def _exhaust(queue: Queue, body: str) -> None:
    """Send a message and fail it on every allowed delivery (made visible again at once)."""
    queue.send(Q, body)
    for attempt in range(1, MAX_RECEIVES + 1):
        [message] = queue.receive(Q)
        assert message.receive_count == attempt
        queue.change_visibility(Q, message.receipt_handle, 0)


def _dead_letter(queue: Queue, body: str, error: str) -> None:
    queue.send(Q, body)
    [message] = queue.receive(Q)
    queue.dead_letter(Q, message, error)


# -- delivery ------------------------------------------------------------------------------


def test_a_received_message_is_hidden_until_deleted(queue: Queue) -> None:
    sent_id = queue.send(Q, "hello")
    [message] = queue.receive(Q)
    assert (message.message_id, message.body, message.receive_count) == (sent_id, "hello", 1)
    assert queue.receive(Q) == []
    assert queue.counts(Q) == (0, 1)
    queue.delete(Q, message.receipt_handle)
    assert queue.counts(Q) == (0, 0)
    assert queue.receive(Q) == []


def test_receive_takes_at_most_max_messages(queue: Queue) -> None:
    sent = {queue.send(Q, f"m{i}") for i in range(3)}
    first = queue.receive(Q, max_messages=2)
    assert len(first) == 2
    rest = queue.receive(Q, max_messages=10)
    assert {m.message_id for m in first + rest} == sent
    assert queue.counts(Q) == (0, 3)


def test_change_visibility_zero_redelivers_with_a_higher_count(queue: Queue) -> None:
    queue.send(Q, "work")
    [first] = queue.receive(Q)
    queue.change_visibility(Q, first.receipt_handle, 0)
    assert queue.counts(Q) == (1, 0)
    [second] = queue.receive(Q)
    assert (second.message_id, second.body) == (first.message_id, "work")
    assert second.receive_count == 2
    queue.delete(Q, second.receipt_handle)
    assert queue.counts(Q) == (0, 0)


def test_change_visibility_hides_a_received_message_longer(queue: Queue) -> None:
    queue.send(Q, "later")
    [message] = queue.receive(Q, visibility_timeout_s=0)
    queue.change_visibility(Q, message.receipt_handle, 60)
    assert queue.receive(Q) == []
    assert queue.counts(Q) == (0, 1)


def test_an_elapsed_visibility_timeout_redelivers(queue: Queue) -> None:
    queue.send(Q, "retry")
    [first] = queue.receive(Q, visibility_timeout_s=0.5)  # SQS: at least a second
    time.sleep(1.2)  # longer than either queue hides it: only its return is asserted
    [again] = queue.receive(Q)
    assert again.message_id == first.message_id
    assert again.receive_count == 2


def test_a_delayed_message_is_counted_but_not_delivered(queue: Queue) -> None:
    queue.send(Q, "soon", delay_s=60)
    assert queue.receive(Q) == []
    assert queue.counts(Q) == (0, 1)


def test_messages_come_in_the_lambda_record_shape(queue: Queue) -> None:
    queue.send(Q, '{"a": 1}')
    [message] = queue.receive(Q)
    record = message.model_dump(by_alias=True)
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"].endswith(f":{Q}")
    assert set(record["attributes"]) >= {"ApproximateReceiveCount", "SentTimestamp"}
    assert len(record["md5OfBody"]) == 32
    assert json.loads(record["body"]) == {"a": 1}


# -- dead letters --------------------------------------------------------------------------


def test_a_message_received_too_often_is_dead_lettered(queue: Queue) -> None:
    _exhaust(queue, "poison")
    queue.dead_letter_exhausted(Q)  # SQLite moves it here, SQS on the next receive
    assert queue.receive(Q) == []
    assert queue.counts(Q) == (0, 0)
    [dead] = queue.dead_letters(Q)
    assert (dead.body, dead.source_queue) == ("poison", Q)
    assert dead.receive_count >= MAX_RECEIVES
    assert dead.error is None  # nobody recorded one


def test_record_error_is_kept_or_dropped_never_wrong(queue: Queue) -> None:
    queue.send(Q, "flaky")
    for _ in range(MAX_RECEIVES):
        [message] = queue.receive(Q)
        queue.record_error(Q, message.receipt_handle, f"attempt {message.receive_count}")
        queue.change_visibility(Q, message.receipt_handle, 0)
    assert queue.receive(Q) == []
    [dead] = queue.dead_letters(Q)
    assert dead.error in (None, f"attempt {MAX_RECEIVES}")  # SQS cannot keep it


def test_dead_letter_moves_a_received_message_now_with_its_reason(queue: Queue) -> None:
    _dead_letter(queue, "bad", "ValueError: boom")
    assert queue.counts(Q) == (0, 0)
    assert queue.receive(Q) == []
    [dead] = queue.dead_letters(Q)
    assert (dead.body, dead.source_queue, dead.error) == ("bad", Q, "ValueError: boom")
    assert dead.receive_count == 1
    assert dead.sent_at is not None and abs(dead.sent_at - time.time()) < 600


def test_listing_dead_letters_consumes_nothing(queue: Queue) -> None:
    _dead_letter(queue, "first", "e1")
    time.sleep(0.01)  # distinct send times, so "oldest first" is defined
    _dead_letter(queue, "second", "e2")
    listed = queue.dead_letters(Q)
    assert [d.body for d in listed] == ["first", "second"]
    assert [d.id for d in queue.dead_letters(Q)] == [d.id for d in listed]
    assert [d.error for d in queue.dead_letters(Q)] == ["e1", "e2"]
    assert queue.counts(Q) == (0, 0)


def test_redrive_one_by_id(queue: Queue) -> None:
    _dead_letter(queue, "first", "e1")
    _exhaust(queue, "second")
    queue.dead_letter_exhausted(Q)
    assert queue.receive(Q) == []
    by_body = {d.body: d for d in queue.dead_letters(Q)}
    assert queue.redrive(Q, by_body["second"].id) == 1
    assert [d.body for d in queue.dead_letters(Q)] == ["first"]
    [back] = queue.receive(Q)
    assert back.body == "second"
    assert back.receive_count == 1  # a fresh count: it gets all its deliveries again
    assert queue.receive(Q) == []


def test_redrive_all(queue: Queue) -> None:
    bodies = [f"m{i}" for i in range(12)]  # more than SQS gives in one receive
    for body in bodies:
        _dead_letter(queue, body, "e")
    assert queue.redrive(Q) == len(bodies)
    assert queue.dead_letters(Q) == []
    back = queue.receive(Q, max_messages=10) + queue.receive(Q, max_messages=10)
    assert sorted(m.body for m in back) == sorted(bodies)
    assert {m.receive_count for m in back} == {1}
    assert queue.redrive(Q) == 0


def test_redriving_an_unknown_id_is_not_found_and_loses_nothing(queue: Queue) -> None:
    _dead_letter(queue, "kept", "e")
    with pytest.raises(NotFoundError):
        queue.redrive(Q, "no-such-message")
    [dead] = queue.dead_letters(Q)
    assert (dead.body, dead.error) == ("kept", "e")
    assert queue.counts(Q) == (0, 0)
    assert queue.redrive(Q, dead.id) == 1


# -- SQS only ------------------------------------------------------------------------------


def test_sqs_a_queue_without_a_redrive_policy_has_no_dead_letters_to_list() -> None:
    with mock_aws():
        queue = _sqs()
        queue.client.create_queue(QueueName="plain")
        with pytest.raises(NotFoundError, match="RedrivePolicy"):
            queue.dead_letters("plain")
        with pytest.raises(NotFoundError, match="RedrivePolicy"):
            queue.redrive("plain")


def test_sqs_redrive_keeps_other_attributes_and_drops_the_dead_letter_ones() -> None:
    with mock_aws():
        queue = _sqs()
        url = queue.url(Q)
        queue.client.send_message(
            QueueUrl=url,
            MessageBody="tagged",
            MessageAttributes={"trace": {"DataType": "String", "StringValue": "t-1"}},
        )
        [message] = queue.receive(Q)
        assert message.message_attributes["trace"]["stringValue"] == "t-1"
        queue.dead_letter(Q, message, "boom")
        [dead] = queue.dead_letters(Q)
        assert (dead.error, dead.receive_count) == ("boom", 1)
        assert dead.sent_at == int(message.attributes["SentTimestamp"]) / 1000
        assert queue.redrive(Q) == 1
        [back] = queue.receive(Q)
        assert set(back.message_attributes) == {"trace"}
        assert back.message_attributes["trace"]["stringValue"] == "t-1"
