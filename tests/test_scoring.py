"""Batch scoring (issue 17): a file dropped under score/<dataset>/ becomes predictions, a run
record, an error file and a lineage document; bad rows, crashes and redeliveries lose nothing
and double nothing."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from automlops import keys
from automlops.demo import breast_cancer_csv
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.local.worker import Worker
from automlops.ml.batch import ScoreOptions
from automlops.ml.predictor import Predictor
from automlops.ports import ObjectInfo
from automlops.ui.up import build_app
from support import DEMO_DATASET

ROWS = 569  # the demo's breast-cancer rows


@pytest.fixture
def scoring(trained_home: Path, tmp_path: Path) -> Iterator[LocalRuntime]:
    """A private copy of the trained workspace (v1 of the demo dataset is champion)."""
    home = Path(shutil.copytree(trained_home, tmp_path / "home"))
    runtime = open_runtime(home)
    yield runtime
    runtime.close()


def _drop(
    runtime: LocalRuntime, filename: str, data: bytes, options: ScoreOptions | None = None
) -> ObjectInfo:
    bucket = runtime.settings.buckets.data
    if options is not None:
        key = keys.score_options_key(DEMO_DATASET, filename)
        runtime.store.put(bucket, key, options.model_dump_json().encode())
    return runtime.store.put(bucket, keys.score_key(DEMO_DATASET, filename), data)


def _lineage(runtime: LocalRuntime) -> dict[str, Any]:
    bucket = runtime.settings.buckets.model_output
    found = [k for k in runtime.store.list(bucket, "predictions/") if k.endswith("lineage.json")]
    assert len(found) == 1, found
    return json.loads(runtime.store.get(bucket, found[0]))


def _champion(runtime: LocalRuntime) -> Predictor:
    entry = runtime.registry.read(DEMO_DATASET).get(1)
    return Predictor.from_bytes(runtime.store.get(entry.artifact_bucket, entry.artifact_key))


def test_a_dropped_csv_is_scored_by_the_champion_with_a_run_and_lineage(
    scoring: LocalRuntime,
) -> None:
    data = breast_cancer_csv()
    _drop(scoring, "customers.csv", data)
    Worker(scoring).run_until_idle()

    lineage = _lineage(scoring)
    out = scoring.store.get(lineage["output_bucket"], lineage["output_key"])
    assert lineage["output_key"].endswith("/customers.csv")
    scored = pl.read_csv(io.BytesIO(out))
    source = pl.read_csv(io.BytesIO(data))
    assert scored.height == source.height == ROWS == lineage["output_rows"]
    # The input's columns as they were, then the label and a probability per class.
    assert scored.columns[: source.width] == source.columns
    assert scored.columns[source.width :] == [
        "prediction",
        "probability_benign",
        "probability_malignant",
    ]
    # The same answers as the serving code gives for the same rows.
    expected = _champion(scoring).predict(source)
    assert expected.proba is not None
    assert scored["probability_malignant"].to_numpy() == pytest.approx(expected.proba[:, 1])
    assert lineage["model_version"] == 1 and lineage["error_rows"] == 0
    assert len(lineage["input_sha256"]) == 64
    errors = scoring.store.get(lineage["output_bucket"], lineage["errors_key"])
    assert errors.decode().splitlines() == ["row,column,message"]

    (run,) = scoring.runlog.list(DEMO_DATASET, limit=1)
    assert run.id == lineage["run_id"] and run.status == "succeeded"
    assert run.source == keys.score_key(DEMO_DATASET, "customers.csv")
    assert [s.name for s in run.stages] == ["score"] and run.model_version == 1

    # On the dashboard like any other run.
    client = TestClient(build_app(scoring), base_url="http://testserver")
    assert run.id in client.get("/ui/runs").text
    detail = client.get(f"/ui/runs/{run.id}")
    assert detail.status_code == 200 and "score" in detail.text


def test_the_same_file_again_is_the_same_run_and_writes_nothing_twice(
    scoring: LocalRuntime,
) -> None:
    _drop(scoring, "a.csv", breast_cancer_csv())
    Worker(scoring).run_until_idle()
    bucket = scoring.settings.buckets.model_output
    before = {k: scoring.store.head(bucket, k) for k in scoring.store.list(bucket, "predictions/")}
    _drop(scoring, "a.csv", breast_cancer_csv())
    Worker(scoring).run_until_idle()
    after = {k: scoring.store.head(bucket, k) for k in scoring.store.list(bucket, "predictions/")}
    assert after == before
    runs = [r for r in scoring.runlog.list(DEMO_DATASET) if r.stages[0].name == "score"]
    assert len(runs) == 1 and runs[0].status == "succeeded"
    assert runs[0].stages[0].status == "skipped"


def _with_bad_rows(rows: dict[int, tuple[str, str]]) -> bytes:
    """The demo CSV with some cells replaced (data row -> (column, text)), and a ragged line."""
    reader = list(csv.reader(io.StringIO(breast_cancer_csv().decode())))
    header, body = reader[0], reader[1:]
    for row, (column, text) in rows.items():
        body[row - 1][header.index(column)] = text
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for i, line in enumerate(body, start=1):
        writer.writerow(line[:3] if i == 7 else line)  # data row 7: too few fields
    return out.getvalue().encode()


@pytest.mark.parametrize("chunk_rows", [None, 50])  # one chunk; twelve, scored side by side
def test_bad_rows_go_to_the_error_file_and_the_good_rows_are_scored(
    scoring: LocalRuntime, monkeypatch: pytest.MonkeyPatch, chunk_rows: int | None
) -> None:
    from automlops.ml import batch

    if chunk_rows is not None:
        monkeypatch.setattr(
            "automlops.stages.score.open_table",
            lambda path, fmt: batch.open_table(path, fmt, chunk_rows=chunk_rows),
        )
    numeric = "mean_radius"
    _drop(scoring, "bad.csv", _with_bad_rows({3: (numeric, "abc"), 300: (numeric, "1e999x")}))
    Worker(scoring).run_until_idle()
    lineage = _lineage(scoring)
    errors = list(
        csv.DictReader(
            io.StringIO(scoring.store.get(lineage["output_bucket"], lineage["errors_key"]).decode())
        )
    )
    assert [(e["row"], e["column"]) for e in errors] == [
        ("3", numeric),
        ("7", ""),
        ("300", numeric),
    ]
    assert "abc" in errors[0]["message"]
    out = pl.read_csv(
        io.BytesIO(scoring.store.get(lineage["output_bucket"], lineage["output_key"]))
    )
    assert out.height == ROWS - 3 == lineage["output_rows"]
    assert lineage["input_rows"] == ROWS and lineage["error_rows"] == 3
    # The good rows, each once and in the file's order, whatever the chunking.
    source = pl.read_csv(io.BytesIO(breast_cancer_csv()))
    good = source.with_row_index("row", offset=1).filter(~pl.col("row").is_in([3, 7, 300]))
    assert out["mean_area"].to_list() == good["mean_area"].to_list()


@pytest.mark.parametrize(
    ("encoding", "delimiter"),
    [("cp1252", ";"), ("utf-16", "\t"), ("utf-8-sig", ",")],  # spreadsheets' exports
)
def test_files_in_spreadsheet_encodings_are_scored_and_written_as_utf8(
    scoring: LocalRuntime, encoding: str, delimiter: str
) -> None:
    """A file as Excel saves it (Windows' cp1252 "CSV", UTF-16 "Unicode text" with tabs,
    "CSV UTF-8" with its BOM) is read in its encoding, as an upload for training is; the
    output is UTF-8 with the text intact and the same predictions as the plain file."""
    source = pl.read_csv(io.BytesIO(breast_cancer_csv()))
    names = [f"client {i} Société Générale é" for i in range(source.height)]
    frame = source.with_columns(pl.Series("client", names)).select(["client", *source.columns])
    text = frame.write_csv(separator=delimiter, line_terminator="\r\n")
    _drop(scoring, "excel.csv", text.encode(encoding))
    Worker(scoring).run_until_idle()
    lineage = _lineage(scoring)
    out = pl.read_csv(
        io.BytesIO(scoring.store.get(lineage["output_bucket"], lineage["output_key"])),
        separator=delimiter,
    )
    assert out.columns[0] == "client" and out["client"].to_list() == names
    expected = _champion(scoring).predict(source)
    assert expected.proba is not None
    assert out["probability_malignant"].to_numpy() == pytest.approx(expected.proba[:, 1])


def test_model_columns_the_file_lacks_are_named_in_the_lineage_and_the_note(
    scoring: LocalRuntime,
) -> None:
    source = pl.read_csv(io.BytesIO(breast_cancer_csv()))
    lacking = source.drop("mean_radius", "worst_area")
    _drop(scoring, "partial.csv", lacking.write_csv().encode())
    Worker(scoring).run_until_idle()
    lineage = _lineage(scoring)
    assert lineage["missing_columns"] == ["mean_radius", "worst_area"]
    assert lineage["output_rows"] == ROWS  # scored, the two as missing values
    (run,) = scoring.runlog.list(DEMO_DATASET, limit=1)
    assert run.note is not None and "scored as missing: mean_radius, worst_area" in run.note


@pytest.mark.parametrize(
    ("values", "shown"),
    [
        (lambda c: pl.concat_list(c, c), "List(Float64)"),  # Parquet can hold lists
        (lambda c: pl.duration(seconds=c), "Duration"),
    ],
)
def test_a_model_column_of_a_type_no_model_reads_fails_the_run_at_once(
    scoring: LocalRuntime, values: Callable[[pl.Expr], pl.Expr], shown: str
) -> None:
    source = pl.read_csv(io.BytesIO(breast_cancer_csv()))
    odd = source.with_columns(values(pl.col("mean_radius")).alias("mean_radius"))
    buffer = io.BytesIO()
    odd.write_parquet(buffer)
    _drop(scoring, "odd.parquet", buffer.getvalue())
    Worker(scoring).run_until_idle()
    (run,) = scoring.runlog.list(DEMO_DATASET, limit=1)
    assert run.status == "failed" and run.error is not None
    assert f"column 'mean_radius' holds {shown}" in run.error
    assert "attempts" not in run.error  # permanent: failed once, not retried


def test_too_many_bad_rows_fail_the_run_with_the_first_one(scoring: LocalRuntime) -> None:
    bad = {row: ("mean_radius", "x") for row in range(1, 40)}
    _drop(scoring, "worse.csv", _with_bad_rows(bad), ScoreOptions(max_bad_share=0.05))
    Worker(scoring).run_until_idle()
    (run,) = scoring.runlog.list(DEMO_DATASET, limit=1)
    assert run.status == "failed"
    assert run.error is not None and "more than 5%" in run.error and "row 1" in run.error


class _FailingStore:
    """Fails the n-th write of a prediction part: a worker crash mid-file."""

    def __init__(self, runtime: LocalRuntime, fail_at: int) -> None:
        self.inner = runtime.store
        self.writes = 0
        self.fail_at = fail_at

    def put(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        if "/parts/" in key and key.endswith(".parquet"):
            self.writes += 1
            if self.writes == self.fail_at:
                raise OSError("disk went away")
        return self.inner.put(bucket, key, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_crash_mid_file_resumes_without_duplicating_rows(
    scoring: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from automlops.ml import batch

    monkeypatch.setattr(batch, "CHUNK_ROWS", 100)
    monkeypatch.setattr(
        "automlops.stages.score.open_table",
        lambda path, fmt: batch.open_table(path, fmt, chunk_rows=100),
    )
    monkeypatch.setattr(scoring.settings, "retry_base_s", 0.0)  # retried at once
    failing = _FailingStore(scoring, fail_at=3)
    monkeypatch.setattr(scoring, "store", failing)
    _drop(scoring, "big.csv", breast_cancer_csv())
    worker = Worker(scoring)
    assert worker.step()  # the first delivery dies at the third chunk
    run = scoring.runlog.list(DEMO_DATASET, limit=1)[0]
    assert run.stages[0].status == "retrying"
    bucket = scoring.settings.buckets.model_output
    parts = [k for k in failing.inner.list(bucket, "predictions/") if "/parts/" in k]
    assert len(parts) == 2

    written: list[str] = []
    real_put = failing.inner.put

    def recording_put(bucket: str, key: str, data: bytes) -> ObjectInfo:
        written.append(key)
        return real_put(bucket, key, data)

    monkeypatch.setattr(failing, "put", recording_put)
    Worker(scoring).run_until_idle()
    assert not any(k in written for k in parts)  # the chunks done before were not redone
    lineage = _lineage(scoring)
    out = pl.read_csv(io.BytesIO(failing.inner.get(bucket, lineage["output_key"])))
    source = pl.read_csv(io.BytesIO(breast_cancer_csv()))
    assert out.height == ROWS
    assert out.select(source.columns).equals(source)  # every row once, in order
    expected = _champion(scoring).predict(source).proba
    assert expected is not None  # resumed chunks carry their stored predictions
    assert out["probability_malignant"].to_numpy() == pytest.approx(expected[:, 1])
