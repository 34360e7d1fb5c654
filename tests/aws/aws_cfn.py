"""The packaged CloudFormation template, created on moto by moto's own CloudFormation.

`create_stack` sends the packaged template to moto's `CreateStack`, so what the tests provision
is the template itself: queues, buckets, functions, roles, event source mappings, rules and
parameters are made by moto from their declarations, with moto resolving Ref, Fn::GetAtt,
Fn::Sub, Fn::If and the conditions. What moto's CloudFormation does not do is in one table,
`MOTO_GAPS`, each row with the reason and what the tests do instead:

- `apply`: a resource moto's CloudFormation cannot create is taken out of the template before
  `CreateStack` and made afterwards with its service's API, from its declaration resolved with
  the stack's physical ids; a property moto's CloudFormation ignores is set the same way.
- `strip`: taken out of the template and not made at all (the row says why).
- `play`: moto would do it by means the tests cannot use; a test stand-in does it.
- `none`: not emulated; what the tests check instead is said in the row.

`test_aws_cfn.py` checks that the table is exact: every type in the template that moto cannot
create has a row, and every row's resource type is still in the template.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aws_stack import Stack

STACK_NAME = "automlops-dev"

Applier = Callable[["Provisioned", str, dict[str, Any]], None]


@dataclass(frozen=True)
class Gap:
    """Something the template declares that moto's CloudFormation does not do."""

    subject: str  # a resource type, or "Type.Property"
    reason: str
    remedy: Literal["apply", "strip", "play", "none"]
    instead: str
    applier: Applier | None = field(default=None, compare=False, repr=False)


@dataclass
class Provisioned:
    """A stack moto's CloudFormation created from the packaged template."""

    session: Any
    endpoint: str
    stack: Stack  # the template, resolved with the stack's physical ids
    created: set[str]  # logical ids moto's CloudFormation created
    applied: set[str]  # logical ids made by `MOTO_GAPS` appliers instead
    mappings: list[dict[str, Any]]  # the event source mappings as CloudFormation created them

    def client(self, service: str) -> Any:
        """A client of moto's server."""
        return _client(self.session, self.endpoint, service)

    def function_env(self, function: str) -> dict[str, str]:
        """The environment of a created function, as Lambda (moto) holds it."""
        name = self.stack.names[function]
        config = self.client("lambda").get_function_configuration(FunctionName=name)
        return dict(config["Environment"]["Variables"])


_CLIENTS: dict[tuple[int, str, str], Any] = {}


def _client(session: Any, endpoint: str, service: str) -> Any:
    # Made once per session and server (a boto3 client takes ~40 ms to make; a test's stack
    # needs seven), then shared by every test's stack: clients hold no state of their own.
    key = (id(session), endpoint, service)
    if key not in _CLIENTS:
        _CLIENTS[key] = session.client(service, endpoint_url=endpoint)
    return _CLIENTS[key]


# -- appliers: the service API calls CloudFormation would have made ----------------------------


def _alarm(p: Provisioned, _: str, props: dict[str, Any]) -> None:
    # An alarm's CloudFormation properties are PutMetricAlarm's parameters, name for name.
    p.client("cloudwatch").put_metric_alarm(**props)


def _queue_policy(p: Provisioned, _: str, props: dict[str, Any]) -> None:
    for url in props["Queues"]:
        p.client("sqs").set_queue_attributes(
            QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
        )


def _topic_policy(p: Provisioned, _: str, props: dict[str, Any]) -> None:
    for arn in props["Topics"]:
        p.client("sns").set_topic_attributes(
            TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps(props["PolicyDocument"])
        )


def _event_invoke_config(p: Provisioned, _: str, props: dict[str, Any]) -> None:
    p.client("lambda").put_function_event_invoke_config(
        FunctionName=props["FunctionName"],
        Qualifier=props["Qualifier"],
        MaximumRetryAttempts=props["MaximumRetryAttempts"],
    )


def _versioning(p: Provisioned, bucket: str, props: dict[str, Any]) -> None:
    p.client("s3").put_bucket_versioning(
        Bucket=p.stack.names[bucket], VersioningConfiguration=props["VersioningConfiguration"]
    )


def _lifecycle(p: Provisioned, bucket: str, props: dict[str, Any]) -> None:
    # CloudFormation's rule spells ID "Id" and may leave the filter out (the whole bucket).
    rules = [
        {"ID": r["Id"], "Filter": {"Prefix": r.get("Prefix", "")}, **_without(r, "Id", "Prefix")}
        for r in props["LifecycleConfiguration"]["Rules"]
    ]
    p.client("s3").put_bucket_lifecycle_configuration(
        Bucket=p.stack.names[bucket], LifecycleConfiguration={"Rules": rules}
    )


def _public_access_block(p: Provisioned, bucket: str, props: dict[str, Any]) -> None:
    p.client("s3").put_public_access_block(
        Bucket=p.stack.names[bucket],
        PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"],
    )


def _ownership(p: Provisioned, bucket: str, props: dict[str, Any]) -> None:
    p.client("s3").put_bucket_ownership_controls(
        Bucket=p.stack.names[bucket], OwnershipControls=props["OwnershipControls"]
    )


def _notifications(p: Provisioned, bucket: str, props: dict[str, Any]) -> None:
    # CloudFormation's shape (Event, Queue, Filter.S3Key.Rules) in the API's (Events, QueueArn,
    # Filter.Key.FilterRules). S3 sends each queue a test event when this is set.
    configs = props["NotificationConfiguration"]
    assert set(configs) == {"QueueConfigurations"}, "only queue notifications are applied"
    p.client("s3").put_bucket_notification_configuration(
        Bucket=p.stack.names[bucket],
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": c["Queue"],
                    "Events": [c["Event"]],
                    "Filter": {"Key": {"FilterRules": c["Filter"]["S3Key"]["Rules"]}},
                }
                for c in configs["QueueConfigurations"]
            ]
        },
    )


def _without(mapping: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k not in names}


# -- the table ----------------------------------------------------------------------------------

_CREATES_NOTHING = "moto 5.2's CloudFormation has no such resource type (it skips it, warning)"
_IGNORED = "moto 5.2's CloudFormation creates the bucket but ignores this property"

MOTO_GAPS: tuple[Gap, ...] = (
    Gap(
        "AWS::CloudWatch::Alarm",
        _CREATES_NOTHING,
        "apply",
        "PutMetricAlarm; moto computes no SQS or EventBridge metrics, so no alarm ever fires",
        _alarm,
    ),
    Gap(
        "AWS::S3::BucketPolicy",
        "moto's CloudFormation has no such type, and moto's S3 does enforce a bucket policy's "
        "Deny: the TLS-only statement (aws:SecureTransport false) would refuse every call of "
        "the tests, which speak plain HTTP to moto's server",
        "strip",
        "not created; the policies are checked on the template (test_aws_deployment)",
    ),
    Gap(
        "AWS::SQS::QueuePolicy",
        _CREATES_NOTHING,
        "apply",
        "SetQueueAttributes Policy; moto delivers S3 notifications whatever the policy says",
        _queue_policy,
    ),
    Gap(
        "AWS::SNS::TopicPolicy",
        _CREATES_NOTHING,
        "apply",
        "SetTopicAttributes Policy; stored, not enforced",
        _topic_policy,
    ),
    Gap(
        "AWS::SNS::Subscription",
        "moto 5.2's CloudFormation has no such type; the e-mail subscription exists only when "
        "the alarmEmail parameter is given, which the tests' stage does not",
        "strip",
        "not created (its condition is false in the tests' stage)",
    ),
    Gap(
        "AWS::Lambda::EventInvokeConfig",
        _CREATES_NOTHING,
        "apply",
        "PutFunctionEventInvokeConfig (retries of the scheduled and EventBridge invocations)",
        _event_invoke_config,
    ),
    Gap(
        "AWS::S3::Bucket.NotificationConfiguration",
        _IGNORED,
        "apply",
        "PutBucketNotificationConfiguration; moto's S3 then sends the matching keys to SQS",
        _notifications,
    ),
    Gap(
        "AWS::S3::Bucket.VersioningConfiguration",
        _IGNORED,
        "apply",
        "PutBucketVersioning",
        _versioning,
    ),
    Gap(
        "AWS::S3::Bucket.LifecycleConfiguration",
        _IGNORED,
        "apply",
        "PutBucketLifecycleConfiguration; moto expires nothing",
        _lifecycle,
    ),
    Gap(
        "AWS::S3::Bucket.PublicAccessBlockConfiguration",
        _IGNORED,
        "apply",
        "PutPublicAccessBlock",
        _public_access_block,
    ),
    Gap(
        "AWS::S3::Bucket.OwnershipControls",
        _IGNORED,
        "apply",
        "PutBucketOwnershipControls",
        _ownership,
    ),
    Gap(
        "AWS::Lambda::EventSourceMapping",
        "moto's mapping invokes the function itself, in a Docker container of its image, on "
        "every SendMessage",
        "play",
        "created by CloudFormation as declared (checked), then disabled; aws_invoker."
        "LambdaInvoker polls the queue and calls the handler in-process with Lambda's SQS event",
    ),
    Gap(
        "AWS::Lambda::Function.PackageType",
        "moto 5.2's CloudFormation creates every function as a zip function: PackageType, "
        "ImageConfig (the handler command) and EphemeralStorage are dropped, and moto runs none",
        "none",
        "the image command, memory, timeout and storage are checked on the template "
        "(test_aws_deployment); the handler the command names runs in-process",
    ),
    Gap(
        "AWS::Events::Rule",
        "moto matches events against the rule but would invoke a Lambda target in Docker; "
        "moto's SageMaker emits no training-job state changes and runs no schedule",
        "none",
        "the rules' patterns are matched by moto's EventBridge pattern engine; the handlers get "
        "EventBridge's event shape directly (test_aws_hosting, test_aws_monitoring)",
    ),
)


def _gap_kinds() -> tuple[set[str], dict[str, Gap]]:
    stripped = {
        g.subject for g in MOTO_GAPS if g.remedy in ("apply", "strip") and "." not in g.subject
    }
    properties = {g.subject: g for g in MOTO_GAPS if g.remedy == "apply" and "." in g.subject}
    return stripped, properties


def _mentions(value: Any, logical: set[str]) -> set[str]:
    """The logical ids in `logical` that `value` refers to (Ref, Fn::GetAtt, Fn::Sub)."""
    found: set[str] = set()
    if isinstance(value, list):
        for v in value:
            found |= _mentions(v, logical)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and v in logical:
                found.add(v)
            elif k == "Fn::GetAtt":
                target = v[0] if isinstance(v, list) else v.split(".", 1)[0]
                found |= {target} & logical
            elif k == "Fn::Sub" and isinstance(v, str):
                found |= {x for x in logical if "${" + x in v}
            else:
                found |= _mentions(v, logical)
    return found


def create_stack(template: dict[str, Any], session: Any, endpoint: str) -> Provisioned:
    """Create the packaged template on moto with moto's CloudFormation, then close its gaps."""
    stripped_types, property_gaps = _gap_kinds()
    conditions = Stack(template)
    resources = template["Resources"]
    stripped = {k for k, r in resources.items() if r["Type"] in stripped_types}
    kept = {k: dict(r) for k, r in resources.items() if k not in stripped}
    for logical, resource in kept.items():
        # Nothing moto creates may need what it cannot: only an ordering (DependsOn) may name it.
        needs = _mentions(resource.get("Properties", {}), stripped)
        assert not needs, f"{logical} refers to {needs}, which moto's CloudFormation cannot create"
        if "DependsOn" in resource:
            depends = resource["DependsOn"]
            depends = [depends] if isinstance(depends, str) else depends
            resource["DependsOn"] = [d for d in depends if d not in stripped]
    body = {**template, "Resources": kept}

    cfn = _client(session, endpoint, "cloudformation")
    cfn.create_stack(
        StackName=STACK_NAME,
        TemplateBody=json.dumps(body),
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    )
    (described,) = cfn.describe_stacks(StackName=STACK_NAME)["Stacks"]
    assert described["StackStatus"] == "CREATE_COMPLETE", described
    summaries = cfn.list_stack_resources(StackName=STACK_NAME)["StackResourceSummaries"]
    # (moto 5.2 also lists a nameless summary per resource whose condition is false: skipped.)
    physical = {
        s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries if s["LogicalResourceId"]
    }
    stack = Stack(template, physical)

    provisioned = Provisioned(session, endpoint, stack, set(physical), set(), [])
    lam = provisioned.client("lambda")
    provisioned.mappings = lam.list_event_source_mappings()["EventSourceMappings"]
    for mapping in provisioned.mappings:
        # Before any message arrives (S3's test events come with the notifications below).
        lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)

    appliers = {g.subject: g.applier for g in MOTO_GAPS if g.applier is not None}
    for logical in sorted(stripped):
        resource = resources[logical]
        condition = resource.get("Condition")
        applier = appliers.get(resource["Type"])
        if applier is None or (condition is not None and not conditions.condition(condition)):
            continue
        applier(provisioned, logical, stack.resolve(resource["Properties"]))
        provisioned.applied.add(logical)
    for logical, resource in resources.items():
        if logical not in physical:
            continue
        props = resource.get("Properties", {})
        for subject, gap in property_gaps.items():
            kind, prop = subject.split(".", 1)
            if resource["Type"] == kind and prop in props and gap.applier is not None:
                resolved = stack.resolve(props)
                gap.applier(provisioned, logical, resolved)
    return provisioned
