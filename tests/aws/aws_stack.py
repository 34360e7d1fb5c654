"""The packaged CloudFormation template, read by the tests.

`Stack` resolves the few intrinsic functions the template uses (Ref, Fn::GetAtt, Fn::Sub,
Fn::Join, Fn::If) for a fixed account and region, with the template's names or, for a stack
moto's CloudFormation created (aws_cfn), its physical ids; `allowed` evaluates the function
roles' IAM policies against the calls a stage made. Provisioning is CloudFormation's: aws_cfn.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::StackName": "automlops-dev",
    "AWS::URLSuffix": "amazonaws.com",
}

# What {"Ref": "AWS::NoValue"} resolves to before `resolve` drops the property holding it.
NO_VALUE = object()


class Stack:
    """A packaged template with its resources' names resolved.

    Given `physical` (logical id -> physical id, as CloudFormation reports them), a Ref is the
    physical id and a name its last part: the names a created stack really has (a role
    CloudFormation named `automlops-dev-TrainRole-1A2B...`). Without it, names come from the
    template (a role with no RoleName is named by its logical id).
    """

    def __init__(self, template: dict[str, Any], physical: dict[str, str] | None = None) -> None:
        self.template = template
        self.resources: dict[str, dict[str, Any]] = template["Resources"]
        self.physical = physical or {}
        self.names: dict[str, str] = {}
        for logical, resource in self.resources.items():
            if logical in self.physical:
                # A queue's physical id is its URL, a topic's its ARN: the name ends either.
                self.names[logical] = re.split(r"[/:]", self.physical[logical])[-1]
                continue
            props = resource.get("Properties", {})
            for name_prop in ("BucketName", "QueueName", "FunctionName", "Name"):
                if name_prop in props:
                    self.names[logical] = self.resolve(props[name_prop])
                    break
            else:
                self.names[logical] = logical

    # -- intrinsic functions ---------------------------------------------------------------

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        """Resources of one CloudFormation type, by logical id."""
        return {k: v for k, v in self.resources.items() if v["Type"] == kind}

    def attribute(self, logical: str, attr: str) -> str:
        kind = self.resources[logical]["Type"]
        name = self.names[logical]
        if kind == "AWS::S3::Bucket" and attr == "Arn":
            return f"arn:aws:s3:::{name}"
        if kind == "AWS::SQS::Queue":
            return {"Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}", "QueueName": name}[attr]
        if kind == "AWS::IAM::Role" and attr == "Arn":
            return f"arn:aws:iam::{ACCOUNT}:role/{name}"
        if kind == "AWS::Lambda::Function" and attr == "Arn":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        if kind == "AWS::Events::Rule" and attr == "Arn":
            return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"
        raise KeyError(f"{logical}.{attr}")

    def ref(self, logical: str) -> Any:
        if logical == "AWS::NoValue":
            return NO_VALUE  # dropped by resolve, as CloudFormation drops the property
        if logical in PSEUDO:
            return PSEUDO[logical]
        if logical in self.template.get("Parameters", {}):
            # A stack parameter: its default (the value `serverless package` was given).
            return str(self.template["Parameters"][logical].get("Default", ""))
        if logical in self.physical:
            return self.physical[logical]
        kind = self.resources[logical]["Type"]
        name = self.names[logical]
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        return name

    def resolve(self, value: Any) -> Any:
        """Evaluate Ref / Fn::GetAtt / Fn::Sub / Fn::Join inside `value`."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), *_ = value.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attribute(logical, attr)
            if fn == "Fn::Join":
                sep, parts = arg
                return sep.join(str(self.resolve(p)) for p in parts)
            if fn == "Fn::Sub":
                return re.sub(r"\$\{([^}]+)\}", lambda m: self._sub(m.group(1)), arg)
            if fn == "Fn::If":
                condition, when_true, when_false = arg
                return self.resolve(when_true if self.condition(condition) else when_false)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def condition(self, name: str) -> bool:
        """A template condition, evaluated with the stack parameters' defaults."""
        return self._true(self.template["Conditions"][name])

    def _true(self, expression: dict[str, Any]) -> bool:
        ((fn, arg),) = expression.items()
        if fn == "Fn::Not":
            return not self._true(arg[0])
        if fn == "Fn::Equals":
            return bool(self.resolve(arg[0]) == self.resolve(arg[1]))
        if fn == "Condition":
            return self.condition(arg)
        raise KeyError(fn)

    def _sub(self, name: str) -> str:
        if name in PSEUDO:
            return PSEUDO[name]
        if "." in name:
            logical, attr = name.split(".", 1)
            return self.attribute(logical, attr)
        return self.ref(name)

    # -- what the tests read ---------------------------------------------------------------

    def function_env(self, function: str) -> dict[str, str]:
        """The resolved environment variables of a Lambda function."""
        props = self.resources[function]["Properties"]
        return {k: str(v) for k, v in self.resolve(props["Environment"]["Variables"]).items()}

    def handler_of(self, function: str) -> str:
        """The image command of a function: its handler's dotted path."""
        (command,) = self.resources[function]["Properties"]["ImageConfig"]["Command"]
        return command

    def event_sources(self) -> list[tuple[str, str]]:
        """(queue logical id, function logical id) of every SQS event source mapping."""
        pairs = []
        for mapping in self.of_type("AWS::Lambda::EventSourceMapping").values():
            props = mapping["Properties"]
            queue = props["EventSourceArn"]["Fn::GetAtt"][0]
            function = props["FunctionName"]["Fn::GetAtt"][0]
            pairs.append((queue, function))
        return pairs

    def notifications(self) -> list[tuple[str, str, str, str]]:
        """(bucket logical id, queue logical id, prefix, suffix) of every S3 notification."""
        found = []
        for logical, bucket in self.of_type("AWS::S3::Bucket").items():
            config = bucket["Properties"].get("NotificationConfiguration", {})
            assert set(config) <= {"QueueConfigurations"}, f"{logical}: unexpected targets"
            for queue_config in config.get("QueueConfigurations", []):
                assert queue_config["Event"] == "s3:ObjectCreated:*"
                rules = {
                    r["Name"]: r["Value"]
                    for r in queue_config.get("Filter", {}).get("S3Key", {}).get("Rules", [])
                }
                queue = queue_config["Queue"]["Fn::GetAtt"][0]
                found.append((logical, queue, rules.get("prefix", ""), rules.get("suffix", "")))
        return found

    def role_of(self, function: str) -> str:
        return self.resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]

    def statements(self, role: str) -> list[dict[str, Any]]:
        """The resolved policy statements of a role."""
        out: list[dict[str, Any]] = []
        for policy in self.resources[role]["Properties"].get("Policies", []):
            out.extend(self.resolve(policy["PolicyDocument"]["Statement"]))
        return out


# -- IAM: is a call allowed by a role's statements? ------------------------------------------


@dataclass(frozen=True)
class Call:
    """One AWS API call a stage made, as IAM sees it."""

    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)


def _matches(patterns: str | list[str], value: str) -> bool:
    items = [patterns] if isinstance(patterns, str) else patterns
    return any(fnmatch.fnmatchcase(value, p) for p in items)


def _condition_ok(condition: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        for key, expected in tests.items():
            actual = context.get(key)
            if actual is None:
                return False
            wanted = expected if isinstance(expected, list) else [expected]
            if operator == "StringLike" and not any(fnmatch.fnmatchcase(actual, w) for w in wanted):
                return False
            if operator == "StringEquals" and actual not in wanted:
                return False
    return True


def allowed(statements: list[dict[str, Any]], call: Call) -> bool:
    """True when an Allow statement covers the call (no Deny statements are used)."""
    for statement in statements:
        if statement["Effect"] != "Allow":
            continue
        if not _matches(statement["Action"], call.action):
            continue
        if not _matches(statement["Resource"], call.resource):
            continue
        if _condition_ok(statement.get("Condition", {}), call.context):
            return True
    return False
