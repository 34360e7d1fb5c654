"""Target choice, task detection and label mapping."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from automlops.config import Task
from automlops.errors import DataError
from automlops.ml.columns.target import default_target, fit_target


def test_default_target() -> None:
    assert default_target(["a", "Label", "b"]) == "Label"
    assert default_target(["a", "b", "c"]) == "c"
    assert default_target(["y", "class"]) == "y"


def test_binary_positive_guess_and_encoding() -> None:
    spec = fit_target(
        pl.Series("y", ["no", "yes", "no"]), "y", task=None, positive=None, source="f"
    )
    assert spec.task is Task.binary
    assert spec.labels == ["no", "yes"] and spec.positive == "yes"
    np.testing.assert_array_equal(spec.encode(pl.Series(["yes", "no"]), "f"), [1, 0])


def test_minority_class_is_positive_without_a_hint() -> None:
    values = pl.Series("t", ["cat", "dog", "dog", "dog"])
    spec = fit_target(values, "t", task=None, positive=None, source="f")
    assert spec.positive == "cat"


def test_task_detection() -> None:
    ints = pl.Series("t", [0, 1, 2, 1, 0])
    assert fit_target(ints, "t", task=None, positive=None, source="f").task is Task.multiclass
    floats = pl.Series("t", np.linspace(0, 1, 50))
    assert fit_target(floats, "t", task=None, positive=None, source="f").task is Task.regression


def test_bad_targets_are_reported() -> None:
    with pytest.raises(DataError, match="single class"):
        fit_target(pl.Series("t", ["a", "a"]), "t", task=None, positive=None, source="f.csv")
    with pytest.raises(DataError, match="not among"):
        fit_target(pl.Series("t", ["a", "b"]), "t", task=None, positive="c", source="f.csv")
