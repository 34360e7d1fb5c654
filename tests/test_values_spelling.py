"""Values read as a person wrote them: decimal commas, thousands, currency, percent, booleans in
any case and missing spellings, judged per file, the same in training and in serving."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import polars as pl
import pytest

from automlops.config import Manifest, Task
from automlops.events import object_created
from automlops.local.runtime import LocalRuntime
from automlops.ml.columns.plan import fit_columns
from automlops.ml.columns.target import TargetSpec
from automlops.ml.columns.transform import (
    ColumnKind,
    FittedTransform,
    InvalidValueError,
    NumericColumn,
)
from automlops.ml.columns.values import json_number, parse_numeric
from automlops.stages.preprocess import preprocess
from automlops.tabular.csv_reader import read_csv_bytes, read_csv_file
from automlops.tabular.schema import ColumnProfile, DatasetSchema
from automlops.tabular.spelling import (
    NumberSpelling,
    SpellingReader,
    detect_spelling,
    judge_decimal,
)
from support import upload

# -- the rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cells", "delimiter", "mark"),
    [
        (["1,5", "2,25", "abc"], ";", ","),
        (["1.234,50 €", "7"], ";", ","),
        (["$1,234.50", "12"], ",", "."),
        (["0.5", "1,5"], ";", "."),  # one each: a tie, no lone `1,234`: the point
        (["1,234", "12"], ",", "."),  # a quoted US thousand
        (["1,234", "12"], ";", ","),  # the same cell in a `;` file: a decimal comma
        (["1.234"], ";", "."),  # a lone `1.234` stays a decimal point
        (["4.3e-14", "1,234"], ";", "."),  # a program's float is evidence of the point
        (["1.234"], None, ","),  # a frame: text `1.234` survives only in a comma file
        (["1.234.567"], ";", ","),  # a point used twice groups thousands
    ],
)
def test_decimal_mark_is_judged_per_file(
    cells: list[str], delimiter: str | None, mark: str
) -> None:
    assert judge_decimal(cells, delimiter=delimiter) == mark


@pytest.mark.parametrize(
    ("values", "decimal", "spelling", "numbers"),
    [
        (
            ["1.234,50 €", "12,5 €", "-3,00 €", "(4,00 €)", None],
            ",",
            NumberSpelling(decimal=",", thousands=".", currency="€"),
            [1234.5, 12.5, -3.0, -4.0, None],
        ),
        (
            ["$1,234.50", "$12", "-$5.25", "($1,000)"],
            ".",
            NumberSpelling(thousands=",", currency="$"),
            [1234.5, 12.0, -5.25, -1000.0],
        ),
        (["12%", "3,5 %", "0"], ",", NumberSpelling(decimal=",", percent=True), [12, 3.5, 0]),
        (["1 234,5", "12"], ",", NumberSpelling(decimal=",", thousands=" "), [1234.5, 12]),
        (["1'234.5", "£7"], ".", NumberSpelling(thousands="'", currency="£"), [1234.5, 7]),
        (["$1", "£7"], ".", None, None),  # two currencies in one column: not one number
        (["1.234", "12.500"], ",", NumberSpelling(decimal=",", thousands="."), [1234, 12500]),
        (["0.5", "1.25"], ",", NumberSpelling(), [0.5, 1.25]),  # plain, in a comma file
        (["TRUE", "FALSE", "True"], ".", NumberSpelling(booleans=("true", "false")), [1, 0, 1]),
        (["Yes", "NO", "yes"], ".", NumberSpelling(booleans=("yes", "no")), [1, 0, 1]),
        (["y", "N"], ".", NumberSpelling(booleans=("y", "n")), [1, 0]),
        (["t", "F"], ".", NumberSpelling(booleans=("t", "f")), [1, 0]),
        (["M", "F"], ".", None, None),  # `f` beside `m` is a letter, not false
        (["y", "f"], ".", None, None),  # letters of two pairs: not booleans
        (["1,2,3"], ".", None, None),
    ],
)
def test_spelling_of_a_column_and_its_reading(
    values: list[str | None],
    decimal: str,
    spelling: NumberSpelling | None,
    numbers: list[float | None] | None,
) -> None:
    column = pl.Series("c", values, dtype=pl.String)
    found = detect_spelling(column, decimal)  # type: ignore[arg-type]  # parametrized "." | ","
    assert found == spelling
    if spelling is None or numbers is None:
        return
    # Training (a polars column) and serving (one JSON value at a time) read alike.
    assert parse_numeric(column, "c", spelling).to_list() == numbers
    from_json = [json_number(v, i, "c", spelling) for i, v in enumerate(values)]
    assert from_json == pytest.approx([math.nan if n is None else n for n in numbers], nan_ok=True)
    # Plain numbers are read as plain numbers whatever the spelling.
    assert json_number(2.5, 0, "c", spelling) == 2.5
    assert json_number("7", 0, "c", spelling) == 7.0


@pytest.mark.parametrize("missing", ["NA", "N/A", "n/a", "null", "-", "--", "?", "#N/A", " NA "])
def test_missing_spellings_are_missing_in_numbers_and_dates(missing: str) -> None:
    spelling = NumberSpelling(decimal=",", thousands=".")
    column = pl.Series("c", ["1,5", missing], dtype=pl.String)
    assert parse_numeric(column, "c", spelling).to_list() == [1.5, None]
    assert math.isnan(json_number(missing, 0, "c", spelling))
    assert math.isnan(json_number(missing, 0, "c"))


def test_a_value_in_no_spelling_names_row_and_column() -> None:
    spelling = NumberSpelling(currency="$", thousands=",")
    with pytest.raises(InvalidValueError) as info:
        parse_numeric(pl.Series("price", ["$1", "€2"]), "price", spelling)
    assert (info.value.row, info.value.column) == (1, "price")
    with pytest.raises(InvalidValueError):
        json_number("1,2,3", 4, "price", spelling)


def test_reader_paths_agree_on_random_values() -> None:
    """The vectorised and the one-value readers give the same number for every spelling."""
    rng = random.Random(3)
    spellings = [
        NumberSpelling(decimal=",", thousands=".", currency="€"),
        NumberSpelling(thousands=",", currency="$", percent=True),
        NumberSpelling(decimal=",", thousands=" "),
    ]
    for spelling in spellings:
        reader = SpellingReader.of(spelling)
        texts = []
        for _ in range(200):
            x = rng.uniform(-1e6, 1e6)
            whole, frac = f"{abs(x):,.2f}".split(".")
            whole = whole.replace(",", spelling.thousands or "")
            text = f"{'-' if x < 0 else ''}{spelling.currency}{whole}{spelling.decimal}{frac}"
            texts.append(text + ("%" if spelling.percent else ""))
        vectorised = reader.read(pl.Series("x", texts)).to_list()
        assert vectorised == [reader.read_text(t) for t in texts]
        assert None not in vectorised


# -- messy files, read and fitted ------------------------------------------------------------

N = 200
_REGIONS = ["north", "south", "east", "west"]


def messy_rows(seed: int = 5) -> list[dict[str, object]]:
    """Rows with a numeric truth: amount, rate (%), active (bool), member (bool), score."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(N):
        amount = round(float(rng.uniform(5, 5000)), 2)
        rate = round(float(rng.uniform(0, 40)), 1)
        active = bool(rng.random() < 0.5)
        member = bool(rng.random() < 0.4)
        score = None if i % 9 == 0 else round(float(rng.normal(50, 10)), 1)
        signal = amount / 2500 + (1.5 if active else 0) - rate / 40 + rng.normal(0, 0.4)
        rows.append(
            {
                "amount": amount,
                "rate": rate,
                "active": active,
                "member": member,
                "score": score,
                "region": _REGIONS[i % 4],
                "y": "good" if signal > 1.4 else "bad",
            }
        )
    return rows


def plan(frame: pl.DataFrame, target: TargetSpec) -> tuple[FittedTransform, list[ColumnProfile]]:
    """`fit_columns`' transform and profiles, whether it answers a pair (this branch) or a
    `ColumnPlan` (main since the columns13 merge), so this module survives the merge."""
    result: Any = fit_columns(frame, target)
    if isinstance(result, tuple):
        return result[0], result[1]
    return result.transform, result.profiles


TARGET = TargetSpec(name="y", task=Task.binary, labels=["bad", "good"], positive="good")
_NA = ["NA", "-", "?", "N/A", "null"]


def european(value: float, currency: bool = False) -> str:
    whole, frac = f"{value:,.2f}".split(".")
    text = whole.replace(",", ".") + "," + frac
    return text + " €" if currency else text


def european_csv(rows: list[dict[str, object]]) -> bytes:
    """A spreadsheet export of a German locale: `;`, decimal commas, € amounts, `12,5 %`,
    TRUE/FALSE, Ja-style booleans in mixed case, NA spellings."""
    lines = ["amount;rate;active;member;score;region;y"]
    for i, r in enumerate(rows):
        score = r["score"]
        lines.append(
            ";".join(
                [
                    european(float(r["amount"]), currency=True),  # type: ignore[arg-type]
                    f"{r['rate']}".replace(".", ",") + " %",
                    "TRUE" if r["active"] else "FALSE",
                    ("Yes" if i % 2 else "YES") if r["member"] else ("no" if i % 2 else "No"),
                    _NA[i % len(_NA)] if score is None else f"{score}".replace(".", ","),
                    str(r["region"]),
                    str(r["y"]),
                ]
            )
        )
    return ("\n".join(lines) + "\n").encode()


def us_csv(rows: list[dict[str, object]]) -> bytes:
    """A US export: quoted `$1,234.50`, `12.5%`, True/False, N/A."""
    lines = ["amount,rate,active,member,score,region,y"]
    for r in rows:
        score = r["score"]
        lines.append(
            ",".join(
                [
                    f'"${r["amount"]:,.2f}"',
                    f"{r['rate']}%",
                    "True" if r["active"] else "False",
                    "y" if r["member"] else "n",
                    "N/A" if score is None else str(score),
                    str(r["region"]),
                    str(r["y"]),
                ]
            )
        )
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("variant", [european_csv, us_csv])
@pytest.mark.parametrize("path", ["bytes", "file"])
def test_messy_file_reads_as_numbers(variant: object, path: str) -> None:
    rows = messy_rows()
    data = variant(rows)  # type: ignore[operator]
    frame = read_csv_bytes(data, "m.csv") if path == "bytes" else read_csv_file(data, "m.csv")
    assert frame.height == N
    assert frame["score"].null_count() == sum(r["score"] is None for r in rows)

    fitted, profiles = plan(frame, TARGET)
    by_name = {c.name: c for c in fitted.columns}
    for name in ("amount", "rate", "active", "member", "score"):
        assert isinstance(by_name[name], NumericColumn), name
    amount, rate = by_name["amount"], by_name["rate"]
    assert isinstance(amount, NumericColumn) and isinstance(rate, NumericColumn)
    assert amount.spelling is not None and amount.spelling.currency in ("€", "$")
    assert rate.spelling is not None and rate.spelling.percent

    # The encoded matrix equals that of the clean numbers.
    clean = pl.DataFrame(rows).with_columns(pl.col("active", "member").cast(pl.Int64))
    np.testing.assert_allclose(fitted.apply(frame), fitted.apply(clean), rtol=1e-6)

    # Every decision is a typed record the report can list.
    records = {p.name: p.record for p in profiles}
    assert records["y"].action == "target"
    assert records["amount"].action == "feature" and records["amount"].kind == "numeric"
    assert "currency" in records["amount"].parse
    assert "percent (12% -> 12)" in records["rate"].parse
    assert records["active"].parse.startswith("booleans")
    assert records["region"].parse == "text" and records["region"].kind == "categorical"
    by_profile = {p.name: p for p in profiles}
    assert by_profile["amount"].min == pytest.approx(min(float(r["amount"]) for r in rows))  # type: ignore[arg-type]


def test_thousands_in_a_decimal_comma_file_are_not_decimals() -> None:
    """`1.234` in a file whose other cells show decimal commas is one thousand two hundred."""
    data = b"count;price;y\n" + b"1.234;1,5;a\n12.500;2,25;b\n7;3,0;a\n" * 10
    frame = read_csv_bytes(data, "de.csv")
    fitted, _ = plan(frame, TargetSpec(name="y", task=Task.binary, labels=["a", "b"]))
    count = fitted.columns[0]
    assert isinstance(count, NumericColumn)
    assert fitted.apply(frame)[:3, 0].tolist() == [1234.0, 12500.0, 7.0]
    # The same text in a comma-separated file of decimal points is a decimal.
    data = b"count,price,y\n" + b"1.234,1.5,a\n12.5,2.25,b\n7,3.0,a\n" * 10
    frame = read_csv_bytes(data, "us.csv")
    assert frame["count"].dtype == pl.Float64 and frame["count"][0] == 1.234


def test_kind_of_spelled_columns() -> None:
    from automlops.ml.columns.transform import infer_kind

    assert infer_kind(pl.Series(["TRUE", "FALSE", None])) is ColumnKind.numeric
    assert infer_kind(pl.Series(["1.234,5", "7"]), decimal=",") is ColumnKind.numeric
    assert infer_kind(pl.Series(["1.234,5", "7"]), decimal=".") is ColumnKind.categorical
    assert infer_kind(pl.Series(["M", "F"])) is ColumnKind.categorical


def test_preprocess_reads_decimal_commas_as_the_reader_judged_the_file(
    runtime: LocalRuntime,
) -> None:
    """`93,994` alone looks like a thousands separator; in a `;` file whose other columns
    show decimal commas it is ninety-three point nine: the columns step takes the reader's
    judgement of the file (delimiter in view), not one of its own from the values."""
    lines = ["euribor;rate;y"]
    for i in range(60):
        lines.append(
            f"{90 + i % 7},{(i * 37) % 1000:03d};{i % 5},{i % 10};{'yes' if i % 3 else 'no'}"
        )
    data = ("\n".join(lines) + "\n").encode()
    manifest = Manifest(dataset="de", target="y", positive="yes", time_budget_s=1)
    key = upload(runtime, manifest, "de.csv", data)
    info = runtime.store.head("data", key)
    assert info is not None
    event = object_created(
        "data", key, size=info.size, etag=info.etag, configuration_id="preprocess"
    )
    preprocess(event.records[0], runtime.ports())
    [run] = [
        k for k in runtime.store.list("automl-data", "automl/de/") if k.endswith("schema.json")
    ]
    schema = DatasetSchema.model_validate_json(runtime.store.get("automl-data", run))
    euribor = next(c for c in schema.columns if c.name == "euribor")
    assert euribor.max is not None and 90 <= euribor.max < 97
