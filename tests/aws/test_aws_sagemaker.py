"""The SageMaker path: training job request shape on moto, the container's `train` on emulated
channels, the artifact SageMaker would upload triggering deploy, and the contract app."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import boto3
import httpx
import pytest
from aws_cfn import Provisioned
from aws_invoker import CallRecorder, LambdaInvoker, LocalSageMakerRuntime
from aws_stack import ACCOUNT, REGION, allowed
from moto.sagemaker.models import sagemaker_backends

from automlops import keys
from automlops.aws.container import ChannelStore, train_in_job
from automlops.aws.runtime import AwsRuntime
from automlops.aws.s3_store import S3ObjectStore
from automlops.aws.sagemaker import (
    MAX_ATTEMPTS,
    TrainingJobLauncher,
    live_endpoint_name,
    resource_name,
    training_job_name,
)
from automlops.config import Manifest, Task
from automlops.demo import breast_cancer_csv
from automlops.errors import PermanentError
from automlops.local.model_host import EmbeddedServer
from automlops.ml.artifact import ModelArtifact
from automlops.registry import RegistryDoc
from automlops.serving.sagemaker import create_sagemaker_app

Deployed = tuple[AwsRuntime, LambdaInvoker, LocalSageMakerRuntime, CallRecorder]
MANIFEST = Manifest(
    dataset="cancer", target="diagnosis", positive="malignant", task=Task.binary, time_budget_s=2
)


def _job_state(name: str, status: str, reason: str | None = None) -> None:
    """Set a training job's state in moto (which completes every job at once)."""
    job = sagemaker_backends[ACCOUNT][REGION].training_jobs[name]
    job.training_job_status = status
    job.failure_reason = reason


def _emulate_training_job(
    sm: object, s3: object, job: dict, opt_ml: Path, store: S3ObjectStore
) -> str:
    """What SageMaker does for a job: channels in, `train` (which writes the run's model file
    with the job's role), /opt/ml/model packed to the job's output path. Returns the model key."""
    for channel in job["InputDataConfig"]:
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        target = opt_ml / "input" / "data" / channel["ChannelName"] / key.rsplit("/", 1)[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())  # type: ignore[attr-defined]
    config = opt_ml / "input" / "config" / "hyperparameters.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps(job["HyperParameters"]))
    train_in_job(opt_ml, fallback=store)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted((opt_ml / "model").iterdir()):
            tar.add(path, arcname=path.name)
    out = job["OutputDataConfig"]["S3OutputPath"].removeprefix("s3://")
    bucket, prefix = out.split("/", 1)
    job_output = f"{prefix}/{job['TrainingJobName']}/output/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=job_output, Body=buffer.getvalue())  # type: ignore[attr-defined]
    params = job["HyperParameters"]
    return keys.model_key(params["dataset"], params["run_id"])


def test_large_data_trains_as_a_sagemaker_job_whose_output_deploys(
    deployed: Deployed,
    session: boto3.session.Session,
    moto: str,
    provisioned: Provisioned,
    tmp_path: Path,
) -> None:
    rt, invoker, _, recorder = deployed
    stack = provisioned.stack
    config = rt.config
    # The dataset asks for a training job (the size rule would keep this small file in-function).
    raw = json.loads(MANIFEST.model_dump_json())
    rt.store.put(
        config.bucket_data,
        "data/cancer/manifest.json",
        json.dumps({**raw, "compute": "sagemaker"}).encode(),
    )
    rt.store.put(config.bucket_data, "data/cancer/cancer.csv", breast_cancer_csv())
    invoker.run_until_idle()

    sm = session.client("sagemaker", endpoint_url=moto)
    (summary,) = sm.list_training_jobs()["TrainingJobSummaries"]
    job = sm.describe_training_job(TrainingJobName=summary["TrainingJobName"])
    run_id = job["HyperParameters"]["run_id"]
    # Named after the stack, the run and the attempt: unique in the account, forever.
    assert job["TrainingJobName"] == training_job_name("automlops-dev", run_id, 1)
    schema_key = f"automl/cancer/{run_id}/schema.json"
    assert rt.store.head(config.bucket_automl_data, schema_key) is not None
    assert job["AlgorithmSpecification"]["TrainingImage"] == config.sagemaker_image
    assert "@sha256:" in config.sagemaker_image
    assert job["RoleArn"] == config.sagemaker_role_arn
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]
    }
    run = f"s3://{config.bucket_automl_data}/automl/cancer/{run_id}"
    assert channels == {
        "train": f"{run}/train.parquet",
        "validation": f"{run}/validation.parquet",
        "schema": f"{run}/schema.json",
        "transform": f"{run}/transform.json",
    }
    # SageMaker's own copy of the model goes where no notification listens.
    assert job["OutputDataConfig"]["S3OutputPath"] == (
        f"s3://{config.bucket_automl_data}/training-jobs/cancer"
    )
    assert job["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert {"Key": "automlops:stack", "Value": "automlops-dev"} in sm.list_tags(
        ResourceArn=job["TrainingJobArn"]
    )["Tags"]
    assert rt.store.list(config.bucket_model_output) == []  # nothing trained in the function

    # A redelivered schema event finds the job (running) and launches nothing new.
    _job_state(job["TrainingJobName"], "InProgress")
    launched = rt.launcher.launch(_schema(rt, schema_key), config.bucket_automl_data, schema_key)
    assert not launched.created

    # SageMaker runs the image's `train`; its model.tar.gz lands where deploy listens.
    s3 = session.client("s3", endpoint_url=moto)
    key = _emulate_training_job(sm, s3, job, tmp_path / "opt" / "ml", rt.store)
    assert key == f"cancer/{run_id}/output/model.tar.gz"
    assert rt.store.head(config.bucket_model_output, key) is not None
    # A duplicate training of the run (another attempt finishing later) writes with
    # If-None-Match and leaves the model file deploy may already have registered as it is.
    written = rt.store.get(config.bucket_model_output, key)
    artifact = ModelArtifact.from_tar_gz(written)
    other = artifact.model_copy(update={"model": artifact.model + b" "}).to_tar_gz()
    duplicate = ChannelStore({}, tmp_path / "dup", (config.bucket_model_output, key), rt.store)
    duplicate.put(config.bucket_model_output, key, other)
    assert rt.store.get(config.bucket_model_output, key) == written
    _check_contract_app(tmp_path / "opt" / "ml" / "model")
    invoker.run_until_idle()
    doc = RegistryDoc.model_validate_json(
        rt.store.get(config.bucket_model_output, "registry/cancer.json")
    )
    assert doc.champion == 1
    assert doc.get(1).endpoint == live_endpoint_name("automlops-dev", "cancer")
    model = sm.describe_model(ModelName=resource_name("automlops-dev", "cancer", 1))
    assert model["PrimaryContainer"]["Image"] == config.sagemaker_image
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{config.bucket_model_output}/{key}"
    assert model["ExecutionRoleArn"] == config.sagemaker_role_arn
    # The train role allowed launching the job (tags, role passing) as the request was made.
    statements = stack.statements(stack.role_of("TrainLambdaFunction"))
    calls = recorder.calls["TrainLambdaFunction"]
    assert any(c.action == "sagemaker:CreateTrainingJob" for c in calls)
    assert [c for c in calls if not allowed(statements, c)] == []


def _schema(rt: AwsRuntime, key: str):
    from automlops.tabular.schema import DatasetSchema

    return DatasetSchema.model_validate_json(rt.store.get(rt.config.bucket_automl_data, key))


def _tiny_schema(run_id: str = "0123456789abcdef"):
    return type(
        "S",
        (),
        {
            "run_id": run_id,
            "dataset": "d",
            "split_keys": {"train": "a", "validation": "b"},
            "transform_key": "t",
        },
    )()


def test_a_failed_training_job_is_retried_as_a_new_attempt_then_refused(
    deployed: Deployed,
) -> None:
    rt = deployed[0]
    schema = _tiny_schema()
    bucket, key = rt.config.bucket_automl_data, "automl/d/0123456789abcdef/schema.json"
    first = rt.launcher.launch(schema, bucket, key)  # type: ignore[arg-type]
    assert first.created and first.job_name.endswith("-a1")
    _job_state(first.job_name, "Failed", "AlgorithmError: out of memory")
    second = rt.launcher.launch(schema, bucket, key)  # type: ignore[arg-type]
    assert second.created and second.job_name == training_job_name(
        "automlops-dev", "0123456789abcdef", 2
    )
    _job_state(second.job_name, "InProgress")
    assert not rt.launcher.launch(schema, bucket, key).created  # type: ignore[arg-type]
    for attempt in range(2, MAX_ATTEMPTS + 1):
        _job_state(training_job_name("automlops-dev", "0123456789abcdef", attempt), "Stopped")
        if attempt < MAX_ATTEMPTS:
            assert rt.launcher.launch(schema, bucket, key).created  # type: ignore[arg-type]
    with pytest.raises(PermanentError, match=f"already had {MAX_ATTEMPTS} training jobs"):
        rt.launcher.launch(schema, bucket, key)  # type: ignore[arg-type]


def test_two_stacks_in_one_account_train_the_same_run_without_collision(
    deployed: Deployed,
) -> None:
    rt = deployed[0]
    staging = TrainingJobLauncher(
        rt.config.model_copy(update={"name_prefix": "automlops-staging"}), rt.host.sagemaker
    )
    schema = _tiny_schema()
    key = "automl/d/0123456789abcdef/schema.json"
    dev_job = rt.launcher.launch(schema, rt.config.bucket_automl_data, key)  # type: ignore[arg-type]
    staging_job = staging.launch(schema, rt.config.bucket_automl_data, key)  # type: ignore[arg-type]
    assert dev_job.created and staging_job.created
    assert dev_job.job_name.startswith("automlops-dev-")
    assert staging_job.job_name.startswith("automlops-staging-")
    long = training_job_name("automlops-staging", "r" * 80, 12)
    assert len(long) <= 63 and long.endswith("-a12")


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ("bank", "automlops-dev-bank-v3"),
        ("Bank_Full.v2", "automlops-dev-bank-full-v2-"),
        ("x" * 80, "automlops-dev-xxx"),
    ],
)
def test_endpoint_names_are_sagemaker_safe(dataset: str, expected: str) -> None:
    name = resource_name("automlops-dev", dataset, 3)
    assert name.startswith(expected)
    assert len(name) <= 63 and name == name.lower()
    assert all(c.isalnum() or c == "-" for c in name) and name.endswith("-v3")


def _check_contract_app(model_dir: Path) -> None:
    """The serving image's app on the directory SageMaker unpacks the model into."""
    server = EmbeddedServer(create_sagemaker_app(model_dir, version=1))
    server.start()
    try:
        assert httpx.get(f"{server.url}/ping").status_code == 200
        csv = b"mean_radius,mean_texture\n14.1,19.3\n20.5,25.0\n"
        answer = httpx.post(
            f"{server.url}/invocations",
            content=csv,
            headers={"content-type": "text/csv", "accept": "text/csv"},
        )
        assert answer.status_code == 200 and len(answer.text.strip().splitlines()) == 2
        as_json = httpx.post(
            f"{server.url}/invocations",
            json={"instances": [{"mean_radius": 14.1}]},
        ).json()
        assert as_json["model_version"] == "1"
        assert set(as_json["predictions"][0]["probabilities"]) == {"benign", "malignant"}
        bad = httpx.post(
            f"{server.url}/invocations", content=b"{", headers={"content-type": "application/json"}
        )
        assert bad.status_code == 400
        unsupported = httpx.post(
            f"{server.url}/invocations", content=b"x", headers={"content-type": "image/png"}
        )
        assert unsupported.status_code == 415
    finally:
        server.stop()


def test_training_jobs_encrypt_with_the_stacks_key_when_it_has_one(deployed: Deployed) -> None:
    rt = deployed[0]
    schema, key = _tiny_schema(), "automl/d/0123456789abcdef/schema.json"
    plain = rt.launcher.request(schema, rt.config.bucket_automl_data, key)  # type: ignore[arg-type]
    assert "KmsKeyId" not in plain["OutputDataConfig"]
    assert "VolumeKmsKeyId" not in plain["ResourceConfig"]
    arn = "arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c-aaaa-bbbb-cccc-111122223333"
    keyed = TrainingJobLauncher(rt.config.model_copy(update={"kms_key_arn": arn}), None)
    request = keyed.request(schema, rt.config.bucket_automl_data, key)  # type: ignore[arg-type]
    assert request["OutputDataConfig"]["KmsKeyId"] == arn
    assert request["ResourceConfig"]["VolumeKmsKeyId"] == arn
    # The stack hands its key (or "") to the functions that start jobs.
    assert rt.config.kms_key_arn == ""
