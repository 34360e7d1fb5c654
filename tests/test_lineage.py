"""The lineage of a model version: one typed record, its `--json` document (a public contract,
key for key), its text and its dashboard rendering, over a workspace built by the pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from automlops.cli import app
from automlops.errors import AutomlopsError
from automlops.local.runtime import open_runtime
from automlops.registry import RegistryDoc
from automlops.ui.up import build_app
from automlops.usecases.lineage import Lineage, trace
from support import DEMO_DATASET

cli = CliRunner()

# The document `automlops lineage DATASET VERSION --json` prints, as it was when the trace was a
# dict: every key, in order (None: a leaf). Scripts outside read it; it must not drift.
STEP_KEYS: dict[str, list[str] | None] = {
    "dataset": None,
    "version": None,
    "status": None,
    "is_champion": None,
    "source": ["bucket", "key", "sha256"],
    "processed": ["bucket", "schema", "transform", "splits", "drift"],
    "training": [
        "run_id",
        "created_at",
        "learner",
        "params",
        "best_iteration",
        "threshold",
        "metrics",
        "trials",
    ],
    "artifact": ["bucket", "key", "endpoint"],
    "evaluation": ["bucket", "report_json", "report_md", "report_html", "plots", "metrics"],
    "decisions": None,
    # Added after the document's first shape, at its end: the retrain decision behind a
    # version the loop uploaded (null for a person's upload).
    "trigger": None,
}
# The registry's own decision record; `replaced` (the champion a promotion replaced) was added
# to it after the document's first shape, at its end.
DECISION_KEYS = ["status", "reason", "at", "details", "replaced"]


def _lineage_json(home: Path, version: int = 1) -> dict[str, Any]:
    result = cli.invoke(app, ["lineage", DEMO_DATASET, str(version), "--json", "--home", str(home)])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.output)
    return document


def _assert_contract_keys(document: dict[str, Any]) -> None:
    assert list(document) == list(STEP_KEYS)
    for step, keys in STEP_KEYS.items():
        if keys is not None and document[step] is not None:
            assert list(document[step]) == keys, step
    assert document["decisions"], "a trained and evaluated version has a decision"
    for decision in document["decisions"]:
        assert list(decision) == DECISION_KEYS


def _private_copy(trained_home: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_home, tmp_path / "home"))


def test_the_json_document_keeps_every_key_in_order(trained_home: Path) -> None:
    document = _lineage_json(trained_home)
    _assert_contract_keys(document)

    runtime = open_runtime(trained_home)
    try:
        entry = runtime.registry.read(DEMO_DATASET).get(1)
        traced = trace(runtime.store, runtime.settings, DEMO_DATASET, 1)
    finally:
        runtime.close()
    # The document is the record's JSON form, and both say what the registry says.
    assert document == json.loads(json.dumps(traced.model_dump(mode="json")))
    assert document["status"] == "champion" and document["is_champion"] is True
    assert document["source"]["key"] == entry.source_key
    assert document["source"]["sha256"] == entry.source_sha256
    assert document["processed"]["schema"].endswith(f"{entry.run_id}/schema.json")
    assert document["processed"]["transform"].endswith("transform.json")
    assert set(document["processed"]["splits"]) == {"train", "validation", "test"}
    assert document["processed"]["splits"]["test"] == entry.test_key
    assert document["training"]["run_id"] == entry.run_id
    assert document["training"]["learner"] == entry.learner
    assert document["training"]["trials"] and document["training"]["metrics"]
    assert document["artifact"] == {
        "bucket": entry.artifact_bucket,
        "key": entry.artifact_key,
        "endpoint": entry.endpoint,
    }
    assert document["evaluation"]["metrics"] == entry.metrics
    assert any(k.endswith("roc.png") for k in document["evaluation"]["plots"])
    assert [d["status"] for d in document["decisions"]] == ["champion"]
    assert document["decisions"][0]["reason"] == entry.decisions[0].reason


@pytest.mark.parametrize("artifact", ["unreadable", "missing"])
def test_without_its_artifact_or_report_the_registry_still_tells_the_story(
    trained_home: Path, tmp_path: Path, artifact: str
) -> None:
    home = _private_copy(trained_home, tmp_path)
    runtime = open_runtime(home)
    try:
        entry = runtime.registry.read(DEMO_DATASET).get(1)
        if artifact == "unreadable":
            runtime.store.put(entry.artifact_bucket, entry.artifact_key, b"not a tarball")
        else:
            path = runtime.store.local_file(entry.artifact_bucket, entry.artifact_key)
            assert path is not None
            path.unlink()

        def forget_the_report(doc: RegistryDoc) -> None:
            doc.get(1).report_key = None

        runtime.registry.update(DEMO_DATASET, forget_the_report)
    finally:
        runtime.close()

    document = _lineage_json(home)
    _assert_contract_keys(document)
    assert document["processed"]["transform"] is None
    assert document["processed"]["splits"] == {"test": entry.test_key}
    assert document["training"]["created_at"] == entry.created_at
    assert document["training"]["params"] == {} and document["training"]["trials"] == []
    assert document["training"]["best_iteration"] is None
    assert document["training"]["threshold"] is None
    assert document["evaluation"] is None

    text = cli.invoke(app, ["lineage", DEMO_DATASET, "1", "--home", str(home)]).output
    assert "reports    not evaluated yet" in text
    assert "learner " + entry.learner + ", 0 trials" in text


def test_the_text_names_each_step_in_pipeline_order(trained_home: Path) -> None:
    document = _lineage_json(trained_home)
    result = cli.invoke(app, ["lineage", DEMO_DATASET, "1", "--home", str(trained_home)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{DEMO_DATASET} v1: champion (serving)"
    starts = [
        next(i for i, line in enumerate(lines) if line.startswith(step))
        for step in ("source", "processed", "training", "artifact", "reports", "decisions")
    ]
    assert starts == sorted(starts)
    processed, evaluation = document["processed"], document["evaluation"]
    assert f"processed  {processed['bucket']}/{processed['schema']}" in lines
    assert f"reports    {evaluation['bucket']}/{evaluation['report_html']}" in lines
    assert document["decisions"][0]["reason"] in result.output


def test_an_unknown_version_or_a_bad_name_is_refused(trained_home: Path) -> None:
    missing = cli.invoke(app, ["lineage", DEMO_DATASET, "9", "--home", str(trained_home)])
    assert missing.exit_code == 2 and "no version 9" in missing.output
    bad = cli.invoke(app, ["lineage", "../x", "1", "--json", "--home", str(trained_home)])
    assert bad.exit_code == 2 and not bad.stdout
    runtime = open_runtime(trained_home)
    try:
        with pytest.raises((AutomlopsError, ValueError)):
            trace(runtime.store, runtime.settings, DEMO_DATASET, 9)
    finally:
        runtime.close()


def test_the_dashboard_run_page_shows_the_same_lineage(trained_home: Path) -> None:
    runtime = open_runtime(trained_home)
    try:
        traced: Lineage = trace(runtime.store, runtime.settings, DEMO_DATASET, 1)
        client = TestClient(build_app(runtime), base_url="http://testserver")
        page = client.get(f"/ui/runs/{traced.training.run_id}").text
    finally:
        runtime.close()
    assert "Lineage of version 1" in page
    assert f"{traced.source.bucket}/{traced.source.key}" in page
    assert f"{traced.processed.bucket}/{traced.processed.schema_key}" in page
    assert f"{traced.artifact.bucket}/{traced.artifact.key}" in page
    assert traced.evaluation is not None
    assert f"/ui/files/{traced.evaluation.report_html}" in page
    assert traced.decisions[0].reason in page
