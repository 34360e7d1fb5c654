"""Batch scoring above the score function's size on moto (issue 17 item 3): the score function
launches a SageMaker Batch Transform job of the version's model on the file (once, whatever
the redeliveries), with only the calls its role allows, and the job's end, announced by
EventBridge, is recorded on the scoring run."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import boto3
import polars as pl
import pytest
from aws_cfn import Provisioned
from aws_invoker import CallRecorder, FakeContext, LambdaInvoker, LocalSageMakerRuntime
from aws_stack import allowed
from fastapi.testclient import TestClient
from polars.testing import assert_frame_equal
from test_aws_alerts import emitted
from test_aws_scoring import _copy_champion

from automlops import keys
from automlops.aws import container, handlers, ops, transform
from automlops.aws.config import AwsConfig
from automlops.aws.runtime import AwsRuntime
from automlops.aws.sagemaker import resource_name
from automlops.aws.transform import (
    ENV_CSV_HEADER,
    ENV_SCORE_DATASET,
    ENV_SCORE_OPTIONS,
    ENV_SCORE_RUN,
    ScoreDispatcher,
    TransformJobLauncher,
    TransformJobRecord,
    choose_scoring,
    number_bad_rows,
    record_key,
    tally_batches,
)
from automlops.demo import breast_cancer_csv
from automlops.errors import PermanentError
from automlops.events import object_created
from automlops.local.runtime import open_runtime
from automlops.local.store import DirectoryStore
from automlops.ml.batch import (
    BatchScorer,
    RowError,
    ScoreOptions,
    TableFormat,
    errors_bytes,
    open_table,
    table_bytes,
)
from automlops.routing import Stage
from automlops.serving.sagemaker import (
    ENV_SCORE_BUCKET,
    create_sagemaker_app,
    load_model_dir,
    transform_batch_log,
)
from automlops.serving.transform_batches import (
    TEXT_CHARS,
    BadLine,
    MiniBatchLog,
    MiniBatchRecord,
    line_digest,
)
from support import DEMO_DATASET

Deployed = tuple[AwsRuntime, LambdaInvoker, LocalSageMakerRuntime, CallRecorder]
SMALL = 10_000  # bytes the score function takes in this test: the demo file is ~120 kB


def _state_change(job: dict[str, Any], status: str, reason: str | None = None) -> dict[str, Any]:
    """EventBridge's event for a transform job (its detail is DescribeTransformJob's answer)."""
    detail = {k: v for k, v in job.items() if k != "ResponseMetadata"}
    detail = {**detail, "TransformJobStatus": status}
    if reason:
        detail["FailureReason"] = reason
    return {
        "version": "0",
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Transform Job State Change",
        "time": "2026-11-30T12:00:00Z",
        "detail": detail,
    }


def test_a_file_above_the_function_size_is_scored_by_a_batch_transform_job(
    deployed: Deployed,
    trained_home: Path,
    session: boto3.session.Session,
    moto: str,
    provisioned: Provisioned,
) -> None:
    rt, invoker, _, recorder = deployed
    stack = provisioned.stack  # names and ARNs as CloudFormation created them
    _copy_champion(trained_home, rt)
    for _, url, _, _ in invoker.sources:
        invoker.sqs.purge_queue(QueueUrl=url)
    config = rt.config.model_copy(update={"score_function_max_bytes": SMALL})
    sm = rt.host.sagemaker
    rt.runners[Stage.score] = ScoreDispatcher(
        config, TransformJobLauncher(config, sm, rt.store.client), rt.host
    )
    buckets = rt.config.settings().buckets
    data = breast_cancer_csv()
    s3 = session.client("s3", endpoint_url=moto)
    s3.put_object(Bucket=buckets.data, Key=keys.score_key(DEMO_DATASET, "big.csv"), Body=data)
    invoker.run_until_idle()

    # Not scored in the function: a transform job of version 1's model on the file instead.
    assert rt.store.list(buckets.model_output, "predictions/") == []
    (summary,) = sm.list_transform_jobs()["TransformJobSummaries"]
    job = sm.describe_transform_job(TransformJobName=summary["TransformJobName"])
    run_id = job["Environment"][ENV_SCORE_RUN]
    assert job["Environment"][ENV_SCORE_DATASET] == DEMO_DATASET
    # Where the container records its mini-batches (their rows left out).
    assert job["Environment"][ENV_SCORE_BUCKET] == buckets.model_output
    assert job["Environment"][ENV_CSV_HEADER] == data.split(b"\n", 1)[0].decode()
    # The container answers as the local stage writes (with the run's options), uncaptured.
    assert job["Environment"][ENV_SCORE_OPTIONS] == "{}"
    assert job["Environment"]["AUTOMLOPS_CAPTURE"] == "0"
    assert job["TransformJobName"].startswith(f"{config.name_prefix}-{run_id}")
    model = resource_name(config.name_prefix, DEMO_DATASET, 1)
    assert job["ModelName"] == model
    assert sm.describe_model(ModelName=model)["PrimaryContainer"]["Image"] == (
        config.sagemaker_image
    )
    source = job["TransformInput"]
    assert source["DataSource"]["S3DataSource"]["S3Uri"] == (
        f"s3://{buckets.data}/score/{DEMO_DATASET}/big.csv"
    )
    assert (source["SplitType"], source["ContentType"]) == ("Line", "text/csv")
    assert job["BatchStrategy"] == "MultiRecord" and job["MaxPayloadInMB"] <= 6
    assert job["TransformOutput"]["S3OutputPath"] == (
        f"s3://{buckets.model_output}/predictions/{DEMO_DATASET}/{run_id}/transform"
    )
    assert job["TransformOutput"]["AssembleWith"] == "Line"
    # Every call the score function made was one its role allows.
    statements = stack.statements(stack.role_of("ScoreLambdaFunction"))
    calls = recorder.calls["ScoreLambdaFunction"]
    assert any(c.action == "sagemaker:CreateTransformJob" for c in calls)
    assert [c for c in calls if not allowed(statements, c)] == []

    # A redelivered event finds the job and launches nothing new.
    key = keys.score_key(DEMO_DATASET, "big.csv")
    info = rt.store.head(buckets.data, key)
    assert info is not None
    record = object_created(
        buckets.data, key, size=info.size, etag=info.etag, configuration_id="score"
    ).records[0]
    again = rt.runners[Stage.score](record, rt.ports())
    assert again.duplicate and len(sm.list_transform_jobs()["TransformJobSummaries"]) == 1

    # EventBridge announces the job's end: recorded on the run, failure with SageMaker's reason,
    # with only the calls the state function's role allows.
    key = record_key(DEMO_DATASET, run_id)
    context = FakeContext(function_name="automlops-dev-transformJobState")

    def announce(event: dict[str, Any]) -> dict[str, Any]:
        recorder.function = "TransformJobStateLambdaFunction"
        try:
            return handlers.transform_job_state(event, context)
        finally:
            recorder.function = "test"

    assert announce(_state_change(job, "Failed", "ClientError: 400"))["recorded"] == key
    ended = TransformJobRecord.model_validate_json(rt.store.get(buckets.model_output, key))
    assert (ended.status, ended.reason, ended.run_id) == ("Failed", "ClientError: 400", run_id)
    announce(_state_change(job, "Completed"))
    running = announce(_state_change(job, "InProgress"))
    with pytest.raises(PermanentError, match="not a SageMaker transform job state change"):
        announce({"source": "aws.s3"})
    assert running == {"recorded": None}
    ended = TransformJobRecord.model_validate_json(rt.store.get(buckets.model_output, key))
    assert ended.status == "Completed" and ended.reason is None
    assert ended.output == job["TransformOutput"]["S3OutputPath"]
    assert ended.predictions == job["TransformOutput"]["S3OutputPath"] + "/big.csv.out"
    # `automlops aws runs` lists the scoring run beside training runs.
    (listed,) = ops.runs_document(rt.store, rt.config, DEMO_DATASET)
    assert (listed["kind"], listed["run_id"], listed["status"]) == ("scoring", run_id, "Completed")
    assert listed["predictions"] == ended.predictions
    assert ops.runs_document(rt.store, rt.config, "another") == []
    statements = stack.statements(stack.role_of("TransformJobStateLambdaFunction"))
    calls = recorder.calls["TransformJobStateLambdaFunction"]
    assert calls and [c for c in calls if not allowed(statements, c)] == []
    # Once completed, a redelivered event is answered from the record.
    done = rt.runners[Stage.score](record, rt.ports())
    assert done.duplicate and "already scored" in (done.note or "")


def test_the_size_threshold_choice() -> None:
    config = AwsConfig(
        bucket_data="d",
        bucket_automl_data="a",
        bucket_model_output="m",
        bucket_model_monitoring="o",
        queue_evaluation="q",
        score_function_max_bytes=1000,
    )
    assert choose_scoring(1000, TableFormat.csv, config).where == "function"
    assert choose_scoring(1001, TableFormat.csv, config).where == "transform"
    assert choose_scoring(10, TableFormat.parquet, config).where == "function"
    with pytest.raises(PermanentError, match="only CSV files"):
        choose_scoring(1001, TableFormat.parquet, config)
    # The function holds the file in memory: at most a third of it, whatever is configured.
    small = config.model_copy(update={"score_function_max_bytes": 10**12, "function_memory_mb": 3})
    assert small.score_function_bytes() == 1024 * 1024
    assert choose_scoring(1024 * 1024 + 1, TableFormat.csv, small).where == "transform"


# -- the container's answers in a transform job ---------------------------------------------


def _transform(client: TestClient, data: bytes, lines_per_batch: int) -> bytes:
    """What SageMaker does with a CSV (SplitType Line, MultiRecord, AssembleWith Line): the
    file's lines in mini-batches (the header in the first only), each answer a record."""
    lines = data.splitlines(keepends=True)
    answers = []
    for start in range(0, len(lines), lines_per_batch):
        batch = b"".join(lines[start : start + lines_per_batch])
        answer = client.post("/invocations", content=batch, headers={"content-type": "text/csv"})
        assert answer.status_code == 200, answer.text
        answers.append(answer.content + b"\n")
    return b"".join(answers)


def _local_stage_rows(model_dir: Path, data: bytes, options: ScoreOptions, tmp: Path) -> bytes:
    """The rows the local score stage writes for the file (`ml.batch`, one pass)."""
    source = tmp / "local.csv"
    source.write_bytes(data)
    reader = open_table(source, TableFormat.csv)
    scorer = BatchScorer(load_model_dir(model_dir), options, reader.names)
    parts = []
    for chunk in reader.chunks:
        written = table_bytes(
            scorer.output(chunk, scorer.score(chunk, []).predictions), reader.format
        )
        parts.append(written if not parts else written.partition(b"\n")[2])
    return b"".join(parts)


@pytest.mark.parametrize(
    "options", [ScoreOptions(), ScoreOptions(id_column="mean_radius", explain=2)], ids=str
)
def test_the_transform_output_is_the_local_stage_s_file(
    trained_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: ScoreOptions
) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    local = open_runtime(trained_home)
    try:
        entry = local.registry.read(DEMO_DATASET).get(1)
        artifact = local.store.get(entry.artifact_bucket, entry.artifact_key)
    finally:
        local.close()
    (model_dir / "model.tar.gz").write_bytes(artifact)
    data = breast_cancer_csv()
    header = data.split(b"\n", 1)[0].decode()
    # The environment the transform job gives the container (`TransformJobLauncher.request`).
    monkeypatch.setenv(ENV_CSV_HEADER, header)
    monkeypatch.setenv(ENV_SCORE_OPTIONS, options.model_dump_json(exclude_defaults=True))
    client = TestClient(create_sagemaker_app(model_dir))

    assembled = _transform(client, data, lines_per_batch=97)
    expected = _local_stage_rows(model_dir, data, options, tmp_path)
    out = pl.read_csv(io.BytesIO(assembled))
    # The same rows and columns; probabilities equal but for the last bits (summed in
    # mini-batches rather than in one pass).
    assert_frame_equal(out, pl.read_csv(io.BytesIO(expected)), rel_tol=1e-12, abs_tol=1e-12)
    assert out.height == data.count(b"\n") - 1
    if options.id_column is None:
        assert out.columns[: len(header.split(","))] == header.split(",")
    else:
        assert out.columns[:2] == [options.id_column, "prediction"]
    assert {"prediction", "probability_benign", "probability_malignant"} <= set(out.columns)


def test_a_bad_row_in_a_mini_batch_is_left_out_not_the_batch(
    trained_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    local = open_runtime(trained_home)
    try:
        entry = local.registry.read(DEMO_DATASET).get(1)
        (model_dir / "model.tar.gz").write_bytes(
            local.store.get(entry.artifact_bucket, entry.artifact_key)
        )
    finally:
        local.close()
    lines = breast_cancer_csv().splitlines(keepends=True)
    header = lines[0].rstrip(b"\r\n").decode()
    monkeypatch.setenv(ENV_CSV_HEADER, header)
    monkeypatch.setenv(ENV_SCORE_OPTIONS, "{}")
    client = TestClient(create_sagemaker_app(model_dir))
    fields = lines[5].rstrip(b"\n").split(b",")
    fields[1] = b"not a number"
    batch = lines[3] + lines[4] + b",".join(fields) + b"\n" + lines[6]  # no header: not first
    answer = client.post("/invocations", content=batch, headers={"content-type": "text/csv"})
    assert answer.status_code == 200, answer.text
    rows = answer.content.split(b"\n")
    assert len(rows) == 3 and not answer.content.endswith(b"\n")
    assert [r.split(b",")[0].strip(b'"') for r in rows] == [
        line.split(b",")[0] for line in (lines[3], lines[4], lines[6])
    ]


# -- unreadable rows: each mini-batch's record, summed at the job's end -----------------------


def _model_dir(trained_home: Path, tmp_path: Path) -> Path:
    """Version 1 of the demo dataset as SageMaker unpacks a model for the container."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    local = open_runtime(trained_home)
    try:
        entry = local.registry.read(DEMO_DATASET).get(1)
        artifact = local.store.get(entry.artifact_bucket, entry.artifact_key)
    finally:
        local.close()
    (model_dir / "model.tar.gz").write_bytes(artifact)
    return model_dir


def _spoiled(line: bytes) -> bytes:
    """A data line whose second (numeric) value is not a number."""
    fields = line.rstrip(b"\r\n").split(b",")
    fields[1] = b"not a number"
    return b",".join(fields) + b"\n"


SHORT = b"1,2,3\n"  # a line with too few fields


def test_a_mini_batch_records_the_rows_it_left_out(
    trained_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = _model_dir(trained_home, tmp_path)
    lines = breast_cancer_csv().splitlines(keepends=True)
    header = lines[0].rstrip(b"\r\n")
    monkeypatch.setenv(ENV_CSV_HEADER, header.decode())
    monkeypatch.setenv(ENV_SCORE_OPTIONS, "{}")
    store = DirectoryStore(tmp_path / "buckets", ["out"])
    # The log the container builds from the environment a transform job gives it.
    assert transform_batch_log(store, {}) is None
    log = transform_batch_log(
        store, {ENV_SCORE_BUCKET: "out", ENV_SCORE_DATASET: "d", ENV_SCORE_RUN: "r"}
    )
    assert log is not None
    # The image's entry point builds it so in a transform job, and only there.
    assert container.transform_batches(store) is None
    monkeypatch.setenv(ENV_SCORE_BUCKET, "out")
    monkeypatch.setenv(ENV_SCORE_DATASET, "d")
    monkeypatch.setenv(ENV_SCORE_RUN, "r")
    built = container.transform_batches(store)
    assert built is not None and (built.bucket, built.run_id) == ("out", "r")
    client = TestClient(create_sagemaker_app(model_dir, batches=log))
    first = b"".join(lines[:3])  # the file's first mini-batch holds its header line
    later = lines[3] + _spoiled(lines[4]) + SHORT + lines[6]
    for body in (first, later, later):  # the last: SageMaker retrying a mini-batch
        answer = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
        assert answer.status_code == 200, answer.text

    prefix = keys.transform_batches_prefix("d", "r")
    found = store.list("out", prefix)
    assert len(found) == 3  # no answer overwrote another
    by_content: dict[str, list[MiniBatchRecord]] = {}
    for key in found:
        record = MiniBatchRecord.model_validate_json(store.get("out", key))
        by_content.setdefault(keys.parse_transform_batch_key(key), []).append(record)
    (head,) = by_content[hashlib.sha256(first).hexdigest()]
    assert (head.rows, head.scored, head.bad, head.named) == (2, 2, 0, [])
    retried = by_content[hashlib.sha256(later).hexdigest()]
    assert len(retried) == 2 and retried[0] == retried[1]
    record = retried[0]
    assert (record.rows, record.scored, record.bad) == (4, 2, 2)
    spoiled = _spoiled(lines[4]).rstrip(b"\n")
    named = {line.sha256: line for line in record.named}
    assert set(named) == {line_digest(spoiled), line_digest(SHORT.rstrip(b"\n"))}
    value = named[line_digest(spoiled)]
    assert value.column == header.split(b",")[1].decode() and value.length == len(spoiled)
    assert value.text == spoiled.decode()[:TEXT_CHARS]
    assert "fields" in named[line_digest(SHORT.rstrip(b"\n"))].message


def _local_errors(model_dir: Path, data: bytes, tmp: Path) -> list[RowError]:
    """The rows the local score stage's errors file names for the file (`ml.batch`)."""
    source = tmp / "whole.csv"
    source.write_bytes(data)
    reader = open_table(source, TableFormat.csv)
    scorer = BatchScorer(load_model_dir(model_dir), ScoreOptions(), reader.names)
    errors = [e for chunk in reader.chunks for e in scorer.score(chunk, reader.skipped).errors]
    return sorted(errors + reader.skipped, key=lambda e: e.row)


def test_the_job_s_end_numbers_the_unreadable_rows_and_enforces_the_share(
    deployed: Deployed,
    trained_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    provisioned: Provisioned,
) -> None:
    rt, _, _, recorder = deployed
    buckets = rt.config.settings().buckets
    model_dir = _model_dir(trained_home, tmp_path)
    lines = breast_cancer_csv().splitlines(keepends=True)[:31]  # the header and 30 rows
    lines[12] = lines[25] = _spoiled(lines[12])  # one bad line, twice: both are bad rows
    lines[5] = lines[20] = SHORT
    data = b"".join(lines)
    source = keys.score_key(DEMO_DATASET, "f.csv")
    rt.store.put(buckets.data, source, data)
    run_id = "r1"

    # The container answers the file in mini-batches of 8 lines: a bad row in each, the first
    # with the header line, the others without; one is answered twice (a retry).
    monkeypatch.setenv(ENV_CSV_HEADER, lines[0].rstrip(b"\n").decode())
    monkeypatch.setenv(ENV_SCORE_OPTIONS, "{}")
    environment = {
        ENV_SCORE_BUCKET: buckets.model_output,
        ENV_SCORE_DATASET: DEMO_DATASET,
        ENV_SCORE_RUN: run_id,
    }
    log = transform_batch_log(rt.store, environment)
    client = TestClient(create_sagemaker_app(model_dir, batches=log))
    assembled = _transform(client, data, lines_per_batch=8)
    assert assembled.count(b"\n") == 1 + 30 - 4  # the header, the rows that could be read
    retry = client.post("/invocations", content=b"".join(lines[8:16]))
    assert retry.status_code == 200
    tally = tally_batches(rt.store, buckets.model_output, keys.RunRef(DEMO_DATASET, run_id))
    assert (tally.records, tally.rows, tally.bad, len(tally.named)) == (4, 30, 4, 2)

    def ended(options: ScoreOptions) -> dict[str, Any]:
        """EventBridge's event: the job completed, with the run's options in its environment."""
        given = options.model_dump_json(exclude_defaults=True)
        output = f"s3://{buckets.model_output}/predictions/{DEMO_DATASET}/{run_id}/transform"
        job = {
            "TransformJobName": f"{rt.config.name_prefix}-{run_id}-a1",
            "Environment": {**environment, ENV_SCORE_OPTIONS: given},
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3Uri": f"s3://{buckets.data}/{source}"}}
            },
            "TransformOutput": {"S3OutputPath": output},
        }
        return _state_change(job, "Completed")

    context = FakeContext(function_name="automlops-dev-transformJobState")
    # The file is streamed in reads of 64 bytes: lines straddle the reads.
    monkeypatch.setattr(transform, "_READ_BYTES", 64)

    def announce(event: dict[str, Any]) -> TransformJobRecord:
        recorder.function = "TransformJobStateLambdaFunction"
        try:
            key = handlers.transform_job_state(event, context)["recorded"]
        finally:
            recorder.function = "test"
        return TransformJobRecord.model_validate_json(rt.store.get(buckets.model_output, key))

    # Within the share (4 of 30 <= 20%): completed, and errors.csv is the local stage's.
    capsys.readouterr()
    done = announce(ended(ScoreOptions(max_bad_share=0.2)))
    assert (done.status, done.rows, done.error_rows) == ("Completed", 30, 4)
    expected = _local_errors(model_dir, data, tmp_path)
    assert [e.row for e in expected] == [5, 12, 20, 25]  # 1-based data rows; lines alike
    assert done.errors == keys.prediction_errors_key(DEMO_DATASET, run_id)
    written = rt.store.get(buckets.model_output, done.errors)
    assert written == errors_bytes(expected)
    assert emitted(capsys.readouterr().out) == []

    # Beyond it (the default 10%): the run failed as the local stage fails it, and alerts.
    failed = announce(ended(ScoreOptions()))
    first = expected[0]
    assert failed.status == "Failed" and failed.predictions is None
    assert failed.reason == (
        f"f.csv: 4 of 30 rows cannot be read (more than 10%); the first, row 5: {first.message}"
    )
    (alert,) = emitted(capsys.readouterr().out)
    assert alert["metric"][1] == "RunFailed" and alert["run_id"] == run_id
    assert "rows cannot be read" in alert["message"]
    (listed,) = ops.runs_document(rt.store, rt.config, DEMO_DATASET)
    assert (listed["kind"], listed["status"], listed["error_rows"]) == ("scoring", "Failed", 4)
    # Every call the state function made was one its role allows.
    statements = provisioned.stack.statements(
        provisioned.stack.role_of("TransformJobStateLambdaFunction")
    )
    calls = recorder.calls["TransformJobStateLambdaFunction"]
    assert any(c.resource.endswith(source) for c in calls)  # the file streamed
    assert calls and [c for c in calls if not allowed(statements, c)] == []


def test_rows_over_a_record_s_cap_are_counted_not_named(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "buckets", ["out"])
    log = MiniBatchLog(store, "out", "d", "r")
    lines = [b"a,b", b"1,x", b"2,y", b"1,x", b"3,z"]
    named = BadLine(
        sha256=line_digest(b"1,x"), length=3, text="1,x", column="b", message="not a number"
    )
    # A mini-batch that left out 3 rows but named one (its cap), and an answer of another.
    log.write(b"batch one", MiniBatchRecord(rows=3, scored=0, bad=3, named=[named]))
    log.write(b"batch two", MiniBatchRecord(rows=2, scored=2, bad=0))
    tally = tally_batches(store, "out", keys.RunRef("d", "r"))
    assert (tally.records, tally.rows, tally.bad, list(tally.named)) == (2, 5, 3, [named.sha256])
    # The named line is found wherever it is; the file's header line and empty lines are no rows.
    rows, errors = number_bad_rows([lines[0], b"", *lines[1:]], tally.named)
    assert rows == 4 and [(e.row, e.column) for e in errors] == [(1, "b"), (3, "b")]


def test_listing_transform_job_ends_reads_the_run_records_only(tmp_path: Path) -> None:
    """Weeks of scoring leave thousands of parts and outputs under predictions/; `aws runs`
    lists the run records (runs/), never those."""
    store = DirectoryStore(tmp_path, ["out"])
    listed: list[str] = []
    real_list = store.list

    def spy(bucket: str, prefix: str = "") -> list[str]:
        listed.append(prefix)
        return real_list(bucket, prefix)

    store.list = spy  # type: ignore[method-assign]
    for run in ("r1", "r2"):
        for part in range(3):
            store.put("out", keys.prediction_part_key("d1", run, part, "parquet"), b"p")
    ends = [
        TransformJobRecord(dataset=d, run_id=r, job=f"job-{r}", status="Completed", at=at)
        for d, r, at in (("d1", "r1", "2026-11-01"), ("d1", "r2", "2026-11-02"), ("d2", "r3", "x"))
    ]
    for end in ends:
        assert transform.write_record(store, "out", end).startswith(f"runs/{end.dataset}/")
    assert [r.run_id for r in transform.list_records(store, "out", "d1")] == ["r2", "r1"]
    assert {r.run_id for r in transform.list_records(store, "out")} == {"r1", "r2", "r3"}
    assert transform.read_record(store, "out", keys.RunRef("d2", "r3")) == ends[2]
    assert listed == ["runs/d1/", "runs/"]
