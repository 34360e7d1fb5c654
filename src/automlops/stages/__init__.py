"""The four pipeline stages, batch scoring, and the one table the runtimes dispatch through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from automlops.keys import RunRef
from automlops.ports import Ports
from automlops.routing import Stage
from automlops.stages import deploy, evaluate, preprocess, score, train
from automlops.stages.result import StageResult

# The event a stage runs on: an S3 event record, or an SQS record for a queue-triggered stage.
# `Any` because each stage takes its own one of the two (a Callable cannot say "either").
StageFn = Callable[[Any, Ports], StageResult]
IdentifyFn = Callable[[Any, Ports], RunRef]


@dataclass(frozen=True)
class StageSpec:
    """A stage, as a runtime sees it.

    `identify` names the run an event belongs to, cheaply (from the event and small documents,
    never by reading the data the stage processes), so a runtime can record and log the run
    before the stage runs and when it fails; `run` does the stage's work and reports it.
    """

    identify: IdentifyFn
    run: StageFn


STAGES: dict[Stage, StageSpec] = {
    Stage.preprocess: StageSpec(identify=preprocess.identify, run=preprocess.preprocess),
    Stage.train: StageSpec(identify=train.identify, run=train.train),
    Stage.deploy: StageSpec(identify=deploy.identify, run=deploy.deploy),
    Stage.evaluate: StageSpec(identify=evaluate.identify, run=evaluate.evaluate),
    Stage.score: StageSpec(identify=score.identify, run=score.score),
}

__all__ = ["STAGES", "StageResult", "StageSpec"]
