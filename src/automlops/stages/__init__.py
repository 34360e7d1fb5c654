"""The four pipeline stages, batch scoring, and the one table the runtimes dispatch through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from automlops.keys import RunRef
from automlops.ports import Ports
from automlops.routing import Stage
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


def _on_first_call(module: str, name: str) -> Callable[[Any, Ports], Any]:
    """`automlops.stages.<module>.<name>`, imported when first called: a process imports only
    the stages it runs (evaluate brings scikit-learn and SciPy, train Optuna: a second of
    start-up that `automlops predict`, which only scores, would pay for nothing)."""
    found: list[Callable[[Any, Ports], Any]] = []

    def call(event: Any, ports: Ports) -> Any:
        if not found:
            found.append(getattr(import_module(f"automlops.stages.{module}"), name))
        return found[0](event, ports)

    call.__qualname__ = call.__name__ = f"{module}.{name}"
    return call


def _spec(module: str, run: str) -> StageSpec:
    return StageSpec(identify=_on_first_call(module, "identify"), run=_on_first_call(module, run))


STAGES: dict[Stage, StageSpec] = {
    Stage.preprocess: _spec("preprocess", "preprocess"),
    Stage.train: _spec("train", "train"),
    Stage.deploy: _spec("deploy", "deploy"),
    Stage.evaluate: _spec("evaluate", "evaluate"),
    Stage.score: _spec("score", "score"),
}

__all__ = ["STAGES", "StageResult", "StageSpec"]
