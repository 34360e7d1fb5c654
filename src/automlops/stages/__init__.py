"""The four pipeline stages and the one table the runtimes dispatch through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from automlops.keys import RunRef
from automlops.ports import Ports
from automlops.routing import Stage
from automlops.stages import deploy, evaluate, preprocess, train
from automlops.stages.result import StageResult


@dataclass(frozen=True)
class StageSpec:
    """How to name the run an event belongs to, and how to run the stage on it."""

    locate: Callable[[Any, Ports], RunRef]
    run: Callable[[Any, Ports], StageResult]


STAGES: dict[Stage, StageSpec] = {
    Stage.preprocess: StageSpec(
        locate=lambda record, ports: preprocess.locate(record, ports)[0],
        run=preprocess.preprocess,
    ),
    Stage.train: StageSpec(locate=lambda record, _: train.locate(record), run=train.train),
    Stage.deploy: StageSpec(locate=lambda record, _: deploy.locate(record), run=deploy.deploy),
    Stage.evaluate: StageSpec(
        locate=lambda record, _: evaluate.locate(record)[0], run=evaluate.evaluate
    ),
}

__all__ = ["STAGES", "StageResult", "StageSpec"]
