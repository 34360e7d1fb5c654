"""The use-case layer and its three front ends: `automlops upload/models`, the dashboard and
`automlops aws ...` give the same answer for the same case, and refuse before writing."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws
from typer.testing import CliRunner

from automlops import keys, names
from automlops.cli import app
from automlops.config import Manifest
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.local.store import DirectoryStore
from automlops.registry import ModelVersion, Registry
from automlops.ui import views
from automlops.ui.up import build_app
from automlops.usecases.models import list_models
from automlops.usecases.upload import UploadOptions, UploadRefused, upload
from support import DEMO_DATASET

cli = CliRunner()
STAGE = "dev"
REGION = "eu-west-1"
AWS_BUCKETS = {
    "buckets/data": "st-data",
    "buckets/automl-data": "st-automl-data",
    "buckets/model-output": "st-model-output",
    "buckets/model-monitoring": "st-model-monitoring",
}
CSV = b"age,city,y\n1,a,no\n2,b,yes\n3,c,no\n"


# -- the three front ends, each answering (refusal message or None, what was written) ----------


def _error_of(output: str) -> str | None:
    found = re.search(r"^error: (.*)$", output, re.MULTILINE)
    return found.group(1) if found else None


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LocalRuntime]:
    rt = open_runtime(tmp_path / "home")
    yield rt
    rt.close()


@pytest.fixture
def aws_stage(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A deployed stage as `automlops aws` finds it: SSM parameters naming its buckets."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AUTOMLOPS_SSM_PREFIX", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        ssm = boto3.client("ssm", region_name=REGION)
        params = {**AWS_BUCKETS, "queues/evaluation": "st-evaluation", "name-prefix": "st"}
        for name, value in params.items():
            ssm.put_parameter(Name=f"/automlops/{STAGE}/{name}", Value=value, Type="String")
        for bucket in AWS_BUCKETS.values():
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
        yield s3


def _s3_keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def cli_upload(home: Path, file: Path, *options: str) -> str | None:
    result = cli.invoke(app, ["upload", str(file), *options, "--home", str(home)])
    return _error_of(result.output) if result.exit_code else None


def aws_upload(file: Path, *options: str) -> str | None:
    result = cli.invoke(app, ["aws", "upload", str(file), *options, "--stage", STAGE])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return _error_of(result.output) if result.exit_code else None


def dashboard_upload(runtime: LocalRuntime, file: Path, **fields: str) -> str | None:
    client = TestClient(build_app(runtime), base_url="http://testserver", follow_redirects=False)
    page = client.get("/ui/upload")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    response = client.post(
        "/ui/upload",
        data={"csrf_token": token.group(1), **fields},
        files={"file": (file.name, file.read_bytes(), "text/csv")},
    )
    if response.status_code in (302, 303):
        return None
    assert response.status_code == 400, response.text
    found = re.search(r'<p class="error"[^>]*>(.*?)</p>', response.text, re.DOTALL)
    return html.unescape(found.group(1)).strip() if found else html.unescape(response.text)


def _all_three(
    tmp_path: Path, runtime: LocalRuntime, s3: Any, file: Path, **fields: str
) -> list[str | None]:
    flags = [part for k, v in fields.items() for part in (f"--{k.replace('_', '-')}", v)]
    return [
        cli_upload(tmp_path / "cli-home", file, *flags),
        dashboard_upload(runtime, file, **fields),
        aws_upload(file, *flags),
    ]


BAD_NAMES = ["x" * 200, "données", "../x", ".hidden", "a/b"]


@pytest.mark.parametrize("dataset", BAD_NAMES)
def test_a_name_the_stores_cannot_hold_is_refused_identically_before_any_write(
    tmp_path: Path, runtime: LocalRuntime, aws_stage: Any, dataset: str
) -> None:
    file = tmp_path / "people.csv"
    file.write_bytes(CSV)
    answers = _all_three(tmp_path, runtime, aws_stage, file, dataset=dataset)
    cli_msg = answers[0]
    assert cli_msg is not None and "dataset name" in cli_msg
    assert answers[2] == cli_msg  # `automlops aws upload`: the very same text
    assert answers[1] is not None and cli_msg in answers[1]  # the dashboard shows it too
    # Nothing written anywhere: no manifest, no file.
    assert open_runtime(tmp_path / "cli-home").store.list("data") == []
    assert runtime.store.list(runtime.settings.buckets.data) == []
    for bucket in AWS_BUCKETS.values():
        assert _s3_keys(aws_stage, bucket) == []


def test_a_reserved_name_is_refused_identically_before_any_write(
    tmp_path: Path, runtime: LocalRuntime, aws_stage: Any
) -> None:
    """`labels` is a top-level folder of the monitoring bucket: no dataset may take it (in any
    case), whichever front end is asked."""
    file = tmp_path / "people.csv"
    file.write_bytes(CSV)
    cli_msg, ui_msg, aws_msg = _all_three(tmp_path, runtime, aws_stage, file, dataset="Labels")
    assert cli_msg is not None and "dataset name 'Labels' is reserved" in cli_msg
    assert aws_msg == cli_msg
    assert ui_msg is not None and cli_msg in ui_msg
    assert runtime.store.list(runtime.settings.buckets.data) == []
    assert _s3_keys(aws_stage, AWS_BUCKETS["buckets/data"]) == []


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"drop": "cty"}, "'cty' not in the file's header"),
        ({"target": "yy"}, "target column 'yy' is not in the file's header"),
        ({"target": "y", "drop": "age,y"}, "cannot also be dropped"),
        ({"target": "Age"}, "'Age' is not in the file's header; did you mean 'age'?"),
        ({"drop": "cty,ag"}, "not in the file's header; did you mean 'city' or 'age'?"),
        ({"positive": "maybe"}, "positive label 'maybe' is not among the labels of 'y' ('no', "),
        ({"keep": "cty"}, "keep column(s) 'cty' not in the file's header; did you mean 'city'?"),
        ({"keep": "age", "drop": "age"}, "column(s) 'age' cannot be both dropped and kept"),
    ],
)
def test_a_misspelled_column_is_refused_identically_before_any_write(
    tmp_path: Path, runtime: LocalRuntime, aws_stage: Any, fields: dict[str, str], words: str
) -> None:
    file = tmp_path / "people.csv"
    file.write_bytes(CSV)
    cli_msg, ui_msg, aws_msg = _all_three(tmp_path, runtime, aws_stage, file, **fields)
    assert cli_msg is not None and words in cli_msg
    assert aws_msg == cli_msg
    assert ui_msg is not None and cli_msg in ui_msg
    assert runtime.store.list(runtime.settings.buckets.data) == []
    assert _s3_keys(aws_stage, AWS_BUCKETS["buckets/data"]) == []


def test_the_same_upload_lands_under_the_same_key_with_the_same_manifest(
    tmp_path: Path, runtime: LocalRuntime, aws_stage: Any
) -> None:
    """A file name with unsafe characters is sanitised the same way by every front end, and
    options given on top of a stored manifest override it everywhere (aws included); the
    first upload's options (its kept column too) stay when the second does not repeat them."""
    file = tmp_path / "new data é.csv"
    file.write_bytes(CSV)
    first = {"dataset": "ppl", "positive": "yes", "keep": "age"}
    assert _all_three(tmp_path, runtime, aws_stage, file, **first) == [None, None, None]
    # Each front end stores the sanitised name in the upload's own folder.
    local = open_runtime(tmp_path / "cli-home")
    for stored in (
        local.store.list("data"),
        runtime.store.list("data"),
        sorted(_s3_keys(aws_stage, AWS_BUCKETS["buckets/data"])),
    ):
        assert [_upload_name(k) for k in stored] == [("ppl", "new_data_.csv"), "manifest"]
    # The second upload only changes the time budget: the stored positive label stays.
    assert _all_three(tmp_path, runtime, aws_stage, file, dataset="ppl", time_budget="7") == [
        None,
        None,
        None,
    ]
    manifests = [
        local.store.get("data", "data/ppl/manifest.json"),
        runtime.store.get("data", "data/ppl/manifest.json"),
        aws_stage.get_object(Bucket=AWS_BUCKETS["buckets/data"], Key="data/ppl/manifest.json")[
            "Body"
        ].read(),
    ]
    parsed = [Manifest.model_validate_json(m) for m in manifests]
    assert parsed[0] == parsed[1] == parsed[2]
    assert parsed[0].positive == "yes" and parsed[0].time_budget_s == 7 and parsed[0].target == "y"
    assert parsed[0].keep == ["age"]  # `--keep` (the dashboard's `keep` field) stored by all
    local.close()


def _upload_name(key: str) -> tuple[str, str] | str:
    """(dataset, file name) of an upload in its own folder; "manifest" for a manifest."""
    if key.endswith("/manifest.json"):
        return "manifest"
    source = keys.parse_source_key(key)
    assert source.upload_id is not None, key
    return source.dataset, source.filename


def _version(n: int, task: str, auc: float) -> ModelVersion:
    return ModelVersion(
        version=0,
        run_id=f"run{n}",
        created_at="2026-01-01T00:00:00Z",
        task=task,
        learner="linear",
        artifact_bucket="model-output",
        artifact_key=f"ds/run{n}/output/model.tar.gz",
        source_key=f"data/ds/f{n}.csv",
        source_sha256="0" * 64,
        test_key=f"automl/ds/run{n}/test.parquet",
        metrics={"roc_auc": auc, "f1": 0.5},
    )


def test_models_listing_gives_the_same_versions_everywhere(
    tmp_path: Path, runtime: LocalRuntime, aws_stage: Any
) -> None:
    aws_registry = Registry(_s3_store(), AWS_BUCKETS["buckets/model-output"])
    for registry in (runtime.registry, aws_registry):
        for n, auc in ((1, 0.8), (2, 0.9), (3, 0.7)):
            registry.register("ds", _version(n, "binary", auc))
        registry.promote("ds", 2, "test")
    home = runtime.home

    result = cli.invoke(app, ["models", "--json", "--home", str(home)])
    assert result.exit_code == 0, result.output
    from_cli = sorted((i["version"], i["status"]) for i in json.loads(result.output))
    from_ui = sorted((v["version"], v["status"]) for v in views.models(runtime, "ds")["versions"])
    result = cli.invoke(app, ["aws", "models", "--stage", STAGE])
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.output)
    from_aws = sorted((v["version"], v["status"]) for v in doc["versions"])
    assert from_cli == from_ui == from_aws == [(1, "candidate"), (2, "champion"), (3, "candidate")]
    assert doc["champion"] == 2
    # The table headlines the primary metric of the task.
    table = cli.invoke(app, ["models", "--home", str(home)]).output
    assert "roc_auc=0.9000" in table and "f1=" not in table


def _s3_store() -> Any:
    from automlops.aws.s3_store import S3ObjectStore

    return S3ObjectStore(boto3.client("s3", region_name=REGION))


# -- the use case and the name rule themselves ---------------------------------------------------


def test_refused_names_never_reach_the_manifest() -> None:
    for bad in [*BAD_NAMES, "", "a" * (names.DATASET_MAX + 1)]:
        with pytest.raises(ValueError, match="dataset name"):
            Manifest(dataset=bad)
    Manifest(dataset="a" * names.DATASET_MAX)
    Manifest(dataset="_Bank-marketing.v2")


def test_the_longest_names_fit_the_local_store_with_its_temp_and_sidecar_files(
    tmp_path: Path,
) -> None:
    """A dataset of DATASET_MAX characters and the longest sanitised file name can be
    uploaded, tagged (sidecar + its temp file) and registered (put_if + lock sidecar)."""
    store = DirectoryStore(tmp_path, ["data", "model-output"])
    dataset = "d" * names.DATASET_MAX
    filename = names.object_filename("f" * 1000 + ".csv")
    assert len(filename) == names.FILE_MAX and filename.endswith(".csv")
    done = upload(store, "data", filename, b"a,y\n1,0\n", UploadOptions(dataset=dataset))
    store.put_tags("data", done.key, {"processed": "x" * 64})
    assert store.get_tags("data", done.key) == {"processed": "x" * 64}
    registry = Registry(store, "model-output")
    registry.register(dataset, _version(1, "binary", 0.5))
    assert list_models(registry)[0].dataset == dataset


def test_the_buckets_top_level_folders_are_no_dataset_names() -> None:
    for reserved in ("capture", "labels", "monitoring", "score", "feedback", "Registry"):
        assert not names.is_dataset_name(reserved)
        with pytest.raises(ValueError, match=f"dataset name '{reserved}' is reserved"):
            Manifest(dataset=reserved)
        # A file of that name still gets a default dataset, named after it.
        default = names.dataset_from_filename(f"{reserved}.csv")
        assert default == f"{reserved}-data" and names.is_dataset_name(default)
    assert names.is_dataset_name("labels2") and names.is_dataset_name("capture-2026")


def test_default_names_come_from_the_file_and_obey_the_rule() -> None:
    assert names.dataset_from_filename("C:\\x\\Bank Marketing (2).CSV") == "Bank-Marketing-2"
    assert names.dataset_from_filename("données.csv") == "donn-es"
    assert names.dataset_from_filename("....csv") == "dataset"
    assert names.is_dataset_name(names.dataset_from_filename("é" * 50 + "x" * 300))
    assert names.object_filename("../../etc/passwd") == "passwd.csv"
    assert names.object_filename(".csv") == "csv.csv"


def test_upload_streams_a_path_and_reads_only_the_head_for_the_target(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "s", ["data"])
    file = tmp_path / "long.csv"
    file.write_bytes(
        b"n,text,outcome\n" + b"".join(b"%d,%s,%d\n" % (i, b"c" * 40, i % 2) for i in range(5000))
    )
    done = upload(store, "data", file.name, file, UploadOptions())
    assert done.target_detected == "the last column" and done.manifest.target == "outcome"
    assert store.get("data", done.key) == file.read_bytes()
    named = upload(store, "data", "t.csv", b"label,x\n1,2\n", UploadOptions())
    assert named.target_detected == "a column named 'label'"


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (UploadOptions(time_budget_s=0), "time budget"),
        (UploadOptions(time_budget_s=float("inf")), "time budget"),
        (UploadOptions(time_budget_s=10**6), "time budget"),
        (UploadOptions(task="clustering"), "task must be"),
        (UploadOptions(learners=["pickle"]), "unknown learner"),
    ],
)
def test_bad_options_are_refused_before_any_write(
    tmp_path: Path, options: UploadOptions, words: str
) -> None:
    store = DirectoryStore(tmp_path, ["data"])
    with pytest.raises(UploadRefused, match=words):
        upload(store, "data", "f.csv", CSV, options)
    assert store.list("data") == []


def test_python_m_automlops_aws_is_the_same_sub_app_with_the_old_options(
    tmp_path: Path, aws_stage: Any, trained_home: Path
) -> None:
    """The CI workflows' and README's `python -m automlops.aws upload --file F --stage S ...`
    still works, through the same upload use case; promote and rollback work on the stage."""
    import subprocess
    import sys

    from automlops.aws.ops import aws_app

    file = tmp_path / "bank.csv"
    file.write_bytes(CSV)
    result = cli.invoke(
        aws_app,
        ["upload", "--stage", STAGE, "--file", str(file), "--drop", "age", "--drop", "city"],
    )
    assert result.exit_code == 0, result.output
    prefix = f"s3://{AWS_BUCKETS['buckets/data']}/"
    assert result.output.strip().startswith(prefix)
    assert _upload_name(result.output.strip().removeprefix(prefix)) == ("bank", "bank.csv")
    body = aws_stage.get_object(Bucket=AWS_BUCKETS["buckets/data"], Key="data/bank/manifest.json")
    assert Manifest.model_validate_json(body["Body"].read()).drop == ["age", "city"]

    # Promotion checks a version's model file as deploy does: give both a real one.
    local = open_runtime(trained_home)
    try:
        trained = local.registry.read(DEMO_DATASET).versions[0]
        model = local.store.get(trained.artifact_bucket, trained.artifact_key)
    finally:
        local.close()
    bucket = AWS_BUCKETS["buckets/model-output"]
    registry = Registry(_s3_store(), bucket)
    for n in (1, 2):
        version = _version(n, "binary", 0.5).model_copy(update={"artifact_bucket": bucket})
        aws_stage.put_object(Bucket=bucket, Key=version.artifact_key, Body=model)
        registry.register("bank", version)
    assert cli.invoke(aws_app, ["promote", "bank", "1", "--stage", STAGE]).exit_code == 0
    assert cli.invoke(aws_app, ["promote", "bank", "2", "--stage", STAGE]).exit_code == 0
    result = cli.invoke(aws_app, ["rollback", "bank", "--stage", STAGE])
    assert result.exit_code == 0 and "bank v1 is champion again" in result.output
    assert registry.read("bank").champion == 1
    result = cli.invoke(aws_app, ["teardown", "--stage", STAGE])
    assert result.exit_code == 2 and "pass --yes" in result.output

    done = subprocess.run(
        [sys.executable, "-m", "automlops.aws", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    for command in ("upload", "models", "promote", "rollback", "dlq", "teardown"):
        assert command in done.stdout


def test_every_dataset_name_of_the_rule_maps_to_a_distinct_sagemaker_name() -> None:
    """SageMaker names (63 characters, letters, digits and '-') are built from dataset names;
    names the rule allows that differ only past the cut, in case or in '.'/'_' stay apart."""
    from automlops.aws.sagemaker import resource_name

    longest = "x" * names.DATASET_MAX
    datasets = [
        longest,
        longest[:-1] + "y",
        "A" * names.DATASET_MAX,
        "a" * names.DATASET_MAX,
        "a.b",
        "a-b",
        "a_b",
        "_a",
        "0",
    ]
    built = [resource_name("automlops-staging", d, 12345) for d in datasets]
    for name in built:
        assert len(name) <= 63 and re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", name), name
    assert len(set(built)) == len(datasets)


def test_aws_dlq_lists_and_redrives_the_stage_queues(aws_stage: Any) -> None:
    """`automlops aws dlq` over SQS: the queues are found by the stage's names, each dead-letter
    queue through its redrive policy; a redriven message is back on its own queue, once."""
    sqs = boto3.client("sqs", region_name=REGION)
    urls = {}
    for name in ("st-preprocess", "st-train", "st-deploy", "st-evaluation"):
        dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
        policy = {"deadLetterTargetArn": arn["Attributes"]["QueueArn"], "maxReceiveCount": "4"}
        urls[name] = (
            sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": json.dumps(policy)})[
                "QueueUrl"
            ],
            dlq_url,
        )
    sqs.send_message(QueueUrl=urls["st-train"][1], MessageBody='{"poison": 1}')

    listed = cli.invoke(app, ["aws", "dlq", "list", "--stage", STAGE])
    assert listed.exit_code == 0, listed.output
    [item] = json.loads(listed.output)
    assert (item["source_queue"], item["body"]) == ("st-train", '{"poison": 1}')

    moved = cli.invoke(app, ["aws", "dlq", "redrive", item["id"], "--stage", STAGE])
    assert moved.exit_code == 0, moved.output
    assert "redrove 1 message(s)" in moved.output
    back = sqs.receive_message(QueueUrl=urls["st-train"][0], WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in back] == ['{"poison": 1}']
    assert json.loads(cli.invoke(app, ["aws", "dlq", "list", "--stage", STAGE]).output) == []

    again = cli.invoke(app, ["aws", "dlq", "redrive", item["id"], "--stage", STAGE])
    assert again.exit_code == 2
    assert f"no dead-lettered message {item['id']}" in again.output
