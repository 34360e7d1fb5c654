"""Ground truth over HTTP: `POST /endpoints/{dataset}/feedback` bodies read, checked and stored.

Each request becomes one labels batch in the monitoring bucket (`keys.labels_key`), named by
when it arrived, so a later label for the same id wins when the monitor joins them; nothing is
joined here (an id may be answered after its label arrives, or never).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from automlops import keys
from automlops.ports import ObjectStore
from automlops.serving import wire
from automlops.serving.invocation import ApiError
from automlops.serving.models import ModelCache


def feedback_body() -> dict[str, Any]:
    """The `openapi_extra` of the feedback route (its body is read by hand, size-bounded)."""
    return {
        "requestBody": {
            "required": True,
            "content": {wire.JSON: {"schema": wire.FeedbackBatch.model_json_schema()}},
        }
    }


def accept_feedback(
    models: ModelCache, bucket: str, dataset: str, body: bytes
) -> wire.FeedbackReceipt:
    """Check and store one feedback body for `dataset` (404 when the registry does not know
    it, 400 for a bad body)."""
    if dataset not in models.registry.datasets():
        raise ApiError(404, f"unknown dataset {dataset!r}")
    return store_feedback(models.store, bucket, dataset, read_feedback(body))


def read_feedback(body: bytes) -> list[wire.FeedbackItem]:
    """The items of a feedback body; ApiError 400 naming the first problem."""
    try:
        items = wire.FeedbackBatch.model_validate_json(body).root
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ApiError(
            400,
            f'expected [{{"id": ..., "label" | "value": ...}}, ...]: {where}: {first["msg"]}',
        ) from None
    if not items:
        raise ApiError(400, "no feedback items in the body")
    return items


def store_feedback(
    store: ObjectStore,
    bucket: str,
    dataset: str,
    items: list[wire.FeedbackItem],
    now: datetime | None = None,
) -> wire.FeedbackReceipt:
    """Write `items` as one labels batch; the receipt names it."""
    received = now or datetime.now(UTC)
    stamp = received.isoformat()
    records = [
        wire.LabelRecord(
            id=item.id,
            label=None if item.label is None else wire.label_text(item.label),
            value=item.value,
            received_at=stamp,
            source="api",
        )
        for item in items
    ]
    key = keys.labels_key(dataset, received, f"api-{uuid.uuid4().hex[:12]}")
    store.put(bucket, key, wire.label_lines(records))
    return wire.FeedbackReceipt(dataset=dataset, received=len(records), key=key)
