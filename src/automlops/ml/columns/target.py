"""The prediction target: choosing it, detecting the task, mapping labels to classes."""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel

from automlops.config import Task
from automlops.errors import DataError
from automlops.ml.columns.values import InvalidValueError, parse_numeric
from automlops.tabular.spelling import NumberSpelling, detect_spelling

_TARGET_NAMES = ("y", "target", "label", "class")
_POSITIVE_WORDS = ("yes", "y", "true", "t", "1", "1.0", "positive", "pos")
_MAX_CLASSES = 100
_REGRESSION_MIN_UNIQUE = 20


def named_target(columns: list[str]) -> str | None:
    """The column named y/target/label/class (any case, in that order of preference), if any."""
    lowered = {c.lower(): c for c in columns}
    return next((lowered[name] for name in _TARGET_NAMES if name in lowered), None)


def default_target(columns: list[str]) -> str:
    """A column named y/target/label/class (any case), else the last column."""
    return named_target(columns) or columns[-1]


class TargetSpec(BaseModel):
    """How target values become model outputs. `labels` are strings, in class-index order;
    `spellings` maps each other spelling of a label in the file (case, surrounding space) to
    the label it was merged into; `number_spelling` is how a regression target's numbers were
    written when not plain (`$1,234.50`, `1.234,5`, `12%`)."""

    name: str
    task: Task
    labels: list[str] = []
    positive: str | None = None
    spellings: dict[str, str] = {}
    number_spelling: NumberSpelling | None = None

    def encode(self, values: pl.Series, source: str) -> np.ndarray:
        """Target values to class indices (classification) or floats (regression: read in the
        target's spelling or as plain numbers; a missing spelling is missing)."""
        if self.task is Task.regression:
            try:
                numbers = parse_numeric(values, self.name, self.number_spelling)
            except InvalidValueError as exc:
                raise DataError(
                    source,
                    f"regression target has non-numeric values ({exc.value!r})",
                    column=self.name,
                ) from exc
            return numbers.to_numpy()
        index = {label: i for i, label in enumerate(self.labels)}
        index.update({raw: index[label] for raw, label in self.spellings.items()})
        codes = _as_labels(values).replace_strict(index, default=-1, return_dtype=pl.Int32)
        return codes.to_numpy()


def _as_labels(values: pl.Series) -> pl.Series:
    # Integral floats read as "1.0" would not match the label "1" seen elsewhere.
    if values.dtype.is_float() and (values.drop_nulls() % 1 == 0).all():
        values = values.cast(pl.Int64)
    if values.dtype == pl.Categorical:
        return values  # text already (stored compactly): compared and listed by its values
    return values.cast(pl.String)


def fit_target(
    values: pl.Series,
    name: str,
    *,
    task: Task | None,
    positive: str | None,
    source: str,
    decimal: Literal[".", ","] = ".",
) -> TargetSpec:
    """Detect the task (unless given) and the label set of a target column (nulls excluded).

    A text target of numbers written for people (`$1,234.50`, `12%`, `1.234,5` in a file whose
    decimal mark is `decimal`) is numbers: a regression target when many-valued (or when
    `task` says so), read back in its spelling."""
    present = values.drop_nulls()
    if present.len() == 0:
        raise DataError(source, "target column has no values", column=name)
    numbers, spelling = _as_numbers(present, name, task, decimal)
    if task is None:
        task = _detect_task(present, numbers)
    if task is Task.regression:
        return _regression_target(numbers, spelling, name, positive, source)
    return _class_target(present, name, task, positive, source)


def _as_numbers(
    present: pl.Series, name: str, task: Task | None, decimal: Literal[".", ","]
) -> tuple[pl.Series, NumberSpelling | None]:
    """The target's values as numbers when text spells numbers (and the task allows a number),
    with that spelling; else the values as they are and None."""
    if present.dtype.is_numeric() or task not in (None, Task.regression):
        return present, None
    # Judged on the distinct values (a few for class labels, however many rows).
    distinct = present.unique()
    spelling = detect_spelling(distinct, decimal)
    if spelling is None or spelling.booleans is not None:
        return present, None
    return parse_numeric(distinct, name, spelling), spelling


def _detect_task(present: pl.Series, numbers: pl.Series) -> Task:
    """Two values: binary; many numbers (or any fraction): regression; else multiclass."""
    numeric = numbers.dtype.is_numeric()
    # Text labels: spellings of one label (" Yes", "YES") count once.
    n_unique = numbers.n_unique() if numeric else len(_merged_labels(present)[0])
    integral = numeric and bool((numbers.cast(pl.Float64) % 1 == 0).all())
    if n_unique == 2:
        return Task.binary
    if numeric and (not integral or n_unique > _REGRESSION_MIN_UNIQUE):
        return Task.regression
    return Task.multiclass


def _regression_target(
    numbers: pl.Series,
    spelling: NumberSpelling | None,
    name: str,
    positive: str | None,
    source: str,
) -> TargetSpec:
    if not numbers.dtype.is_numeric():
        raise DataError(source, "regression target has non-numeric values", column=name)
    if positive is not None:
        raise DataError(
            source,
            f"a positive label ({positive!r}) needs a binary target; this target "
            "is a number (regression)",
            column=name,
        )
    kept = None if spelling is None or spelling.plain else spelling
    return TargetSpec(name=name, task=Task.regression, number_spelling=kept)


def _class_target(
    present: pl.Series, name: str, task: Task, positive: str | None, source: str
) -> TargetSpec:
    """A binary or multiclass target: its labels (spellings merged) and the positive one."""
    labels, spellings = _merged_labels(present)
    if len(labels) < 2:
        raise DataError(
            source, f"target has a single class ({labels[0]!r}); nothing to learn", column=name
        )
    if task is Task.binary:
        if len(labels) != 2:
            raise DataError(
                source, f"binary task needs 2 classes, target has {len(labels)}", column=name
            )
        if positive is None:
            positive = _guess_positive(present, labels, spellings)
        else:
            positive = matching_label(positive, labels, source=source, column=name)
        negative = labels[0] if labels[1] == positive else labels[1]
        return TargetSpec(
            name=name,
            task=task,
            labels=[negative, positive],
            positive=positive,
            spellings=spellings,
        )
    if positive is not None:
        raise DataError(
            source,
            f"a positive label ({positive!r}) needs a binary target; this target has "
            f"{len(labels)} classes ({_shown(labels)})",
            column=name,
        )
    if len(labels) > _MAX_CLASSES:
        raise DataError(
            source,
            f"target has {len(labels)} classes (more than {_MAX_CLASSES}); "
            "pass --task regression if it is a number",
            column=name,
        )
    return TargetSpec(name=name, task=Task.multiclass, labels=labels, spellings=spellings)


def label_key(label: str) -> str:
    """What two spellings of one label share: `" Yes"`, `yes` and `YES` are one label."""
    return label.strip().casefold()


def _merged_labels(present: pl.Series) -> tuple[list[str], dict[str, str]]:
    """The sorted labels of the present target values, spellings that differ only in case or
    surrounding space merged into one label (its most frequent spelling, stripped), and the
    map of every other spelling to its label."""
    counts = _as_labels(present).value_counts(name="n")
    by_key: dict[str, list[tuple[int, str]]] = {}
    for raw, n in counts.with_columns(pl.first().cast(pl.String)).iter_rows():
        by_key.setdefault(label_key(raw), []).append((n, raw))
    spellings: dict[str, str] = {}
    labels = []
    for group in by_key.values():
        if len(group) == 1 and group[0][1].strip() == group[0][1]:
            labels.append(group[0][1])  # one clean spelling: kept as it is
            continue
        # The most frequent spelling names the label (ties: the first in sorted order).
        label = min(group, key=lambda item: (-item[0], item[1].strip()))[1].strip()
        labels.append(label)
        spellings.update({raw: label for _, raw in group if raw != label})
    return sorted(labels), spellings


def sample_labels(values: pl.Series) -> list[str]:
    """The distinct labels of some target values (spellings merged as `fit_target` does)."""
    present = values.drop_nulls()
    return _merged_labels(present)[0] if present.len() else []


def merged_note(target: TargetSpec) -> str | None:
    """A sentence for the schema's notes when spellings of labels were merged, else None."""
    if not target.spellings:
        return None
    groups: dict[str, list[str]] = {}
    for raw, label in sorted(target.spellings.items()):
        groups.setdefault(label, []).append(raw)
    merged = "; ".join(
        f"{label!r} also spelt {', '.join(repr(r) for r in raws)}" for label, raws in groups.items()
    )
    return (
        f"target {target.name!r}: labels differing only in case or surrounding space were "
        f"merged ({merged}); {len(target.labels)} classes"
    )


def matching_label(positive: str, labels: list[str], *, source: str, column: str) -> str:
    """The label `positive` names (exactly, else ignoring case and surrounding space);
    DataError naming the labels when none matches."""
    if positive in labels:
        return positive
    matches = [label for label in labels if label_key(label) == label_key(positive)]
    if len(matches) == 1:
        return matches[0]
    raise DataError(
        source,
        f"positive label {positive!r} is not among the target's labels ({_shown(labels)})",
        column=column,
    )


def _shown(labels: list[str], limit: int = 10) -> str:
    listed = ", ".join(repr(label) for label in labels[:limit])
    return listed + (", ..." if len(labels) > limit else "")


def _guess_positive(values: pl.Series, labels: list[str], spellings: dict[str, str]) -> str:
    for label in labels:
        if label.lower() in _POSITIVE_WORDS:
            return label
    counts = _as_labels(values).value_counts().with_columns(pl.col(values.name).cast(pl.String))
    if spellings:  # counted per label, every spelling of it together
        column = pl.col(values.name)
        counts = counts.with_columns(column.replace(spellings)).group_by(values.name).sum()
    # The minority class is usually the one of interest (fraud, churn, a "yes").
    minority = counts.sort(["count", values.name], descending=[False, False]).row(0)[0]
    return str(minority)
