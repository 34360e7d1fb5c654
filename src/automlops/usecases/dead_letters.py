"""Dead letters: the messages the pipeline's queues gave up on, listed and moved back."""

from __future__ import annotations

from collections.abc import Sequence

from automlops.errors import NotFoundError
from automlops.ports import DeadLetter, Queue


def list_dead_letters(queue: Queue, queues: Sequence[str]) -> list[DeadLetter]:
    """Every dead-lettered message of `queues` (the pipeline's: `Queues.served`), each
    queue's oldest first."""
    return [message for name in queues for message in queue.dead_letters(name)]


def redrive(queue: Queue, queues: Sequence[str], message_id: str | None = None) -> int:
    """Move one dead-lettered message (by id) or all of them back to the queue they came
    from; returns how many moved. NotFoundError when `message_id` is in none of them."""
    moved = 0
    for name in queues:
        try:
            moved += queue.redrive(name, message_id)
        except NotFoundError:
            continue  # the message is in another queue's dead letters
    if message_id is not None and moved == 0:
        raise NotFoundError(f"no dead-lettered message {message_id}")
    return moved
