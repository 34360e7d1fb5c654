"""Numbers written for people (`1.234,5`, `$1,234`, `12%`) read as numbers past the reader: in the
drift check, as a regression target, and by preprocess's magnitude check."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from automlops.config import Manifest, Task
from automlops.errors import DataError
from automlops.events import S3Event
from automlops.local.runtime import LocalRuntime
from automlops.ml.columns.target import fit_target
from automlops.ml.evaluation import drift
from automlops.stages import preprocess as stage
from automlops.tabular.csv_reader import file_decimal
from automlops.tabular.spelling import NumberSpelling
from support import upload

EURO = NumberSpelling(decimal=",", thousands=".")


def _euro(values: np.ndarray) -> list[str]:
    """Numbers as a German spreadsheet writes them: 1.234,56."""
    return [f"{v:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".") for v in values]


def _amounts(n: int, seed: int, shift: float = 0.0) -> pl.DataFrame:
    r = np.random.default_rng(seed)
    amount = r.normal(5000.0 + shift, 800.0, n)
    return pl.DataFrame({"amount": _euro(amount), "y": r.integers(0, 2, n)})


def test_drift_reads_a_spelled_column_as_numbers() -> None:
    baseline, same, shifted = _amounts(800, 0), _amounts(400, 1), _amounts(400, 2, shift=1600.0)
    [column], *_ = drift.compare_frames(baseline, same, {"amount": "numeric"})
    assert column.current_missing == 0.0  # every `1.234,56` read, none taken as missing
    assert not column.drifted
    [column], *_ = drift.compare_frames(baseline, shifted, {"amount": "numeric"})
    assert column.drifted and column.current_missing == 0.0
    assert any("PSI" in reason for reason in column.reasons)


def test_drift_takes_the_transforms_spelling_and_plain_numbers_alike() -> None:
    baseline = _amounts(800, 0)
    plain = pl.DataFrame({"amount": np.random.default_rng(1).normal(5000.0, 800.0, 400)})
    [column], *_ = drift.compare_frames(
        baseline, plain, {"amount": "numeric"}, spellings={"amount": EURO}
    )
    assert column.current_missing == 0.0 and not column.drifted


def test_drift_counts_unreadable_values_as_missing() -> None:
    numbers = drift.as_numbers(pl.Series("a", ["1.234,5", "oops", "NA", "2,5"]), EURO)
    assert numbers.to_list() == [1234.5, None, None, 2.5]


def test_a_regression_target_written_for_people_is_numbers() -> None:
    values = pl.Series("price", [f"${v:,.2f}" for v in np.linspace(900.0, 4000.0, 40)])
    target = fit_target(values, "price", task=None, positive=None, source="p.csv")
    assert target.task is Task.regression
    assert target.number_spelling == NumberSpelling(thousands=",", currency="$")
    encoded = target.encode(pl.Series("price", ["$1,234.50", "1234.5", None]), "p.csv")
    assert encoded[:2].tolist() == [1234.5, 1234.5] and np.isnan(encoded[2])
    with pytest.raises(DataError, match="non-numeric"):
        target.encode(pl.Series("price", ["$1,234.50", "lots"]), "p.csv")


def test_a_decimal_comma_regression_target_and_few_spelled_values_stay_classes() -> None:
    comma = pl.Series("y", _euro(np.linspace(1.0, 3000.0, 30)))
    target = fit_target(comma, "y", task=None, positive=None, source="p.csv", decimal=",")
    assert target.task is Task.regression
    assert target.encode(pl.Series("y", ["1.234,5"]), "p.csv").tolist() == [1234.5]
    shares = pl.Series("y", ["10%", "20%", "30%"] * 10)
    assert fit_target(shares, "y", task=None, positive=None, source="p.csv").task is (
        Task.multiclass
    )


def _preprocess(runtime: LocalRuntime, csv: str) -> None:
    upload(runtime, Manifest(dataset="m", target="y"), "m.csv", csv.encode())
    [message] = runtime.queue.receive(runtime.settings.queues.events)
    [record] = S3Event.model_validate_json(message.body).records
    stage.preprocess(record, runtime.ports())


def test_the_magnitude_check_reads_spelled_numbers(runtime: LocalRuntime) -> None:
    rows = [f'{i};"{i},5";{i % 2}' for i in range(30)]
    rows[7] = '7;"1' + ".000" * 13 + ',0";1'  # 1e39: beyond float32, written 1.000.000,0
    with pytest.raises(DataError) as info:
        _preprocess(runtime, "a;amount;y\n" + "\n".join(rows) + "\n")
    assert info.value.column == "amount"
    assert "data row 8" in info.value.problem


def test_the_files_decimal_mark_is_judged_with_its_delimiter() -> None:
    """`93,994` alone could be a US thousand; in a `;` file beside `1,1` it is a decimal comma,
    which only the reader (seeing the delimiter) can tell."""
    rows = [f"{i};93,994;4,857;1,1;{i % 2}" for i in range(30)]
    data = ("a;price;rate;change;y\n" + "\n".join(rows) + "\n").encode()
    assert file_decimal(data, "e.csv") == ","
    assert file_decimal(b"a,b\n1,2.5\n3,4.5\n", "p.csv") == "."
    assert file_decimal("a;b\n1;2,5\n".encode("utf-16"), "u.csv") is None  # read_csv_bytes'
