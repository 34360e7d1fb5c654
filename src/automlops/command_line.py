"""What the `automlops` commands and the `automlops aws` commands share: how an app is set up,
how a refused command exits, the options both declare, and the documents both print."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from automlops.config import Task
from automlops.local.sqlite_queue import dlq_name
from automlops.ports import DeadLetter
from automlops.usecases.upload import UploadOptions


def typer_app(help: str) -> typer.Typer:
    """A command group: help when called bare, plain tracebacks, no shell-completion commands."""
    return typer.Typer(
        help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
    )


def fail(message: str) -> typer.Exit:
    """Say what was refused on stderr; raise the result to exit with code 2."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


@contextmanager
def refusals(*errors: type[Exception]) -> Iterator[None]:
    """Turn a use case's refusal (one of `errors`) into `fail(message)`."""
    try:
        yield
    except errors as exc:
        raise fail(str(exc)) from None


# Options declared by commands of both apps, so each means the same everywhere.
DatasetFilter = Annotated[str | None, typer.Option("--dataset", help="Only this dataset.")]
Reason = Annotated[str, typer.Option("--reason", help="Why, for the record.")]
MessageId = Annotated[str | None, typer.Argument(help="One message id.")]
AllMessages = Annotated[bool, typer.Option("--all", help="Every dead-lettered message.")]
UploadDataset = Annotated[
    str | None, typer.Option("--dataset", help="Dataset name (default: file stem).")
]
UploadTarget = Annotated[
    str | None,
    typer.Option(
        "--target",
        help="Target column (checked against the header). A new target for a dataset starts "
        "a new model line: its first model is not compared with the other target's champion.",
    ),
]
UploadPositive = Annotated[
    str | None,
    typer.Option(
        "--positive",
        help="Positive label (binary; case and surrounding space ignored). Checked against "
        "the labels: at upload when the first rows show two, else when the run starts.",
    ),
]
UploadTask = Annotated[
    Task | None, typer.Option("--task", help="binary, multiclass or regression.")
]
UploadDrop = Annotated[
    list[str] | None,
    typer.Option(
        "--drop",
        help="Columns to drop (comma-separated, repeatable; checked against the header).",
    ),
]
UploadKeep = Annotated[
    list[str] | None,
    typer.Option(
        "--keep",
        help="Columns to keep as features though they look like row IDs or target leaks "
        "(comma-separated, repeatable).",
    ),
]
UploadTimeBudget = Annotated[
    float | None, typer.Option("--time-budget", help="Training time budget in seconds.")
]


def upload_options(
    dataset: str | None,
    target: str | None,
    positive: str | None,
    task: Task | None,
    drop: list[str] | None,
    time_budget: float | None,
    keep: list[str] | None = None,
) -> UploadOptions:
    """The upload options of a command line (the use case splits and checks `drop`)."""
    return UploadOptions(
        dataset=dataset,
        target=target,
        positive=positive,
        task=None if task is None else task.value,
        drop=drop or None,
        time_budget_s=time_budget,
        keep=keep or None,
    )


def show(documents: list[Any], as_json: bool, lines: Iterable[str], *, empty: str) -> None:
    """A listing: `documents` as JSON under --json, else `lines` (or `empty` when there are
    no documents)."""
    if as_json:
        typer.echo(json.dumps(documents, indent=2))
        return
    if not documents:
        typer.echo(empty)
    for line in lines:
        typer.echo(line)


def redrive_target(message_id: str | None, all_: bool) -> str | None:
    """The message a redrive command names (None: all of them); exactly one must be given."""
    if (message_id is None) == (not all_):
        raise fail("give a message id or --all")
    return message_id


def dead_letter_documents(messages: list[DeadLetter]) -> list[dict[str, Any]]:
    """`dlq list --json` output: each message with its queue, error and body."""
    return [
        {
            "id": m.id,
            "queue": dlq_name(m.source_queue),  # both adapters name dead letters `<queue>-dlq`
            "source_queue": m.source_queue,
            "receive_count": m.receive_count,
            "error": m.error,
            "body": m.body,
        }
        for m in messages
    ]
