"""Failure classes shared by every stage and adapter.

The worker treats them differently: a permanent error fails the run at once (retrying cannot
help), anything else is retried with backoff and finally dead-lettered.
"""

from __future__ import annotations


class AutomlopsError(Exception):
    """Base class for errors raised on purpose by automlops."""


class PermanentError(AutomlopsError):
    """The input itself is wrong (bad file, bad manifest, bad request): do not retry."""


class DataError(PermanentError):
    """A data file cannot be used; the message names the file and, where known, line and column."""

    def __init__(
        self,
        source: str,
        problem: str,
        *,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.source = source
        self.problem = problem
        self.line = line
        self.column = column
        where = ""
        if line is not None:
            where += f" line {line}"
        if column is not None:
            where += f" column {column!r}"
        super().__init__(f"{source}:{where + ':' if where else ''} {problem}")


class NotFoundError(AutomlopsError):
    """A dataset, version or object does not exist."""


class ConflictError(AutomlopsError):
    """A compare-and-swap lost a race; the caller re-reads and retries."""
