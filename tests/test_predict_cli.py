"""`automlops predict FILE --dataset D [--version N] [--output PATH] [--explain K]`, end to end
through the bucket and the worker, and its refusals (clear message, exit code, no traceback)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner, Result

from automlops.cli import app
from automlops.demo import breast_cancer_csv
from support import DEMO_DATASET

cli = CliRunner()


@pytest.fixture
def home(trained_home: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_home, tmp_path / "home"))


def _predict(home: Path, *args: str) -> Result:
    return cli.invoke(app, ["predict", *args, "--home", str(home)])


def test_predict_writes_one_answer_per_row_beside_the_file(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "patients.csv"
    source.write_bytes(breast_cancer_csv())
    result = _predict(home, str(source), "--dataset", DEMO_DATASET)
    assert result.exit_code == 0, result.output
    written = tmp_path / "patients.csv.predictions.csv"
    assert str(written) in result.stdout
    scored = pl.read_csv(written)
    assert scored.height == pl.read_csv(source).height
    assert {"prediction", "probability_benign", "probability_malignant"} <= set(scored.columns)
    total = scored["probability_benign"] + scored["probability_malignant"]
    assert total.to_numpy() == pytest.approx(1.0)

    # A named version and output; Parquet in, Parquet out.
    parquet = tmp_path / "patients.parquet"
    pl.read_csv(source).write_parquet(parquet)
    out = tmp_path / "out" / "scored.parquet"
    result = _predict(
        home, str(parquet), "--dataset", DEMO_DATASET, "--version", "1", "--output", str(out)
    )
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(out)["prediction"].to_list() == scored["prediction"].to_list()


def test_explain_adds_each_rows_top_contributions(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "patients.csv"
    source.write_bytes(breast_cancer_csv())
    result = _predict(home, str(source), "--dataset", DEMO_DATASET, "--explain", "3")
    assert result.exit_code == 0, result.output
    scored = pl.read_csv(tmp_path / "patients.csv.predictions.csv")
    width = pl.read_csv(source).width
    assert scored.columns[width + 3 :] == [
        "base",
        *[f"{kind}_{i}" for i in (1, 2, 3) for kind in ("column", "contribution")],
    ]
    inputs = set(pl.read_csv(source).columns) - {"diagnosis"}
    top = scored.select(f"contribution_{i}" for i in (1, 2, 3)).to_numpy()
    assert set(scored["column_1"]) <= inputs and (np.abs(top[:, :-1]) >= np.abs(top[:, 1:])).all()
    # Every column (K >= their count): base + contributions is the row's log-odds.
    out = tmp_path / "all.csv"
    every = ["--explain", "50", "--output", str(out)]
    assert _predict(home, str(source), "--dataset", DEMO_DATASET, *every).exit_code == 0
    full = pl.read_csv(out)
    k = sum(name.startswith("contribution_") for name in full.columns)
    assert k == len(inputs)
    for row in (
        full.filter(pl.col("probability_malignant").is_between(0.02, 0.98)).head(5).rows(named=True)
    ):
        p = row["probability_malignant"]
        total = row["base"] + sum(row[f"contribution_{i}"] for i in range(1, k + 1))
        assert total == pytest.approx(math.log(p / (1 - p)), abs=1e-4)
        assert {row[f"column_{i}"] for i in range(1, k + 1)} == inputs


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (["--dataset", "nosuch"], b"a,b\n1,2\n", "has no model versions"),
        (["--dataset", DEMO_DATASET, "--version", "9"], b"a,b\n1,2\n", "no version 9"),
        # A UTF-16 byte order mark, then bytes that are no UTF-16 text; then binary bytes.
        (["--dataset", DEMO_DATASET], b"\xff\xfe\x00garbage\x00", "decoded as utf-16"),
        (["--dataset", DEMO_DATASET], b"a,b\n\x00\x01\x02garbage\x00", "binary file"),
        (["--dataset", DEMO_DATASET], b"a,b\n1,2\n", "none of the model's input columns"),
    ],
)
def test_bad_requests_exit_non_zero_with_a_clear_error(
    home: Path, tmp_path: Path, args: list[str], content: bytes, message: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(content)
    result = _predict(home, str(source), *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "in.csv.predictions.csv").exists()


def test_a_file_name_the_store_cannot_hold_is_refused_cleanly(home: Path, tmp_path: Path) -> None:
    source = tmp_path / ("x" * 243 + ".csv")  # the file system's longest name, less a little
    source.write_bytes(breast_cancer_csv())
    result = _predict(home, str(source), "--dataset", DEMO_DATASET)
    assert result.exit_code == 2 and "over 245 bytes" in result.output
    assert "Traceback" not in result.output


def test_a_missing_file_is_refused(home: Path, tmp_path: Path) -> None:
    result = _predict(home, str(tmp_path / "absent.csv"), "--dataset", DEMO_DATASET)
    assert result.exit_code == 2 and "no such file" in result.output


def test_a_dataset_without_champion_is_refused(home: Path, tmp_path: Path) -> None:
    from automlops.local.runtime import open_runtime

    runtime = open_runtime(home)
    runtime.registry.update(DEMO_DATASET, lambda doc: setattr(doc, "champion", None))
    runtime.close()
    source = tmp_path / "in.csv"
    source.write_bytes(breast_cancer_csv())
    result = _predict(home, str(source), "--dataset", DEMO_DATASET)
    assert result.exit_code == 2 and "has no champion" in result.output
    assert "Traceback" not in result.output


def test_explain_beyond_its_cap_is_refused_before_anything_runs(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(b"mean_radius\n14.1\n")
    result = _predict(home, str(source), "--dataset", DEMO_DATASET, "--explain", "51")
    assert result.exit_code == 2
    assert "--explain" in result.output and "50" in result.output
    assert not (tmp_path / "in.csv.predictions.csv").exists()


# Runs the command in a fresh interpreter (the test process has imported everything already)
# and prints which of the libraries scoring never uses it loaded on the way.
_IMPORTS_OF_PREDICT = """
import sys
from automlops.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    heavy = ("sklearn", "pandas", "scipy.stats", "optuna", "matplotlib", "automlops.ui")
    heavy += ("fastapi", "httpx")  # the web stack: predict calls no endpoint
    print(sorted(name for name in heavy if name in sys.modules))
"""


def test_predict_imports_neither_scikit_learn_nor_pandas_nor_the_training_or_web_stack(
    home: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    source = tmp_path / "patients.csv"
    source.write_bytes(breast_cancer_csv())
    command = ["predict", str(source), "--dataset", DEMO_DATASET, "--home", str(home)]
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTS_OF_PREDICT, *command], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "patients.csv.predictions.csv").exists()  # it did score the file
    assert done.stdout.splitlines()[-1] == "[]"
