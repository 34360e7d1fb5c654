"""What a stage reports back to the runtime that called it."""

from __future__ import annotations

from dataclasses import dataclass, field

from automlops.keys import RunRef


@dataclass
class StageResult:
    """What a stage did for its run: the objects it wrote, or that it found the work done."""

    run: RunRef
    outputs: list[str] = field(default_factory=list)
    duplicate: bool = False  # the work was already done for this content; nothing rewritten
    model_version: int | None = None
    headline: tuple[str, float] | None = None  # (metric name, value) for summaries
    final: bool = False  # the pipeline run ends with this stage
    note: str | None = None
