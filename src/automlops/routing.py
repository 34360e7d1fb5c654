"""The routing table: which object or queue message triggers which stage.

Declared once. The local store emits notifications from it, the worker dispatches from it and the
AWS deployment definition is checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from automlops.config import Settings


class Stage(StrEnum):
    preprocess = "preprocess"
    train = "train"
    deploy = "deploy"
    evaluate = "evaluate"
    score = "score"  # batch scoring: a run of its own, not a step of the training pipeline


STAGE_ORDER: tuple[Stage, ...] = (
    Stage.preprocess,
    Stage.train,
    Stage.deploy,
    Stage.evaluate,
    Stage.score,
)


@dataclass(frozen=True)
class ObjectTrigger:
    """An S3 ObjectCreated notification filter (bucket role, key prefix and suffix)."""

    stage: Stage
    bucket_role: str  # attribute name on Buckets
    prefix: str
    suffix: str


@dataclass(frozen=True)
class QueueTrigger:
    """An SQS event source mapping."""

    stage: Stage
    queue_role: str  # attribute name on Queues


OBJECT_TRIGGERS: tuple[ObjectTrigger, ...] = (
    ObjectTrigger(Stage.preprocess, "data", "data/", ".csv"),
    ObjectTrigger(Stage.train, "automl_data", "automl/", "/schema.json"),
    ObjectTrigger(Stage.deploy, "model_output", "", "/output/model.tar.gz"),
    # One per format (an S3 filter takes one suffix); the options sidecar (.json) fires nothing.
    ObjectTrigger(Stage.score, "data", "score/", ".csv"),
    ObjectTrigger(Stage.score, "data", "score/", ".parquet"),
)
QUEUE_TRIGGERS: tuple[QueueTrigger, ...] = (QueueTrigger(Stage.evaluate, "evaluation"),)


class Router:
    """Resolves triggers against the bucket and queue names of a Settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def bucket_of(self, trigger: ObjectTrigger) -> str:
        return getattr(self.settings.buckets, trigger.bucket_role)

    def queue_of(self, trigger: QueueTrigger) -> str:
        return getattr(self.settings.queues, trigger.queue_role)

    def match_object(self, bucket: str, key: str) -> ObjectTrigger | None:
        """The trigger an ObjectCreated of bucket/key fires, if any."""
        for trigger in OBJECT_TRIGGERS:
            if (
                self.bucket_of(trigger) == bucket
                and key.startswith(trigger.prefix)
                and key.endswith(trigger.suffix)
            ):
                return trigger
        return None

    def stage_for_queue(self, queue: str) -> Stage | None:
        for trigger in QUEUE_TRIGGERS:
            if self.queue_of(trigger) == queue:
                return trigger.stage
        return None
