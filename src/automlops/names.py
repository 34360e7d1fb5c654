"""The one name rule for datasets: what upload accepts, serving and the dashboard route.

A dataset name becomes part of object keys, file names in the local store and AWS resource
names, so it is ASCII letters, digits, '_', '-' and '.', starts with a letter, digit or '_',
and is at most `DATASET_MAX` characters.
"""

from __future__ import annotations

import re

DATASET_MAX = 128
_DATASET = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{DATASET_MAX - 1}}}")


class InvalidName(ValueError):
    """A name breaks the rule; the message says which rule."""


def is_dataset_name(name: str) -> bool:
    """True when `name` may name a dataset (no exception: for routes that answer 404)."""
    return _DATASET.fullmatch(name) is not None


def check_dataset_name(name: str) -> str:
    """`name` when it may name a dataset, else InvalidName saying why."""
    if not is_dataset_name(name):
        raise InvalidName(
            f"dataset name {name[:80]!r} must be 1 to {DATASET_MAX} ASCII letters, digits, "
            "'_', '-' or '.', starting with a letter, digit or '_'"
        )
    return name
