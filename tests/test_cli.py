"""The command-line contract, run in-process."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from automlops.cli import app
from automlops.demo import breast_cancer_csv

cli = CliRunner()


def invoke(home: Path, *args: str) -> tuple[int, str]:
    result = cli.invoke(app, [*args, "--home", str(home)])
    return result.exit_code, result.output


def test_init_creates_the_buckets(tmp_path: Path) -> None:
    code, out = invoke(tmp_path, "init")
    assert code == 0
    for bucket in ("data", "automl-data", "model-output", "model-monitoring"):
        assert (tmp_path / bucket).is_dir()
        assert bucket in out


def test_home_defaults_to_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOMLOPS_HOME", str(tmp_path / "env-home"))
    assert cli.invoke(app, ["init"]).exit_code == 0
    assert (tmp_path / "env-home" / "data").is_dir()


def test_upload_picks_and_reports_a_default_target(tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("age,city,label\n1,a,x\n2,b,y\n")
    code, out = invoke(tmp_path / "h", "upload", str(csv))
    assert code == 0
    assert "target: label (a column named 'label'" in out
    manifest = json.loads((tmp_path / "h/data/data/people/manifest.json").read_text())
    assert manifest["target"] == "label"
    [stored] = (tmp_path / "h/data/data/people").glob("*/people.csv")  # in its upload's folder
    assert stored.read_text().startswith("age,")

    other = tmp_path / "other.csv"
    other.write_text("a,b,outcome\n1,2,3\n")
    code, out = invoke(tmp_path / "h", "upload", str(other))
    assert "target: outcome (the last column" in out


def test_manifest_is_stored_and_reused(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,y\n1,2,no\n")
    invoke(
        tmp_path / "h",
        "upload",
        str(csv),
        "--dataset",
        "ds",
        "--target",
        "y",
        "--positive",
        "no",
        "--drop",
        "a, b",
        "--time-budget",
        "5",
        "--task",
        "binary",
    )
    invoke(tmp_path / "h", "upload", str(csv), "--dataset", "ds")
    manifest = json.loads((tmp_path / "h/data/data/ds/manifest.json").read_text())
    assert manifest["positive"] == "no"
    assert manifest["drop"] == ["a", "b"]
    assert manifest["time_budget_s"] == 5
    assert manifest["task"] == "binary"


def test_upload_rejects_a_bad_dataset_name(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("a,y\n1,2\n")
    code, out = invoke(tmp_path / "h", "upload", str(csv), "--dataset", "../evil")
    assert code != 0
    assert "dataset name" in out


def test_run_runs_models_promote_rollback(tmp_path: Path) -> None:
    home = tmp_path / "h"
    good = tmp_path / "cancer.csv"
    good.write_bytes(breast_cancer_csv())
    bad = tmp_path / "broken.csv"
    bad.write_bytes(b"\x00\x01\x02garbage" * 100)
    invoke(
        home,
        "upload",
        str(good),
        "--target",
        "diagnosis",
        "--positive",
        "malignant",
        "--time-budget",
        "2",
    )
    invoke(home, "upload", str(bad), "--time-budget", "2")
    code, out = invoke(home, "run", "--until-idle")
    assert code == 1  # one run failed
    assert "cancer" in out and "succeeded" in out and "roc_auc=" in out
    assert "broken" in out and "failed" in out
    assert re.search(r"data/broken/[0-9a-f-]+/broken\.csv", out), out

    code, out = invoke(home, "runs", "--json")
    runs = {r["dataset"]: r for r in json.loads(out)}
    assert runs["broken"]["status"] == "failed"
    assert "broken.csv" in runs["broken"]["error"]
    ok = runs["cancer"]
    assert ok["status"] == "succeeded" and ok["error"] is None and ok["model_version"] == 1
    assert [s["name"] for s in ok["stages"]] == ["preprocess", "train", "deploy", "evaluate"]
    assert all(s["status"] == "succeeded" and s["duration_s"] >= 0 for s in ok["stages"])
    assert set(ok) >= {"id", "dataset", "source", "status", "error", "stages", "model_version"}
    # The person's file name, not the upload's key; added last (earlier keys keep their place).
    assert ok["filename"] == "cancer.csv" and ok["source"].endswith("/cancer.csv")
    assert ok["source"] != "data/cancer/cancer.csv" and list(ok)[-1] == "filename"

    # A second version from a subset of the rows, then manual control.
    subset = tmp_path / "cancer-2.csv"
    subset.write_text("\n".join(good.read_text().splitlines()[:400]) + "\n")
    invoke(home, "upload", str(subset), "--dataset", "cancer")
    assert invoke(home, "run", "--until-idle")[0] == 0
    code, out = invoke(home, "models", "--dataset", "cancer", "--json")
    versions = json.loads(out)
    assert [v["version"] for v in versions] == [1, 2]
    for v in versions:
        assert set(v) >= {"dataset", "version", "status", "created_at", "task", "metrics", "source"}
        assert "roc_auc" in v["metrics"] and v["reason"]
    assert invoke(home, "promote", "cancer", "2")[0] == 0
    statuses = {v["version"]: v["status"] for v in json.loads(invoke(home, "models", "--json")[1])}
    assert statuses == {1: "archived", 2: "champion"}
    assert invoke(home, "rollback", "cancer")[0] == 0
    statuses = {v["version"]: v["status"] for v in json.loads(invoke(home, "models", "--json")[1])}
    assert statuses[1] == "champion"
    code, out = invoke(home, "rollback", "cancer")
    assert code != 0 and "no earlier champion" in out


def test_dlq_commands_on_an_empty_workspace(tmp_path: Path) -> None:
    code, out = invoke(tmp_path, "dlq", "list", "--json")
    assert code == 0 and json.loads(out) == []
    code, out = invoke(tmp_path, "dlq", "redrive", "nope")
    assert code != 0


def test_upload_of_a_file_longer_than_the_header_window(tmp_path: Path) -> None:
    """The default target comes from the first lines only; the stored bytes are the file's."""
    csv = tmp_path / "long.csv"
    rows = "".join(f"{i},{'c' * 40},{i % 2}\n" for i in range(5000))  # ~250 KB > 64 KiB
    csv.write_text("n,text,outcome\n" + rows)
    code, out = invoke(tmp_path / "h", "upload", str(csv))
    assert code == 0, out
    assert "target: outcome (the last column" in out
    [stored] = (tmp_path / "h/data/data/long").glob("*/long.csv")
    assert stored.read_bytes() == csv.read_bytes()
