"""EventBridge's "SageMaker ... Job State Change" events, read once for every kind of job.

SageMaker announces each training and transform job's state changes to EventBridge; the event's
`detail` is the job's Describe answer. `read_state_change` validates the envelope and the part
of the detail a reader declares (a pydantic model with SageMaker's field names as aliases), and
refuses anything else as permanent: redelivering a foreign event cannot make it readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from automlops.errors import PermanentError

# The states that end a job (SageMaker's names, the same for training and transform jobs).
FINAL_STATES = ("Completed", "Failed", "Stopped")
FAILED_STATES = ("Failed", "Stopped")

DetailT = TypeVar("DetailT", bound=BaseModel)


class _Envelope(BaseModel):
    """The EventBridge fields read here (the detail is validated by the reader's model)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    source: str
    detail_type: str = Field(alias="detail-type")
    time: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class StateChange(Generic[DetailT]):
    """One job state change: when EventBridge saw it, and the detail as the reader reads it."""

    time: str
    detail: DetailT


def read_state_change(
    event: dict[str, Any], detail: type[DetailT], what: str
) -> StateChange[DetailT]:
    """`event` read as a state change of a `what` ("training job", "transform job");
    PermanentError when it is not one."""
    try:
        envelope = _Envelope.model_validate(event)
        return StateChange(envelope.time, detail.model_validate(envelope.detail))
    except ValidationError as exc:
        raise PermanentError(f"not a SageMaker {what} state change: {exc}") from None
