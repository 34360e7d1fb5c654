"""The columns of an invocation body matched to a model's input columns, as in training.

A caller writes column names as the uploaded file did, or nearly: `Age` for `age`, ` job` for
`job`, `mean radius` for `mean_radius`. A name that is not an input is matched when it equals
exactly one input once case, surrounding spaces and the choice of space, `_`, `-` or `.` between
words are ignored, and that input is not sent as well; two names that could both
be one input are refused rather than guessed. Names that match nothing are reported back to
the caller, never silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from automlops.errors import PermanentError


class ColumnMatchError(PermanentError):
    """Body columns that cannot be matched to the model's inputs without guessing."""


@dataclass(frozen=True)
class ColumnMatch:
    """How a body's column names map onto a model's inputs."""

    renames: dict[str, str] = field(default_factory=dict)  # body name -> input name
    unknown: list[str] = field(default_factory=list)  # body names no input matches, sorted


_SEPARATORS = re.compile(r"[\s_\-.]+")


def _key(name: str) -> str:
    return _SEPARATORS.sub("_", name.strip().casefold())


def match_columns(
    names: Iterable[str], inputs: Sequence[str], known: frozenset[str]
) -> ColumnMatch:
    """Match body column `names` against the model's `inputs` (`known`: the same, as a set).

    Exact names need nothing; others are matched ignoring case, surrounding spaces and word
    separators (`_`, `-`, `.`, spaces) when that names one input, not sent under its own name.
    ColumnMatchError when a name fits several inputs or several names fit one input.
    """
    sent = set(names)
    strangers = sorted(sent - known)
    if not strangers:
        return ColumnMatch()
    by_key: dict[str, list[str]] = {}
    for name in inputs:
        by_key.setdefault(_key(name), []).append(name)
    renames: dict[str, str] = {}
    unknown: list[str] = []
    for name in strangers:
        candidates = by_key.get(_key(name), [])
        if len(candidates) > 1:
            raise ColumnMatchError(
                f"column {name!r} matches several inputs of the model ({', '.join(candidates)}) "
                "when case is ignored; send the exact name"
            )
        if not candidates:
            unknown.append(name)
            continue
        (target,) = candidates
        if target in sent:
            raise ColumnMatchError(f"columns {name!r} and {target!r} are both sent for {target!r}")
        claimed = [other for other, to in renames.items() if to == target]
        if claimed:
            raise ColumnMatchError(
                f"columns {claimed[0]!r} and {name!r} are both sent for {target!r}"
            )
        renames[name] = target
    return ColumnMatch(renames=renames, unknown=unknown)
