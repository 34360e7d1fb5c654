"""Champion/challenger end to end: promotion, rejection on bad labels, improvement, rollback.

Every step is checked where a user would look: `automlops models --json`, the endpoint's
`version`, the decision's recorded reason, and `automlops lineage`.
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
import polars as pl
from typer.testing import CliRunner

from automlops.cli import app
from automlops.config import Manifest
from automlops.demo import breast_cancer_csv
from automlops.local.runtime import LocalRuntime
from automlops.local.worker import Worker
from automlops.serving import wire
from support import linear_cancer_manifest, upload

DATASET = "scenario"
MANIFEST = linear_cancer_manifest(DATASET)
cli = CliRunner()


def _csv(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    return buffer.getvalue()


def _run(runtime: LocalRuntime, filename: str, data: bytes) -> None:
    upload(runtime, MANIFEST, filename, data)
    finished: list = []
    Worker(runtime, on_run_end=finished.append).run_until_idle()
    [run] = finished
    assert run.status == "succeeded", run.error


def _models(runtime: LocalRuntime) -> dict[int, dict]:
    result = cli.invoke(
        app, ["models", "--dataset", DATASET, "--json", "--home", str(runtime.home)]
    )
    assert result.exit_code == 0, result.output
    return {item["version"]: item for item in json.loads(result.output)}


def _served(runtime: LocalRuntime, expected: int, rows: list[dict]) -> int:
    """The version the endpoint answers with (the server re-reads the champion within a
    second); through the host's own client, which carries the embedded server's token."""
    deadline = time.monotonic() + 5
    while True:
        version = _predicted_by(runtime, rows)
        if version == expected or time.monotonic() > deadline:
            return version
        time.sleep(0.1)


def _predicted_by(runtime: LocalRuntime, rows: list[dict]) -> int:
    return int(wire.invoke(runtime.host, DATASET, rows).model_version)  # sent as a string


def test_champion_challenger_rollback(runtime: LocalRuntime) -> None:
    full = pl.read_csv(io.BytesIO(breast_cancer_csv()))
    good = full.head(350)
    rows = full.drop("diagnosis").head(2).to_dicts()

    # 1. Good data: the first model is promoted.
    _run(runtime, "good.csv", _csv(good))
    models = _models(runtime)
    assert models[1]["status"] == "champion"
    assert "first model" in models[1]["reason"]
    assert _served(runtime, 1, rows) == 1

    # 2. The same rows with shuffled labels: rejected, v1 keeps serving, the reason says why.
    shuffled = good.with_columns(pl.col("diagnosis").shuffle(seed=3))
    _run(runtime, "shuffled.csv", _csv(shuffled))
    models = _models(runtime)
    assert models[1]["status"] == "champion"
    assert models[2]["status"] == "rejected"
    reason = models[2]["reason"]
    assert "worse than champion v1 beyond noise" in reason
    assert "the champion's own test split" in reason  # its proven rows caught the bad labels
    assert _served(runtime, 1, rows) == 1
    assert _predicted_by(runtime, rows) == 1
    details = runtime.registry.read(DATASET).get(2).decisions[-1].details
    on_champion_rows = details["comparisons"]["champion_test"]
    assert on_champion_rows["candidate_worse"] is True
    assert on_champion_rows["upper"] < 0 < on_champion_rows["champion"] - 0.9
    assert set(details["comparisons"]) == {"new_test", "champion_test"}

    # 3. More rows with good labels: promoted, v1 archived.
    _run(runtime, "more.csv", _csv(full))
    models = _models(runtime)
    assert models[3]["status"] == "champion", models[3]["reason"]
    assert "not worse than champion v1" in models[3]["reason"]
    assert models[1]["status"] == "archived"
    assert models[1]["reason"] == "replaced by version 3"
    assert _served(runtime, 3, rows) == 3
    assert _predicted_by(runtime, rows) == 3
    report = json.loads(runtime.store.get("model-monitoring", models[3]["report"]))
    assert [c["rows_set"] for c in report["comparisons"]] == ["new_test", "champion_test"]

    # 4. Rollback: v1 serves again.
    result = cli.invoke(app, ["rollback", DATASET, "--home", str(runtime.home)])
    assert result.exit_code == 0 and "v1 is champion again" in result.output
    models = _models(runtime)
    assert models[1]["status"] == "champion"
    assert models[1]["reason"] == "restored by rollback from version 3"
    assert models[3]["status"] == "archived"
    assert models[2]["status"] == "rejected"
    assert _served(runtime, 1, rows) == 1
    assert _predicted_by(runtime, rows) == 1

    # The lineage of the rejected version: from its upload to its decision.
    result = cli.invoke(app, ["lineage", DATASET, "2", "--json", "--home", str(runtime.home)])
    assert result.exit_code == 0, result.output
    trace = json.loads(result.output)
    assert trace["source"]["key"] == "data/scenario/shuffled.csv"
    assert len(trace["source"]["sha256"]) == 64
    assert set(trace["processed"]["splits"]) == {"train", "validation", "test"}
    assert trace["processed"]["drift"].endswith("drift.json")
    assert trace["training"]["trials"] and trace["training"]["learner"] == "linear"
    assert trace["artifact"]["key"].endswith("output/model.tar.gz")
    assert trace["evaluation"]["report_html"].endswith("report.html")
    assert any(k.endswith("roc.png") for k in trace["evaluation"]["plots"])
    assert [d["status"] for d in trace["decisions"]] == ["rejected"]
    text = cli.invoke(app, ["lineage", DATASET, "1", "--home", str(runtime.home)]).output
    for part in ("source", "processed", "training", "artifact", "reports", "decisions"):
        assert part in text
    assert "restored by rollback from version 3" in text
    missing = cli.invoke(app, ["lineage", DATASET, "9", "--home", str(runtime.home)])
    assert missing.exit_code != 0 and "no version 9" in missing.output


def test_a_candidate_that_cannot_read_the_champions_rows_is_rejected(
    runtime: LocalRuntime,
) -> None:
    r = np.random.default_rng(5)
    x = r.normal(size=300)
    plan = np.where(r.random(300) < 0.5, "basic", "premium")
    label = np.where(x + (plan == "premium") + r.normal(0, 0.5, 300) > 0.5, "yes", "no")
    manifest = Manifest(
        dataset="formats", target="label", positive="yes", time_budget_s=1, learners=["linear"]
    )
    first = pl.DataFrame({"x": x, "plan": plan, "label": label})
    upload(runtime, manifest, "v1.csv", _csv(first))
    Worker(runtime).run_until_idle()
    # The next upload codes the plan as a number: the new model reads it as numeric and cannot
    # read the words the champion's rows (and callers of today) send.
    recoded = first.with_columns((pl.col("plan") == "premium").cast(pl.Int64))
    upload(runtime, manifest, "v2.csv", _csv(recoded))
    finished: list = []
    Worker(runtime, on_run_end=finished.append).run_until_idle()
    assert finished[0].status == "succeeded", finished[0].error
    doc = runtime.registry.read("formats")
    assert doc.champion == 1
    v2 = doc.get(2)
    assert v2.status.value == "rejected"
    assert "cannot score the champion's own test split" in v2.last_reason
    assert "plan" in v2.last_reason
