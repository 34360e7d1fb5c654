"""`automlops predict FILE --dataset D [--version N] [--output PATH] [--explain K]`, end to end
through the bucket and the worker, and its refusals (clear message, exit code, no traceback)."""

from __future__ import annotations

import shutil
from pathlib import Path

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


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (["--dataset", "nosuch"], b"a,b\n1,2\n", "has no model versions"),
        (["--dataset", DEMO_DATASET, "--version", "9"], b"a,b\n1,2\n", "no version 9"),
        (["--dataset", DEMO_DATASET], b"\xff\xfe\x00garbage\x00", "not UTF-8"),
        (["--dataset", DEMO_DATASET], b"a,b\n1,2\n", "none of the model's input columns"),
        (["--dataset", DEMO_DATASET, "--explain", "3"], breast_cancer_csv(), "explanations"),
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
