"""The packaged deployment definition: cfn-lint, the routing table, IAM scope, bucket and queue
settings. Neither serverless nor cfn-lint checks notification filters or IAM scope: these do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_invoker import load_handler
from aws_packaging import package
from aws_stack import ACCOUNT, REGION, Call, Stack, allowed

from automlops.routing import OBJECT_TRIGGERS, QUEUE_TRIGGERS, Stage

FUNCTIONS = {
    "PreprocessLambdaFunction": Stage.preprocess,
    "TrainLambdaFunction": Stage.train,
    "DeployLambdaFunction": Stage.deploy,
    "EvaluateLambdaFunction": Stage.evaluate,
    "ScoreLambdaFunction": Stage.score,
}
# Not a stage: EventBridge's training job state changes (a failed job fails its run).
TRAINING_JOB_STATE = "TrainingJobStateLambdaFunction"
# Not a stage: the monitor on its schedule (tests/aws/test_aws_monitoring.py).
MONITOR = "MonitorLambdaFunction"
TRANSFORM_JOB_STATE = "TransformJobStateLambdaFunction"
JOB_STATES = (TRAINING_JOB_STATE, TRANSFORM_JOB_STATE)


def test_cfn_lint_finds_no_errors(packaged_dir: Path) -> None:
    template = packaged_dir / "cloudformation-template-update-stack.json"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "json", "--", str(template)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    findings = json.loads(result.stdout or "[]")
    errors = [f for f in findings if f["Level"] == "Error"]
    assert errors == [], errors
    # The only warning is the framework's DependsOn beside a GetAtt on the roles we give it.
    assert {f["Rule"]["Id"] for f in findings} <= {"W3005"}, findings


def test_packaging_needs_digest_pinned_images_only(stack: Stack) -> None:
    for function in [*FUNCTIONS, *JOB_STATES]:
        uri = stack.resources[function]["Properties"]["Code"]["ImageUri"]
        assert "@sha256:" in uri, uri


def test_unknown_stage_is_refused(tmp_path: Path) -> None:
    result = package("qa", tmp_path / "qa")
    assert result.returncode != 0
    assert "custom.stage" in result.stdout + result.stderr


def _function_stage(stack: Stack, function: str) -> Stage:
    handler = stack.handler_of(function)
    module, name = handler.rsplit(".", 1)
    assert module == "automlops.aws.handlers"
    return Stage(name)


def test_every_function_runs_its_own_stage_handler(stack: Stack) -> None:
    functions = set(stack.of_type("AWS::Lambda::Function")) - {*JOB_STATES, MONITOR}
    assert {f: _function_stage(stack, f) for f in functions} == FUNCTIONS
    for function in [*functions, *JOB_STATES, MONITOR]:
        assert callable(load_handler(stack.handler_of(function)))


def test_failed_training_jobs_of_this_stack_reach_their_handler(stack: Stack) -> None:
    assert stack.handler_of(TRAINING_JOB_STATE) == "automlops.aws.handlers.training_job_state"
    (rule,) = _rules_of(stack, TRAINING_JOB_STATE)
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.sagemaker"]
    assert pattern["detail-type"] == ["SageMaker Training Job State Change"]
    assert set(pattern["detail"]["TrainingJobStatus"]) == {"Failed", "Stopped"}
    # Only this stack's jobs ("automlops-dev-<run>-a<n>"), not another stage's in the account.
    assert pattern["detail"]["TrainingJobName"] == [{"prefix": "automlops-dev-"}]
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"]["Fn::GetAtt"][0] == TRAINING_JOB_STATE
    # Events the handler could not take after Lambda's retries are kept, not dropped.
    assert _on_failure(stack, TRAINING_JOB_STATE) == "TrainingJobStateDeadLetterQueue"


def _rules_of(stack: Stack, function: str) -> list[dict[str, Any]]:
    return [
        rule for rule in stack.of_type("AWS::Events::Rule").values() if _targets(rule, function)
    ]


def _on_failure(stack: Stack, function: str) -> str:
    (config,) = [
        c
        for c in stack.of_type("AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"]["FunctionName"]["Ref"] == function
    ]
    return str(
        config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    )


def test_ended_transform_jobs_of_this_stack_reach_their_handler(stack: Stack) -> None:
    assert stack.handler_of(TRANSFORM_JOB_STATE) == "automlops.aws.handlers.transform_job_state"
    (rule,) = _rules_of(stack, TRANSFORM_JOB_STATE)
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.sagemaker"]
    assert pattern["detail-type"] == ["SageMaker Transform Job State Change"]
    assert set(pattern["detail"]["TransformJobStatus"]) == {"Completed", "Failed", "Stopped"}
    assert pattern["detail"]["TransformJobName"] == [{"prefix": "automlops-dev-"}]
    assert _on_failure(stack, TRANSFORM_JOB_STATE) == "TransformJobStateDeadLetterQueue"


def _targets(rule: dict[str, Any], function: str) -> bool:
    return any(
        t["Arn"].get("Fn::GetAtt", [None])[0] == function for t in rule["Properties"]["Targets"]
    )


def test_triggers_match_the_routing_table_exactly(stack: Stack) -> None:
    env = stack.resources["PreprocessLambdaFunction"]["Properties"]["Environment"]["Variables"]
    bucket_role = {
        env[f"AUTOMLOPS_BUCKET_{t.bucket_role.upper()}"]["Ref"]: t.bucket_role
        for t in OBJECT_TRIGGERS
    }
    queue_role = {
        env[f"AUTOMLOPS_QUEUE_{t.queue_role.upper()}"]["Fn::GetAtt"][0]: t.queue_role
        for t in QUEUE_TRIGGERS
    }
    consumers: dict[str, list[Stage]] = {}
    for queue, function in stack.event_sources():
        consumers.setdefault(queue, []).append(_function_stage(stack, function))
    assert all(len(stages) == 1 for stages in consumers.values()), consumers

    declared_objects = {
        (bucket_role[bucket], consumers[queue][0], prefix, suffix)
        for bucket, queue, prefix, suffix in stack.notifications()
    }
    assert declared_objects == {
        (t.bucket_role, t.stage, t.prefix, t.suffix) for t in OBJECT_TRIGGERS
    }
    notified_queues = {queue for _, queue, _, _ in stack.notifications()}
    declared_queues = {
        (queue_role[queue], stages[0])
        for queue, stages in consumers.items()
        if queue not in notified_queues
    }
    assert declared_queues == {(t.queue_role, t.stage) for t in QUEUE_TRIGGERS}
    # Nothing extra: one mapping per stage's queue (a stage's triggers share its queue: score
    # has one per file format), each reporting partial batch failures.
    mappings = stack.of_type("AWS::Lambda::EventSourceMapping")
    assert len(mappings) == len({t.stage for t in OBJECT_TRIGGERS}) + len(QUEUE_TRIGGERS)
    for mapping in mappings.values():
        assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_buckets_are_private_encrypted_and_data_is_versioned(stack: Stack) -> None:
    buckets = {
        k: v["Properties"]
        for k, v in stack.of_type("AWS::S3::Bucket").items()
        if k != "ServerlessDeploymentBucket"
    }
    assert set(buckets) == {
        "DataBucket",
        "AutomlDataBucket",
        "ModelOutputBucket",
        "ModelMonitoringBucket",
    }
    for name, props in buckets.items():
        # Encrypted either way the KMS condition goes (test_aws_delivery checks the two sides).
        rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        _, with_key, without_key = rules[0]["ServerSideEncryptionByDefault"]["Fn::If"]
        assert with_key["SSEAlgorithm"] == "aws:kms" and without_key["SSEAlgorithm"], name
        assert all(props["PublicAccessBlockConfiguration"].values()), name
        assert len(props["PublicAccessBlockConfiguration"]) == 4, name
        assert stack.names[name].startswith("automlops-dev-"), name
    assert buckets["DataBucket"]["VersioningConfiguration"]["Status"] == "Enabled"
    policies = stack.of_type("AWS::S3::BucketPolicy")
    secured = {
        p["Properties"]["Bucket"]["Ref"]
        for p in policies.values()
        if any(
            s["Effect"] == "Deny" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
            for s in p["Properties"]["PolicyDocument"]["Statement"]
        )
    }
    assert secured >= set(buckets)


def test_every_consumed_queue_has_a_dead_letter_queue(stack: Stack) -> None:
    queues = stack.of_type("AWS::SQS::Queue")
    for queue, function in stack.event_sources():
        props = queues[queue]["Properties"]
        dlq = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        assert "RedrivePolicy" not in queues[dlq]["Properties"]
        # AWS's advice for Lambda event sources: maxReceiveCount >= 5, visibility >= 6x the
        # function's timeout.
        assert int(props["RedrivePolicy"]["maxReceiveCount"]) >= 5
        timeout = stack.resources[function]["Properties"]["Timeout"]
        assert int(props["VisibilityTimeout"]) >= 6 * timeout, queue
        # SQS-managed encryption unless the stack's KMS key is used (test_aws_delivery).
        assert props["SqsManagedSseEnabled"]["Fn::If"][2] is True


def test_every_event_source_bounds_its_concurrency(stack: Stack) -> None:
    mappings = stack.of_type("AWS::Lambda::EventSourceMapping").values()
    assert len(mappings) == len(FUNCTIONS)
    for mapping in mappings:
        limit = mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"]
        assert 2 <= int(limit) <= 5, mapping


# -- IAM ---------------------------------------------------------------------------------------


def test_each_function_has_its_own_role_and_no_shared_role_exists(stack: Stack) -> None:
    roles = stack.of_type("AWS::IAM::Role")
    assert "IamRoleLambdaExecution" not in roles
    functions = [*FUNCTIONS, *JOB_STATES, MONITOR]
    function_roles = {stack.role_of(f) for f in functions}
    assert len(function_roles) == len(functions)
    assert set(roles) == function_roles | {"SageMakerExecutionRole"}


def test_no_wildcard_actions_and_no_unscoped_resources(stack: Stack) -> None:
    # Actions that take no resource ARN (IAM's service reference): "*" is their only scope.
    unscoped_ok = {
        "ecr:GetAuthorizationToken",
        "cloudwatch:PutMetricData",
        "sagemaker:ListModels",
        "sagemaker:ListEndpointConfigs",
        "sagemaker:ListEndpoints",
    }
    for role in stack.of_type("AWS::IAM::Role"):
        for statement in stack.statements(role):
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            resources = statement["Resource"]
            resources = [resources] if isinstance(resources, str) else resources
            for action in actions:
                service, _, verb = action.partition(":")
                assert "*" not in verb and service != "*", (role, action)
            if "*" in resources:
                assert set(actions) <= unscoped_ok, (role, statement)
            for resource in resources:
                if resource.startswith("arn:aws:s3:::"):
                    bucket = resource.removeprefix("arn:aws:s3:::").split("/")[0]
                    assert bucket.startswith("automlops-dev-"), (role, resource)


def _arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"


def _probes(stack: Stack) -> dict[str, Call]:
    name = stack.names
    pass_role = Call(
        "iam:PassRole",
        stack.attribute("SageMakerExecutionRole", "Arn"),
        {"iam:PassedToService": "sagemaker.amazonaws.com"},
    )
    return {
        "read upload": Call("s3:GetObject", f"arn:aws:s3:::{name['DataBucket']}/data/d/f.csv"),
        "write upload": Call("s3:PutObject", f"arn:aws:s3:::{name['DataBucket']}/data/d/f.csv"),
        "write split": Call(
            "s3:PutObject", f"arn:aws:s3:::{name['AutomlDataBucket']}/automl/d/r/train.parquet"
        ),
        "read split": Call(
            "s3:GetObject", f"arn:aws:s3:::{name['AutomlDataBucket']}/automl/d/r/test.parquet"
        ),
        "write model": Call(
            "s3:PutObject",
            f"arn:aws:s3:::{name['ModelOutputBucket']}/d/r/output/model.tar.gz",
        ),
        "write registry": Call(
            "s3:PutObject", f"arn:aws:s3:::{name['ModelOutputBucket']}/registry/d.json"
        ),
        "write report": Call(
            "s3:PutObject", f"arn:aws:s3:::{name['ModelMonitoringBucket']}/d/2024-01-01/r/x"
        ),
        "start training": Call(
            "sagemaker:CreateTrainingJob",
            _arn("sagemaker", "training-job/automlops-dev-abc-a1"),
            {"aws:RequestTag/automlops:stack": "automlops-dev"},
        ),
        "start foreign training": Call(
            "sagemaker:CreateTrainingJob", _arn("sagemaker", "training-job/automlops-dev-abc"), {}
        ),
        "start another stack's training": Call(
            "sagemaker:CreateTrainingJob",
            _arn("sagemaker", "training-job/automlops-prod-abc-a1"),
            {"aws:RequestTag/automlops:stack": "automlops-dev"},
        ),
        "create endpoint": Call(
            "sagemaker:CreateEndpoint", _arn("sagemaker", "endpoint/automlops-dev-d-v1")
        ),
        "create foreign endpoint": Call(
            "sagemaker:CreateEndpoint", _arn("sagemaker", "endpoint/other-d-v1")
        ),
        "invoke endpoint": Call(
            "sagemaker:InvokeEndpoint", _arn("sagemaker", "endpoint/automlops-dev-d-v1")
        ),
        "switch endpoint": Call(
            "sagemaker:UpdateEndpoint", _arn("sagemaker", "endpoint/automlops-dev-d-live")
        ),
        "retire version": Call(
            "sagemaker:DeleteEndpointConfig",
            _arn("sagemaker", "endpoint-config/automlops-dev-d-v1"),
        ),
        "retire foreign version": Call(
            "sagemaker:DeleteModel", _arn("sagemaker", "model/other-d-v1")
        ),
        "record run failure": Call(
            "s3:PutObject",
            f"arn:aws:s3:::{name['ModelOutputBucket']}/runs/d/r/training-failure.json",
        ),
        # A HEAD of a missing key answers 404 only with ListBucket (no s3:prefix on a HEAD).
        "see missing split": Call("s3:ListBucket", f"arn:aws:s3:::{name['AutomlDataBucket']}"),
        "see missing model": Call("s3:ListBucket", f"arn:aws:s3:::{name['ModelOutputBucket']}"),
        "pass sagemaker role": pass_role,
        "pass role to lambda": Call(
            "iam:PassRole", pass_role.resource, {"iam:PassedToService": "lambda.amazonaws.com"}
        ),
        "queue evaluation": Call("sqs:SendMessage", _arn("sqs", name["EvaluationQueue"])),
        "read file to score": Call(
            "s3:GetObject", f"arn:aws:s3:::{name['DataBucket']}/score/d/f.csv"
        ),
        "write predictions": Call(
            "s3:PutObject", f"arn:aws:s3:::{name['ModelOutputBucket']}/predictions/d/r/f.csv"
        ),
        "start transform": Call(
            "sagemaker:CreateTransformJob",
            _arn("sagemaker", "transform-job/automlops-dev-abc-a1"),
            {"aws:RequestTag/automlops:stack": "automlops-dev"},
        ),
        "start another stack's transform": Call(
            "sagemaker:CreateTransformJob",
            _arn("sagemaker", "transform-job/other-abc-a1"),
            {"aws:RequestTag/automlops:stack": "other"},
        ),
        "write transform output": Call(
            "s3:PutObject",
            f"arn:aws:s3:::{name['ModelOutputBucket']}/predictions/d/r/transform/f.csv.out",
        ),
        "record transform end": Call(
            "s3:PutObject",
            f"arn:aws:s3:::{name['ModelOutputBucket']}/runs/d/r/transform-job.json",
        ),
        "read transform end": Call(
            "s3:GetObject",
            f"arn:aws:s3:::{name['ModelOutputBucket']}/runs/d/r/transform-job.json",
        ),
        "write mini-batch record": Call(
            "s3:PutObject",
            f"arn:aws:s3:::{name['ModelOutputBucket']}/predictions/d/r/transform/batches/h-n.json",
        ),
        "read mini-batch record": Call(
            "s3:GetObject",
            f"arn:aws:s3:::{name['ModelOutputBucket']}/predictions/d/r/transform/batches/h-n.json",
        ),
        "write scoring errors": Call(
            "s3:PutObject", f"arn:aws:s3:::{name['ModelOutputBucket']}/predictions/d/r/errors.csv"
        ),
    }


# What each function may do among the probes; every other probe must be denied.
HOSTING = {
    "create endpoint",
    "invoke endpoint",
    "switch endpoint",
    "retire version",
    "pass sagemaker role",
}
EXPECTED: dict[str, set[str]] = {
    "PreprocessLambdaFunction": {
        "read upload",
        "write split",
        "read split",
        "see missing split",
        "see missing model",
    },
    "TrainLambdaFunction": {
        "read split",
        "write model",
        "start training",
        "pass sagemaker role",
        "see missing split",
        "see missing model",
    },
    "DeployLambdaFunction": {
        "read split",
        "read mini-batch record",  # it reads the whole model-output bucket (models, registry)
        "read transform end",
        "write registry",
        "queue evaluation",
        "see missing split",
        "see missing model",
        *HOSTING,
    },
    "EvaluateLambdaFunction": {
        "read split",
        "read mini-batch record",  # it reads the whole model-output bucket (models, registry)
        "read transform end",
        "write registry",
        "write report",
        "see missing split",
        "see missing model",
        *HOSTING,
    },
    TRAINING_JOB_STATE: {"record run failure"},
    # A completed job: its mini-batch records read, the scored file streamed, errors.csv.
    TRANSFORM_JOB_STATE: {
        "record transform end",
        "read mini-batch record",
        "read file to score",
        "write scoring errors",
    },
    "ScoreLambdaFunction": {
        "read file to score",
        "write predictions",
        "see missing model",
        # Files too big for the function: a transform job of the version's model.
        "start transform",
        "pass sagemaker role",
        "write transform output",
        "read transform end",  # a completed job answers a redelivered event
        # The local stage's own files under predictions/ (the same prefix).
        "write mini-batch record",
        "read mini-batch record",
        "write scoring errors",
    },
    # The retrain policy: the manifest and a champion's upload read, a retrain upload written.
    MONITOR: {
        "read split",
        "see missing split",
        "see missing model",
        "read upload",
        "write upload",
    },
}


@pytest.mark.parametrize("function", sorted(EXPECTED))
def test_function_roles_allow_exactly_their_stage(stack: Stack, function: str) -> None:
    statements = stack.statements(stack.role_of(function))
    granted = {name for name, call in _probes(stack).items() if allowed(statements, call)}
    assert granted == EXPECTED[function]


def test_sagemaker_role_reads_channels_and_writes_models_only(stack: Stack) -> None:
    statements = stack.statements("SageMakerExecutionRole")
    granted = {name for name, call in _probes(stack).items() if allowed(statements, call)}
    assert granted == {
        "read split",
        "write model",
        "see missing split",
        "see missing model",
        # Batch Transform jobs: the file to score in, the predictions and the container's
        # mini-batch records out.
        "read file to score",
        "write transform output",
        "write mini-batch record",
    }


def test_ssm_parameters_name_the_stack(stack: Stack) -> None:
    names = {
        stack.resolve(p["Properties"]["Name"])
        for p in stack.of_type("AWS::SSM::Parameter").values()
    }
    assert "/automlops/dev/buckets/data" in names
    assert all(n.startswith("/automlops/dev/") for n in names)
