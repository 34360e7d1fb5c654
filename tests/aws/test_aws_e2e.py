"""aws mode end to end on moto's server: S3 -> SQS -> the Lambda handlers -> SageMaker.

The packaged template is created on moto by moto's CloudFormation (what it cannot do is made
from the template's own declarations: aws_cfn.MOTO_GAPS); the handlers are configured with the
created functions' environment; a local invoker plays Lambda's SQS event source mappings.
Training runs in-function; the model is served through the SageMaker container contract by the
project's app on a loopback port (moto runs no containers: see aws_invoker.LocalSageMakerRuntime).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_cfn import Provisioned
from aws_invoker import CallRecorder, LambdaInvoker, LocalSageMakerRuntime
from aws_stack import allowed

from automlops import keys
from automlops.aws.config import load_config
from automlops.aws.runtime import AwsRuntime
from automlops.config import Manifest
from automlops.local.runtime import open_runtime
from automlops.local.worker import Worker
from automlops.manifests import save_manifest
from automlops.registry import RegistryDoc
from automlops.serving import wire
from support import shared_file

pytestmark = pytest.mark.e2e

KEY = "data/bank/new data (2) é.csv"
MANIFEST = Manifest(dataset="bank", target="y", positive="yes", drop=["duration"], time_budget_s=8)
FUNCTION_ENV = "PreprocessLambdaFunction"


def _keys_by_role(store: Any, buckets: Any) -> dict[str, set[str]]:
    return {
        role: set(store.list(getattr(buckets, role)))
        for role in ("data", "automl_data", "model_output", "model_monitoring")
    }


def test_bank_upload_with_spaces_and_accents_ends_served_and_reported(
    deployed: tuple[AwsRuntime, LambdaInvoker, LocalSageMakerRuntime, CallRecorder],
    session: boto3.session.Session,
    moto: str,
    provisioned: Provisioned,
    tmp_path: Path,
) -> None:
    rt, invoker, sagemaker_runtime, recorder = deployed
    stack = provisioned.stack
    data = shared_file("bank-additional-sample.csv").read_bytes()
    buckets = rt.config.settings().buckets

    # What `aws s3 cp` of the manifest and the file does.
    save_manifest(rt.store, buckets.data, MANIFEST)
    s3 = session.client("s3", endpoint_url=moto)
    s3.put_object(Bucket=buckets.data, Key=KEY, Body=data)
    invoker.run_until_idle()

    # Every stage ran through its handler, from the exact Lambda event shapes, in order; a
    # retried attempt (the tuner may find no trial within its budget on a busy machine) is
    # fine as long as nothing ends in a dead-letter queue.
    # (S3 sends each queue a test event when its notification is configured: the score
    # function, which this upload does not trigger, may take its queue's and do nothing.)
    functions = list(
        dict.fromkeys(
            f for f, event, _ in invoker.invocations if "s3:TestEvent" not in json.dumps(event)
        )
    )
    assert functions == [
        "PreprocessLambdaFunction",
        "TrainLambdaFunction",
        "DeployLambdaFunction",
        "EvaluateLambdaFunction",
    ]
    sqs = session.client("sqs", endpoint_url=moto)
    for queue in stack.of_type("AWS::SQS::Queue"):
        url = sqs.get_queue_url(QueueName=stack.names[queue])["QueueUrl"]
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert counts["ApproximateNumberOfMessages"] == "0", queue
    first_event = next(e for f, e, _ in invoker.invocations if "s3:TestEvent" not in str(e))
    body = json.loads(first_event["Records"][0]["body"])
    assert body["Records"][0]["s3"]["object"]["key"] != KEY  # URL-encoded on the wire

    # A champion, hosted on a SageMaker serverless endpoint named by the host.
    doc = RegistryDoc.model_validate_json(
        rt.store.get(buckets.model_output, keys.registry_key("bank"))
    )
    assert doc.champion == 1
    champion = doc.get(1)
    assert champion.source_key == KEY
    # The dataset's one endpoint, running the champion's config; the candidate's own endpoint
    # was deleted once it was decided.
    assert champion.endpoint == "automlops-dev-bank-live"
    sm = session.client("sagemaker", endpoint_url=moto)
    served = sm.describe_endpoint(EndpointName=champion.endpoint)["EndpointConfigName"]
    assert served == "automlops-dev-bank-v1"
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == [champion.endpoint]
    config = sm.describe_endpoint_config(EndpointConfigName=served)
    assert config["ProductionVariants"][0]["ServerlessConfig"] == {
        "MemorySizeInMB": 2048,
        "MaxConcurrency": 5,
    }
    assert sm.describe_endpoint(EndpointName=champion.endpoint)["EndpointStatus"] == "InService"

    # The report in the monitoring bucket, for this run.
    assert champion.report_key is not None
    report = json.loads(rt.store.get(buckets.model_monitoring, champion.report_key))
    assert report["decision"]["status"] == "champion"
    assert report["rows"] > 300
    assert report["metrics"]["roc_auc"] > 0.7

    # Served through the SageMaker contract: /ping, and raw rows into /invocations.
    assert sagemaker_runtime.ping(champion.endpoint) == 200
    row = {"age": 41, "job": "admin.", "marital": "married", "pdays": 999}
    answer = wire.invoke(rt.host, champion.endpoint, [row])
    assert answer.model_version == "1"
    assert answer.labels()[0] in {"no", "yes"}
    assert answer.probability("no") + answer.probability("yes") == pytest.approx([1.0])

    # The upload is tagged with its run, like the local store does.
    assert rt.store.get_tags(buckets.data, KEY) == {"automlops-processed-run": champion.run_id}

    # The same artifacts as local mode: same run identity, same keys in every bucket.
    local = open_runtime(tmp_path / "local")
    try:
        save_manifest(local.store, local.settings.buckets.data, MANIFEST)
        local.store.put(local.settings.buckets.data, KEY, data)
        Worker(local).run_until_idle()
        assert _keys_by_role(local.store, local.settings.buckets) == _keys_by_role(
            rt.store, buckets
        )
    finally:
        local.close()

    # Each function's role allowed every call its stage made.
    by_functions = {f: calls for f, calls in recorder.calls.items() if f != "test"}
    for function, calls in by_functions.items():
        statements = stack.statements(stack.role_of(function))
        denied = [call for call in calls if not allowed(statements, call)]
        assert denied == [], (function, denied)
    # Every stage's function ran (a run whose training job fails: test_aws_hosting; a transform
    # job's end: test_aws_transform; the scheduled monitor: test_aws_monitoring).
    not_stages = {
        "TrainingJobStateLambdaFunction",
        "TransformJobStateLambdaFunction",
        "MonitorLambdaFunction",
    }
    stages = set(stack.of_type("AWS::Lambda::Function")) - not_stages
    assert set(by_functions) == stages


def test_ssm_parameters_give_the_same_configuration(
    moto: str, session: boto3.session.Session, provisioned: Provisioned
) -> None:
    from_env = load_config(provisioned.function_env(FUNCTION_ENV))
    from_ssm = load_config(
        {}, ssm_client=session.client("ssm", endpoint_url=moto), ssm_prefix="/automlops/dev"
    )
    assert from_ssm.settings() == from_env.settings()
    assert from_ssm.sagemaker_role_arn == from_env.sagemaker_role_arn
    assert from_ssm.sagemaker_image == from_env.sagemaker_image
    assert from_ssm.name_prefix == "automlops-dev"
