"""The packaged template itself, created by moto's CloudFormation: what it provisions.

The other aws tests run on this stack (conftest.provisioned); these check that what moto
created is what the template declares, read back through each service's API, and that the
table of what moto's CloudFormation cannot do (aws_cfn.MOTO_GAPS) is exact.
"""

from __future__ import annotations

import ast
import json
from typing import Any
from urllib.parse import unquote_plus

from aws_cfn import MOTO_GAPS, Provisioned
from moto.cloudformation.parsing import get_model_map
from moto.events.models import EventPattern


def _types(template: dict[str, Any]) -> set[str]:
    return {r["Type"] for r in template["Resources"].values()}


def test_the_gaps_table_names_exactly_what_moto_cannot_create(template: dict[str, Any]) -> None:
    unsupported = _types(template) - set(get_model_map())
    stripped = {g.subject for g in MOTO_GAPS if g.remedy in ("apply", "strip")}
    assert unsupported == {s for s in stripped if "." not in s}
    # Every row is about something the template has, and says what is done instead.
    for gap in MOTO_GAPS:
        kind = gap.subject.split(".", 1)[0]
        assert kind in _types(template), gap.subject
        assert gap.reason and gap.instead, gap.subject
        assert (gap.applier is not None) == (gap.remedy == "apply"), gap.subject


def test_every_declared_resource_is_created_or_applied(
    provisioned: Provisioned, template: dict[str, Any]
) -> None:
    stack = provisioned.stack
    live = {
        k
        for k, r in template["Resources"].items()
        if "Condition" not in r or stack.condition(r["Condition"])
    }
    stripped = {g.subject for g in MOTO_GAPS if g.remedy == "strip"}
    not_made = {k for k in live if template["Resources"][k]["Type"] in stripped}
    assert provisioned.created | provisioned.applied == live - not_made
    assert not provisioned.created & provisioned.applied
    cfn = provisioned.client("cloudformation")
    (described,) = cfn.describe_stacks(StackName="automlops-dev")["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    assert outputs["DataBucketName"] == stack.names["DataBucket"]


def test_buckets_notify_their_stage_queues(provisioned: Provisioned) -> None:
    stack, s3, sqs = provisioned.stack, provisioned.client("s3"), provisioned.client("sqs")
    declared: set[tuple[str, str, str, str]] = set()
    for bucket, queue, prefix, suffix in stack.notifications():
        url = sqs.get_queue_url(QueueName=stack.names[queue])["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
        declared.add((stack.names[bucket], arn["QueueArn"], prefix, suffix))
    found: set[tuple[str, str, str, str]] = set()
    for bucket in stack.of_type("AWS::S3::Bucket"):
        name = stack.names[bucket]
        config = s3.get_bucket_notification_configuration(Bucket=name)
        for c in config.get("QueueConfigurations", []):
            assert c["Events"] == ["s3:ObjectCreated:*"]
            rules = {r["Name"].lower(): r["Value"] for r in c["Filter"]["Key"]["FilterRules"]}
            found.add((name, c["QueueArn"], rules.get("prefix", ""), rules.get("suffix", "")))
    assert found == declared and len(found) == 5
    data = stack.names["DataBucket"]
    assert s3.get_bucket_versioning(Bucket=data)["Status"] == "Enabled"
    for bucket in stack.of_type("AWS::S3::Bucket"):
        block = s3.get_public_access_block(Bucket=stack.names[bucket])
        assert all(block["PublicAccessBlockConfiguration"].values()), bucket

    # moto's S3 routes a created key to the queue the filters name, and no other.
    s3.put_object(Bucket=data, Key="data/bank/x y.csv", Body=b"a\n1\n")
    s3.put_object(Bucket=data, Key="data/bank/notes.txt", Body=b"x")
    url = sqs.get_queue_url(QueueName=stack.names["PreprocessQueue"])["QueueUrl"]
    bodies = [
        json.loads(m["Body"])
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    ]
    keys = [unquote_plus(r["s3"]["object"]["key"]) for b in bodies for r in b.get("Records", [])]
    assert keys == ["data/bank/x y.csv"]


def test_queues_have_their_timeouts_and_dead_letter_queues(provisioned: Provisioned) -> None:
    stack, sqs = provisioned.stack, provisioned.client("sqs")
    queues = stack.of_type("AWS::SQS::Queue")
    with_redrive = 0
    for logical, queue in queues.items():
        props = stack.resolve(queue["Properties"])
        url = sqs.get_queue_url(QueueName=stack.names[logical])["QueueUrl"]
        got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert got["VisibilityTimeout"] == str(props.get("VisibilityTimeout", 30)), logical
        if "MessageRetentionPeriod" in props:
            assert got["MessageRetentionPeriod"] == str(props["MessageRetentionPeriod"])
        if "RedrivePolicy" in props:
            with_redrive += 1
            redrive = json.loads(got["RedrivePolicy"])
            dlq = props["RedrivePolicy"]["deadLetterTargetArn"]
            assert redrive["deadLetterTargetArn"] == dlq
            assert int(redrive["maxReceiveCount"]) == props["RedrivePolicy"]["maxReceiveCount"]
            assert int(got["VisibilityTimeout"]) >= 5400  # 6x the functions' 900 s timeout
            assert sqs.get_queue_url(QueueName=dlq.rsplit(":", 1)[-1])  # the DLQ exists
        else:
            assert "RedrivePolicy" not in got
    assert with_redrive == 5


def _policy(document: Any) -> dict[str, Any]:
    # moto 5.2 keeps a policy CloudFormation gave it as a Python literal, not JSON.
    if isinstance(document, dict):
        return document
    try:
        return dict(json.loads(document))
    except json.JSONDecodeError:
        return dict(ast.literal_eval(document))


def test_functions_have_their_roles_policies_and_environment(provisioned: Provisioned) -> None:
    stack, lam, iam = provisioned.stack, provisioned.client("lambda"), provisioned.client("iam")
    functions = stack.of_type("AWS::Lambda::Function")
    assert len(functions) == 8
    for logical, function in functions.items():
        declared = function["Properties"]
        got = lam.get_function_configuration(FunctionName=stack.names[logical])
        role = stack.role_of(logical)
        assert got["Role"] == iam.get_role(RoleName=stack.names[role])["Role"]["Arn"]
        assert got["MemorySize"] == declared["MemorySize"]
        assert got["Timeout"] == declared["Timeout"]
        env = got["Environment"]["Variables"]
        assert env == {
            k: str(v) for k, v in stack.resolve(declared["Environment"])["Variables"].items()
        }
        assert env["AUTOMLOPS_SAGEMAKER_ROLE_ARN"] == stack.attribute(
            "SageMakerExecutionRole", "Arn"
        )
        # The role's inline policy as created is the template's, resolved with these names:
        # the statements the other tests evaluate the stages' calls against.
        (policy,) = iam.list_role_policies(RoleName=stack.names[role])["PolicyNames"]
        document = iam.get_role_policy(RoleName=stack.names[role], PolicyName=policy)
        assert _policy(document["PolicyDocument"])["Statement"] == stack.statements(role)


def test_event_sources_bound_their_concurrency_and_are_played_locally(
    provisioned: Provisioned,
) -> None:
    stack = provisioned.stack
    declared = set()
    for mapping in stack.of_type("AWS::Lambda::EventSourceMapping").values():
        props = stack.resolve(mapping["Properties"])
        concurrency = props["ScalingConfig"]["MaximumConcurrency"]
        declared.add(
            (props["EventSourceArn"], props["FunctionName"], props["BatchSize"], concurrency)
        )
    created = {
        (
            m["EventSourceArn"],
            m["FunctionArn"],
            m["BatchSize"],
            m["ScalingConfig"]["MaximumConcurrency"],
        )
        for m in provisioned.mappings
    }
    assert created == declared and len(created) == 5
    assert all(m["State"] == "Enabled" for m in provisioned.mappings)
    assert all(
        m["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for m in provisioned.mappings
    )
    # Disabled since: moto would run the functions' images itself (aws_cfn.MOTO_GAPS).
    now = provisioned.client("lambda").list_event_source_mappings()["EventSourceMappings"]
    assert {m["State"] for m in now} == {"Disabled"}


def _state_change(job: str, status: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "1",
        "detail-type": "SageMaker Training Job State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "TrainingJobName": job,
            "TrainingJobStatus": status,
            "Tags": {"automlops:stack": "automlops-dev"},
        },
    }


def test_rules_route_training_job_failures_and_the_schedule(provisioned: Provisioned) -> None:
    stack, events = provisioned.stack, provisioned.client("events")
    rules = stack.of_type("AWS::Events::Rule")
    assert len(rules) == 4
    by_target: dict[str, str] = {}
    for logical, rule in rules.items():
        props = stack.resolve(rule["Properties"])
        got = events.describe_rule(Name=stack.names[logical])
        assert got["State"] == "ENABLED"
        if "ScheduleExpression" in props:
            assert got["ScheduleExpression"] == props["ScheduleExpression"]
        else:
            assert json.loads(got["EventPattern"]) == props["EventPattern"]
        (target,) = events.list_targets_by_rule(Rule=stack.names[logical])["Targets"]
        assert target["Arn"] == props["Targets"][0]["Arn"]
        by_target[target["Arn"]] = got.get("EventPattern", "")
    handler = by_target[stack.attribute("TrainingJobStateLambdaFunction", "Arn")]
    alarm = by_target[stack.ref("AlarmTopic")]

    def matches(pattern: str, event: dict[str, Any]) -> bool:
        # moto's server answers TestEventPattern with nothing: its matcher, called directly.
        return EventPattern.load(pattern).matches_event(event)

    # moto's EventBridge pattern matching: this stack's failed and stopped jobs reach the handler.
    assert matches(handler, _state_change("automlops-dev-abc-a1", "Failed"))
    assert matches(handler, _state_change("automlops-dev-abc-a1", "Stopped"))
    assert not matches(handler, _state_change("automlops-dev-abc-a1", "Completed"))
    assert not matches(handler, _state_change("automlops-staging-abc-a1", "Failed"))
    assert matches(alarm, _state_change("automlops-dev-abc-a1", "Failed"))


def test_alarms_watch_every_dead_letter_queue_and_notify_the_topic(
    provisioned: Provisioned,
) -> None:
    stack, sqs = provisioned.stack, provisioned.client("sqs")
    alarms = provisioned.client("cloudwatch").describe_alarms()["MetricAlarms"]
    declared = {
        stack.resolve(a["Properties"]["AlarmName"])
        for a in stack.of_type("AWS::CloudWatch::Alarm").values()
    }
    # 7 dead-letter queues, failed training jobs, and 3 on alert metrics.
    assert {a["AlarmName"] for a in alarms} == declared and len(declared) == 11
    topic = stack.ref("AlarmTopic")
    assert topic.startswith("arn:aws:sns:")
    watched = set()
    for alarm in alarms:
        assert alarm["AlarmActions"] == [topic]
        if alarm.get("Namespace") == "AWS/SQS":
            (dimension,) = alarm["Dimensions"]
            watched.add(dimension["Value"])
            assert sqs.get_queue_url(QueueName=dimension["Value"])  # a real queue
    dead_letter_queues = {
        stack.names[k]
        for k, q in stack.of_type("AWS::SQS::Queue").items()
        if "RedrivePolicy" not in q["Properties"]
    }
    assert watched == dead_letter_queues
