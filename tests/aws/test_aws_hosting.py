"""The endpoint lifecycle over many versions, quota errors, and failed training jobs, on moto.

One real (linear, 1 s) model is trained through the deployed handlers; the other versions are
that model file registered again (each its own model, config and version number), so the test
exercises hosting, not training.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from aws_cfn import Provisioned
from aws_invoker import CallRecorder, FakeContext, LambdaInvoker, LocalSageMakerRuntime
from aws_stack import allowed
from botocore.exceptions import ClientError

from automlops import keys
from automlops.aws import handlers, ops
from automlops.aws.hosting import EndpointLifecycle
from automlops.aws.runtime import AwsRuntime
from automlops.aws.sagemaker import live_endpoint_name, resource_name
from automlops.aws.training_failures import list_failures, retrain
from automlops.demo import breast_cancer_csv
from automlops.errors import NotFoundError, PermanentError
from automlops.events import S3Event
from automlops.manifests import save_manifest
from automlops.registry import EvaluationOutcome, ModelVersion, Registry, VersionStatus
from automlops.serving import wire
from automlops.usecases import promotion
from automlops.usecases.models import list_models
from support import linear_cancer_manifest

Deployed = tuple[AwsRuntime, LambdaInvoker, LocalSageMakerRuntime, CallRecorder]
PREFIX = "automlops-dev"
DATASET = "cancer"


def _names(sm: Any) -> dict[str, set[str]]:
    """The dataset's SageMaker resources, by kind."""
    stem = f"{PREFIX}-{DATASET}-"
    return {
        "endpoints": {
            e["EndpointName"]
            for e in sm.list_endpoints()["Endpoints"]
            if e["EndpointName"].startswith(stem)
        },
        "configs": {
            c["EndpointConfigName"]
            for c in sm.list_endpoint_configs()["EndpointConfigs"]
            if c["EndpointConfigName"].startswith(stem)
        },
        "models": {
            m["ModelName"] for m in sm.list_models()["Models"] if m["ModelName"].startswith(stem)
        },
    }


# One trained model per session: (model file, test split), reused by every test here.
_TRAINED: dict[str, bytes] = {}


def _trained(rt: AwsRuntime, invoker: LambdaInvoker) -> dict[str, bytes]:
    """A real model file and its test split, trained once through the preprocess and train
    functions (deploy and evaluate are not run: these tests drive hosting themselves)."""
    if not _TRAINED:
        buckets = rt.config.settings().buckets
        save_manifest(rt.store, buckets.data, linear_cancer_manifest(DATASET))
        rt.store.put(buckets.data, f"data/{DATASET}/cancer.csv", breast_cancer_csv())
        sources = invoker.sources
        invoker.sources = [
            s for s in sources if s[2] in ("PreprocessLambdaFunction", "TrainLambdaFunction")
        ]
        try:
            invoker.run_until_idle()
        finally:
            invoker.sources = sources
        (model_key,) = [k for k in rt.store.list(buckets.model_output) if k.endswith(".tar.gz")]
        (test_key,) = [k for k in rt.store.list(buckets.automl_data) if k.endswith("test.parquet")]
        _TRAINED["model"] = rt.store.get(buckets.model_output, model_key)
        _TRAINED["test"] = rt.store.get(buckets.automl_data, test_key)
    return _TRAINED


def _register(rt: AwsRuntime, trained: dict[str, bytes], n: int) -> ModelVersion:
    """Version n: the trained model file under a key of its own (not one deploy listens on),
    with its test split (the canary's rows)."""
    buckets = rt.config.settings().buckets
    key = f"{DATASET}/copies/v{n}/model.tar.gz"
    test_key = f"automl/{DATASET}/copy{n}/test.parquet"
    rt.store.put(buckets.model_output, key, trained["model"])
    rt.store.put(buckets.automl_data, test_key, trained["test"])
    registry = Registry(rt.store, buckets.model_output)
    return registry.register(
        DATASET,
        ModelVersion(
            version=0,
            run_id=f"copy{n}",
            created_at="2026-01-01T00:00:00+00:00",
            task="binary",
            learner="linear",
            artifact_bucket=buckets.model_output,
            artifact_key=key,
            source_key=f"data/{DATASET}/cancer.csv",
            source_sha256="0" * 64,
            test_key=test_key,
        ),
    )


def test_ten_versions_leave_one_endpoint_and_n_plus_one_configs_and_rollback_works(
    deployed: Deployed, session: boto3.session.Session, moto: str, provisioned: Provisioned
) -> None:
    rt, invoker, _, recorder = deployed
    stack = provisioned.stack
    sm = session.client("sagemaker", endpoint_url=moto)
    live = live_endpoint_name(PREFIX, DATASET)
    keep = rt.config.keep_versions
    assert keep == 2
    trained = _trained(rt, invoker)
    registry = Registry(rt.store, rt.config.bucket_model_output)
    lifecycle = rt.lifecycle()
    champions: list[int] = []
    for n in range(1, 11):
        entry = _register(rt, trained, n)
        candidate = rt.host.deploy(
            DATASET, entry.version, entry.artifact_bucket, entry.artifact_key
        )
        registry.set_endpoint(DATASET, entry.version, candidate)
        assert candidate in _names(sm)["endpoints"]  # evaluated on its own short-lived endpoint
        promote = n % 3 != 0  # some candidates win, some lose (the first one wins)
        outcome = EvaluationOutcome(
            metrics={}, report_key=f"r/{n}", promote=promote, reason="test decision"
        )
        registry.decide(
            DATASET, entry.version, outcome, compared_with=champions[-1] if champions else None
        )
        if promote:
            champions.append(entry.version)
        recorder.function = "EvaluateLambdaFunction"  # as after an evaluation
        try:
            done = lifecycle.reconcile(DATASET)
        finally:
            recorder.function = "test"
        names = _names(sm)
        assert names["endpoints"] == {live}, n
        assert len(names["configs"]) <= keep + 1 and len(names["models"]) <= keep + 1, names
        assert sm.describe_endpoint(EndpointName=live)["EndpointConfigName"] == resource_name(
            PREFIX, DATASET, champions[-1]
        )
        assert done.serving == champions[-1]
    doc = registry.read(DATASET)
    assert [v.version for v in doc.versions if v.endpoint is not None] == [champions[-1]]
    assert wire.invoke(rt.host, live, [{"mean_radius": 14.1}]).model_version == str(champions[-1])
    # Kept for a rollback: the champion's and the last two champions' configs.
    assert _names(sm)["configs"] == {resource_name(PREFIX, DATASET, v) for v in champions[-3:]}
    # All of it allowed by the role of the functions that run it (deploy's has the same).
    calls = recorder.calls["EvaluateLambdaFunction"]
    assert {"sagemaker:UpdateEndpoint", "sagemaker:DeleteEndpoint", "sagemaker:DeleteModel"} <= {
        c.action for c in calls
    }
    for function in ("DeployLambdaFunction", "EvaluateLambdaFunction"):
        statements = stack.statements(stack.role_of(function))
        assert [c for c in calls if not allowed(statements, c)] == []

    promotion.rollback(registry, DATASET, "rolled back by operator")
    lifecycle.reconcile(DATASET)
    previous = champions[-2]
    assert sm.describe_endpoint(EndpointName=live)["EndpointConfigName"] == resource_name(
        PREFIX, DATASET, previous
    )
    assert wire.invoke(rt.host, live, [{"mean_radius": 14.1}]).model_version == str(previous)
    assert registry.read(DATASET).get(previous).endpoint == live

    # An operator crowning a pruned version: its model and config are made again.
    promotion.promote(registry, DATASET, 1, "operator's choice")
    lifecycle.reconcile(DATASET)
    assert wire.invoke(rt.host, live, [{"mean_radius": 14.1}]).model_version == "1"
    assert _names(sm)["endpoints"] == {live}


def _quota_reached(**_: Any) -> None:
    raise ClientError(
        {
            "Error": {
                "Code": "ResourceLimitExceeded",
                "Message": "The account-level service limit 'Total concurrency' is 200",
            }
        },
        "CreateEndpoint",
    )


def test_a_quota_error_fails_the_run_at_once_and_leaves_no_candidate(deployed: Deployed) -> None:
    rt, invoker, _, _ = deployed
    trained = _trained(rt, invoker)
    rt.host.sagemaker.meta.events.register("before-call.sagemaker.CreateEndpoint", _quota_reached)
    try:
        # A run's model file arrives: deploy registers it, hosting hits the quota.
        key = f"{DATASET}/second/output/model.tar.gz"
        rt.store.put(rt.config.bucket_model_output, key, trained["model"])
        invoker.run_until_idle()
    finally:
        rt.host.sagemaker.meta.events.unregister(
            "before-call.sagemaker.CreateEndpoint", _quota_reached
        )
    doc = Registry(rt.store, rt.config.bucket_model_output).read(DATASET)
    (entry,) = [v for v in doc.versions if v.run_id == "second"]
    assert entry.status is VersionStatus.rejected
    assert "quota reached" in (entry.last_reason or "")
    # Not retried into the dead-letter queue: the run failed once, with the reason.
    deploys = [i for i in invoker.invocations if i[2] and i[0] == "DeployLambdaFunction"]
    assert deploys[-1][2] == {"batchItemFailures": []}
    assert [i for i in deploys if "second" in i[1]["Records"][0]["body"]] == deploys[-1:]
    assert rt.queue.dead_letters(f"{PREFIX}-deploy") == []


def _state_change(job: str, status: str, reason: str | None) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "TrainingJobName": job,
        "TrainingJobStatus": status,
        "HyperParameters": {"dataset": "bank", "run_id": "0123456789abcdef"},
    }
    if reason:
        detail["FailureReason"] = reason
    return {
        "version": "0",
        "id": "e1",
        "detail-type": "SageMaker Training Job State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2026-01-02T03:04:05Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def test_a_failed_training_job_fails_its_run_with_the_reason(
    deployed: Deployed, provisioned: Provisioned
) -> None:
    rt, _, _, recorder = deployed
    stack = provisioned.stack
    job = f"{PREFIX}-0123456789abcdef-a1"
    context = FakeContext(function_name="automlops-dev-trainingJobState")
    recorder.function = "TrainingJobStateLambdaFunction"
    try:
        answer = handlers.training_job_state(
            _state_change(job, "Failed", "AlgorithmError: MemoryError"), context
        )
        ignored = handlers.training_job_state(_state_change(job, "Completed", None), context)
    finally:
        recorder.function = "test"
    assert answer["recorded"] == "runs/bank/0123456789abcdef/training-failure.json"
    assert ignored == {"recorded": None}
    (failure,) = list_failures(rt.store, rt.config.bucket_model_output)
    assert failure.run_id == "0123456789abcdef" and failure.job_name == job
    assert failure.reason == "AlgorithmError: MemoryError"
    # `automlops aws models` shows the run's failure even though it has no version.
    (dataset,) = ops.models_document(
        rt.config,
        list_models(Registry(rt.store, rt.config.bucket_model_output)),
        [failure],
    )
    assert dataset["dataset"] == "bank" and dataset["versions"] == []
    assert dataset["failed_runs"][0]["reason"] == "AlgorithmError: MemoryError"
    statements = stack.statements(stack.role_of("TrainingJobStateLambdaFunction"))
    calls = recorder.calls["TrainingJobStateLambdaFunction"]
    assert calls and [c for c in calls if not allowed(statements, c)] == []
    # A later attempt that produced the model makes the failure moot.
    rt.store.put(rt.config.bucket_model_output, "bank/0123456789abcdef/output/model.tar.gz", b"x")
    assert list_failures(rt.store, rt.config.bucket_model_output) == []
    with pytest.raises(Exception, match="not a SageMaker training job state change"):
        handlers.training_job_state({"source": "aws.s3"}, context)


def test_lifecycle_keeps_undecided_candidates(deployed: Deployed) -> None:
    """A candidate in evaluation keeps its endpoint, config and model whatever else goes."""
    rt = deployed[0]
    lifecycle: EndpointLifecycle = rt.lifecycle()
    registry = lifecycle.registry
    entry = registry.register(
        "tiny",
        ModelVersion(
            version=0,
            run_id="r1",
            created_at="2026-01-01T00:00:00+00:00",
            task="binary",
            learner="linear",
            artifact_bucket=rt.config.bucket_model_output,
            artifact_key="tiny/r1/output/model.tar.gz",
            source_key="data/tiny/t.csv",
            source_sha256="0" * 64,
            test_key="automl/tiny/r1/test.parquet",
        ),
    )
    endpoint = rt.host.deploy("tiny", entry.version, entry.artifact_bucket, entry.artifact_key)
    done = lifecycle.reconcile("tiny")
    assert done.deleted_endpoints == [] and done.deleted_versions == [] and done.live is None
    assert rt.host.endpoint_config(endpoint) == endpoint


def test_a_champion_failing_its_canary_is_switched_back_and_rolled_back(
    deployed: Deployed, session: boto3.session.Session, moto: str
) -> None:
    rt, invoker, _, _ = deployed
    trained = _trained(rt, invoker)
    sm = session.client("sagemaker", endpoint_url=moto)
    lifecycle = rt.lifecycle()
    registry = lifecycle.registry
    live = live_endpoint_name(PREFIX, DATASET)
    first = _register(rt, trained, 1)
    registry.promote(DATASET, first.version, "first")
    lifecycle.reconcile(DATASET)
    second = _register(rt, trained, 2)
    # Version 2's model, as SageMaker holds it, is not what the registry says (it answers as
    # another version): the canary after the switch catches it.
    rt.host.ensure_version(DATASET, 2, second.artifact_bucket, second.artifact_key)
    name = resource_name(PREFIX, DATASET, 2)
    sm.delete_model(ModelName=name)
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=rt.config.sagemaker_role_arn,
        PrimaryContainer={
            "Image": rt.config.sagemaker_image,
            "ModelDataUrl": f"s3://{second.artifact_bucket}/{second.artifact_key}",
            "Environment": {"AUTOMLOPS_DATASET": DATASET, "AUTOMLOPS_MODEL_VERSION": "7"},
        },
    )
    registry.promote(DATASET, 2, "operator's choice")
    with pytest.raises(PermanentError, match="failed its canary"):
        lifecycle.reconcile(DATASET)
    assert sm.describe_endpoint(EndpointName=live)["EndpointConfigName"] == resource_name(
        PREFIX, DATASET, 1
    )
    doc = registry.read(DATASET)
    assert doc.champion == 1
    assert "failed its canary" in (doc.get(2).last_reason or "")
    assert wire.invoke(rt.host, live, [{"mean_radius": 14.1}]).model_version == "1"


def test_a_failed_training_run_can_be_sent_back_to_training(deployed: Deployed) -> None:
    """`automlops aws retrain`: the run's schema.json notification goes back to the train
    queue, as S3 sent it; refused when nothing failed, or when the run has its model."""
    rt = deployed[0]
    config, run = rt.config, "0123456789abcdef"
    buckets = (config.bucket_automl_data, config.bucket_model_output)
    train_queue = f"{config.name_prefix}-train"

    def retrain_now() -> str:
        return retrain(rt.store, rt.queue, buckets, train_queue, "bank", run, "2026-01-03T00:00Z")

    with pytest.raises(NotFoundError, match="no recorded training failure"):
        retrain_now()
    context = FakeContext(function_name="automlops-dev-trainingJobState")
    handlers.training_job_state(
        _state_change(f"{PREFIX}-{run}-a1", "Failed", "AlgorithmError: MemoryError"), context
    )
    with pytest.raises(NotFoundError, match=r"schema\.json"):
        retrain_now()
    schema_key = keys.schema_key("bank", run)
    rt.store.put(config.bucket_automl_data, schema_key, b"{}")
    message_id = retrain_now()
    received = rt.queue.receive(train_queue, max_messages=10, wait_s=1)
    [message] = [m for m in received if m.message_id == message_id]
    [record] = S3Event.model_validate_json(message.body).records
    assert (record.s3.bucket.name, record.key) == (config.bucket_automl_data, schema_key)
    (failure,) = list_failures(rt.store, config.bucket_model_output)
    assert failure.redriven_at == "2026-01-03T00:00Z"
    rt.store.put(config.bucket_model_output, keys.model_key("bank", run), b"x")
    with pytest.raises(PermanentError, match="has a model already"):
        retrain_now()
