"""The labelled captured rows of a champion as training data: what a retrain uploads.

Each captured row that came back with a label becomes a row of the dataset's CSV shape (the
columns the caller sent, as text, plus the target column), optionally after the rows of the
champion's own training upload, so a retrain can learn the new traffic without forgetting the
old.
"""

from __future__ import annotations

import io
from datetime import datetime

import polars as pl

from automlops.config import Task
from automlops.ports import Ports
from automlops.registry import ModelVersion
from automlops.stages.traffic import LabelJoin, join_labels, read_labels, read_traffic


def labelled_rows(
    ports: Ports,
    dataset: str,
    champion: ModelVersion,
    target: str,
    task: Task,
    since: datetime,
    until: datetime,
) -> pl.DataFrame:
    """The captured rows of `champion` served in [since, until) that have a label, with the
    label (or value) in the column `target`; rows in the order they were served."""
    buckets = ports.settings.buckets
    traffic = read_traffic(
        ports.store, buckets.model_monitoring, dataset, champion.version, since, until, task.value
    )
    latest = read_labels(ports.store, buckets.model_monitoring, dataset, LabelJoin())
    matched = join_labels(traffic, latest, LabelJoin())
    rows = []
    for index, label in matched:
        outcome = label.value if task is Task.regression else label.label
        if outcome is None:
            continue
        rows.append({**traffic.rows[index], target: outcome})
    if not rows:
        return pl.DataFrame(schema={target: pl.String})
    columns = [*sorted({name for row in rows for name in row} - {target}), target]
    frame = pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String), strict=False)
    return frame.with_columns(pl.all().replace("", None))


def with_training_file(ports: Ports, champion: ModelVersion, captured: pl.DataFrame) -> bytes:
    """The champion's training upload (read as text) followed by `captured`, as CSV; a column
    either lacks is empty in the other's rows."""
    source = ports.store.get(ports.settings.buckets.data, champion.source_key)
    original = pl.read_csv(io.BytesIO(source), infer_schema=False)
    return to_csv(pl.concat([original, captured], how="diagonal_relaxed"))


def to_csv(frame: pl.DataFrame) -> bytes:
    """`frame` as the CSV bytes an upload takes."""
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    return buffer.getvalue()
