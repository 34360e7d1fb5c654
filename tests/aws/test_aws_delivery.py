"""Delivery: the GitHub workflows and their scripts, the bootstrap stack, the images' lock, and
the packaged template's alarms, KMS conditions and trust policies (cheap: parsed JSON/YAML,
git and shell on temporary repositories; no AWS)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_packaging import ROOT, package
from aws_stack import ACCOUNT, Stack
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from automlops.aws.alert_metrics import METRIC_NAMES, namespace
from automlops.usecases.alerts import AlertKind

WORKFLOWS = ROOT / ".github" / "workflows"
SCRIPTS = ROOT / ".github" / "scripts"
DEPLOY = ROOT / "deploy" / "aws"
BIN = Path(sys.executable).parent
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
NO_VALUE = {"Ref": "AWS::NoValue"}


# -- alarms ------------------------------------------------------------------------------------


def _dead_letter_queues(stack: Stack) -> set[str]:
    """Queues' redrive targets and functions' on-failure destinations: where failures wait."""
    redrive = {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in stack.of_type("AWS::SQS::Queue").values()
        if "RedrivePolicy" in q["Properties"]
    }
    on_failure = {
        c["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
        for c in stack.of_type("AWS::Lambda::EventInvokeConfig").values()
        if "OnFailure" in c["Properties"].get("DestinationConfig", {})
    }
    return redrive | on_failure


def test_every_dead_letter_queue_raises_an_alarm_on_its_first_message(stack: Stack) -> None:
    watched: dict[str, dict[str, Any]] = {}
    for alarm in stack.of_type("AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        if props.get("Namespace") != "AWS/SQS":
            continue
        assert props["MetricName"] == "ApproximateNumberOfMessagesVisible"
        (dimension,) = props["Dimensions"]
        assert dimension["Name"] == "QueueName"
        queue, attribute = dimension["Value"]["Fn::GetAtt"]
        assert attribute == "QueueName"
        watched[queue] = props
    dead_letter_queues = _dead_letter_queues(stack)
    assert len(dead_letter_queues) >= 4
    assert set(watched) == dead_letter_queues
    for props in watched.values():
        assert props["ComparisonOperator"] == "GreaterThanThreshold"
        assert props["Threshold"] == 0
        # An empty queue reports nothing at times: that is not an alarm.
        assert props["TreatMissingData"] == "notBreaching"
        assert {"Ref": "AlarmTopic"} in props["AlarmActions"]


def _matches(pattern: Any, event: Any) -> bool:
    """EventBridge's exact-value matching: a list names the allowed values, a dict nests."""
    if isinstance(pattern, list):
        return event in pattern
    return isinstance(event, dict) and all(
        key in event and _matches(sub, event[key]) for key, sub in pattern.items()
    )


def _training_event(status: str, stack_tag: str) -> dict[str, Any]:
    return {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Training Job State Change",
        "detail": {
            "TrainingJobName": "run-1",
            "TrainingJobStatus": status,
            "FailureReason": "AlgorithmError: out of memory",
            "Tags": {"automlops:stack": stack_tag, "automlops:run": "run-1"},
        },
    }


def test_drift_quality_drops_and_failed_runs_alarm_over_every_dataset(stack: Stack) -> None:
    prefix = stack.function_env("MonitorLambdaFunction")["AUTOMLOPS_NAME_PREFIX"]
    queried = {}
    for alarm in stack.of_type("AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        if "Metrics" not in props:
            continue
        (query,) = props["Metrics"]
        match = re.fullmatch(r'SELECT SUM\((\w+)\) FROM "([^"]+)"', query["Expression"])
        assert match, query["Expression"]
        # The namespace the functions' alerts are written under, every dataset summed.
        assert stack.resolve(match.group(2)) == namespace(prefix)
        assert query["ReturnData"] is True and query["Period"] == 300
        assert props["Threshold"] == 0 and props["ComparisonOperator"] == "GreaterThanThreshold"
        assert props["TreatMissingData"] == "notBreaching"
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        queried[match.group(1)] = props
    # The metrics that mean trouble; a retrain and a gate decision are news, not trouble.
    assert set(queried) == {
        METRIC_NAMES[AlertKind.drift],
        METRIC_NAMES[AlertKind.quality],
        METRIC_NAMES[AlertKind.run_failed],
    }


def test_failed_training_jobs_of_this_stack_alarm(stack: Stack) -> None:
    # The rule whose target is the alarm topic (another one sends the event to its handler).
    (rule_id,) = [
        name
        for name, r in stack.of_type("AWS::Events::Rule").items()
        if {"Ref": "AlarmTopic"} in [t["Arn"] for t in r["Properties"]["Targets"]]
    ]
    rule = stack.resources[rule_id]["Properties"]
    pattern = rule["EventPattern"]
    # The tag the train function must put on its jobs: the IAM condition on CreateTrainingJob.
    (launch,) = [
        s
        for s in stack.statements(stack.role_of("TrainLambdaFunction"))
        if "sagemaker:CreateTrainingJob" in s["Action"]
    ]
    tag = launch["Condition"]["StringEquals"]["aws:RequestTag/automlops:stack"]
    assert tag == stack.function_env("TrainLambdaFunction")["AUTOMLOPS_NAME_PREFIX"]

    assert _matches(pattern, _training_event("Failed", tag))
    assert not _matches(pattern, _training_event("Completed", tag))
    assert not _matches(pattern, _training_event("InProgress", tag))
    assert not _matches(pattern, _training_event("Failed", "automlops-prod"))

    assert rule["Targets"] == [{"Id": "alarm-topic", "Arn": {"Ref": "AlarmTopic"}}]
    (alarm,) = [
        a["Properties"]
        for a in stack.of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "AWS/Events"
    ]
    assert alarm["MetricName"] == "TriggeredRules"
    assert alarm["Dimensions"] == [{"Name": "RuleName", "Value": {"Ref": rule_id}}]
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
    # EventBridge may publish to the topic only for this rule.
    (policy,) = stack.of_type("AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (events,) = [s for s in statements if s["Principal"] == {"Service": "events.amazonaws.com"}]
    assert events["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": [rule_id, "Arn"]}


# -- KMS ---------------------------------------------------------------------------------------


def _choose(value: Any, use_kms: bool) -> Any:
    """The template with condition UseKmsKey decided: Fn::If resolved, AWS::NoValue dropped."""
    if isinstance(value, list):
        return [_choose(v, use_kms) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::If"}:
        condition, when_true, when_false = value["Fn::If"]
        assert condition == "UseKmsKey", condition
        return _choose(when_true if use_kms else when_false, use_kms)
    return {k: _choose(v, use_kms) for k, v in value.items() if _choose(v, use_kms) != NO_VALUE}


def test_kms_condition_is_set_by_the_key_parameter(template: dict[str, Any]) -> None:
    assert template["Conditions"]["UseKmsKey"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "KmsKeyArn"}, ""]}]
    }
    parameter = template["Parameters"]["KmsKeyArn"]
    assert parameter["Default"] == ""  # dev packaged without --param kmsKey
    assert not Stack(template).condition("UseKmsKey")
    allowed = re.compile(parameter["AllowedPattern"])
    assert allowed.match(KEY_ARN) and allowed.match("")
    assert not allowed.match("alias/aws/s3") and not allowed.match("1234abcd")


@pytest.mark.parametrize("use_kms", [True, False], ids=["customer-key", "service-keys"])
def test_buckets_and_queues_use_the_key_exactly_when_given(stack: Stack, use_kms: bool) -> None:
    key = {"Ref": "KmsKeyArn"}
    buckets = {k: v for k, v in stack.of_type("AWS::S3::Bucket").items() if "Serverless" not in k}
    assert len(buckets) == 4
    for name, bucket in buckets.items():
        props = _choose(bucket["Properties"], use_kms)
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        default = rule["ServerSideEncryptionByDefault"]
        if use_kms:
            assert default == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}, name
            assert rule["BucketKeyEnabled"] is True, name
        else:
            assert default == {"SSEAlgorithm": "AES256"}, name
    queues = stack.of_type("AWS::SQS::Queue")
    assert len(queues) >= 8
    for name, queue in queues.items():
        props = _choose(queue["Properties"], use_kms)
        if use_kms:
            assert props["KmsMasterKeyId"] == key and "SqsManagedSseEnabled" not in props, name
        else:
            assert props["SqsManagedSseEnabled"] is True and "KmsMasterKeyId" not in props, name


def test_every_role_may_use_the_key_when_there_is_one(stack: Stack) -> None:
    (policy,) = stack.of_type("AWS::IAM::Policy").values()
    assert policy["Condition"] == "UseKmsKey"
    roles = {r["Ref"] for r in policy["Properties"]["Roles"]}
    assert roles == set(stack.of_type("AWS::IAM::Role"))
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert set(statement["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey"}
    assert statement["Resource"] == {"Ref": "KmsKeyArn"}


def test_the_kms_param_reaches_the_stack(tmp_path: Path) -> None:
    result = package("staging", tmp_path / "staging", f"kmsKey={KEY_ARN}")
    assert result.returncode == 0, result.stdout + result.stderr
    packaged = tmp_path / "staging" / "cloudformation-template-update-stack.json"
    parameters = json.loads(packaged.read_text())["Parameters"]
    # The defaults carry the values (a deployment passes no stack parameters).
    assert parameters["KmsKeyArn"]["Default"] == KEY_ARN
    assert parameters["AlarmEmail"]["Default"] == ""
    assert Stack(json.loads(packaged.read_text())).condition("UseKmsKey")


def test_sagemaker_role_is_assumed_only_for_this_account(stack: Stack) -> None:
    trust = stack.resources["SageMakerExecutionRole"]["Properties"]["AssumeRolePolicyDocument"]
    (statement,) = stack.resolve(trust["Statement"])
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


# -- bootstrap stack ---------------------------------------------------------------------------


def test_bootstrap_trusts_only_the_main_branch_of_the_repository() -> None:
    # Long-form intrinsic functions only, so plain YAML reads it.
    template = yaml.safe_load((DEPLOY / "bootstrap.yml").read_text())
    result = subprocess.run(
        [str(BIN / "cfn-lint"), "--format", "json", "--", str(DEPLOY / "bootstrap.yml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(result.stdout or "[]") == []
    resources = template["Resources"]
    (statement,) = resources["DeployRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    claims = statement["Condition"]["StringEquals"]
    assert claims["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    subject = claims["token.actions.githubusercontent.com:sub"]["Fn::Sub"]
    assert subject == "repo:${GitHubRepository}:ref:refs/heads/${Branch}"
    assert "StringLike" not in statement["Condition"]  # no wildcard subjects
    repositories = {
        r["Properties"]["RepositoryName"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::ECR::Repository"
    }
    assert set(repositories) == {"automlops-lambda", "automlops-sagemaker"}
    assert all(r["ImageTagMutability"] == "IMMUTABLE" for r in repositories.values())
    assert resources["GitHubOidcProvider"]["Properties"]["ClientIdList"] == ["sts.amazonaws.com"]


# -- workflows ---------------------------------------------------------------------------------


def _workflows() -> dict[str, dict[Any, Any]]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(WORKFLOWS.glob("*.yml"))}


def _triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True


def test_workflows_are_live_pinned_and_keyless() -> None:
    workflows = _workflows()
    assert set(workflows) == {"deploy", "remove", "upload-data"}
    assert not (DEPLOY / "workflows").exists()
    for name, workflow in workflows.items():
        assert workflow["permissions"] == {"id-token": "write", "contents": "read"}, name
        text = (WORKFLOWS / f"{name}.yml").read_text()
        assert "secrets." not in text, name  # no stored AWS keys: OIDC only
        for job in workflow["jobs"].values():
            steps = job["steps"]
            for step in steps:
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step
            runs = [s.get("run", "") for s in steps]
            assert ".github/scripts/aws-credentials.sh" in runs, name
    assert set(_triggers(workflows["deploy"])) == {"push", "workflow_dispatch"}
    assert _triggers(workflows["deploy"])["push"]["branches"] == ["main"]
    assert set(_triggers(workflows["remove"])) == {"workflow_dispatch"}
    assert _triggers(workflows["upload-data"])["push"]["paths"] == ["datasets/**"]
    deploy_steps = json.dumps(workflows["deploy"])
    assert "serverless deploy" in deploy_steps
    assert "lambdaImage=" in deploy_steps and "sagemakerImage=" in deploy_steps


def test_actionlint_passes() -> None:
    result = subprocess.run(
        [str(BIN / "actionlint"), *map(str, sorted(WORKFLOWS.glob("*.yml")))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- the upload-data scripts on a real git history ---------------------------------------------


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _commit(repo: Path, files: dict[str, str | None], message: str) -> str:
    for name, content in files.items():
        path = repo / name
        if content is None:
            _git(repo, "rm", "-q", name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        _git(repo, "add", name)
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A repository with three pushes' worth of dataset changes."""
    repo = tmp_path_factory.mktemp("repo")
    _git(repo, "init", "-q", "-b", "main")
    first = _commit(
        repo,
        {"datasets/a/manifest.json": '{"dataset": "a"}', "datasets/a/x.csv": "x\n1\n"},
        "first",
    )
    second = _commit(repo, {"datasets/a/my data.csv": "y\n2\n", "README.md": "r"}, "second")
    third = _commit(
        repo,
        {"datasets/a/x.csv": "x\n3\n", "datasets/a/manifest.json": None, "datasets/b/z.csv": "z"},
        "third",
    )
    return repo, [first, second, third]


def _changed(repo: Path, *args: str) -> tuple[list[str], str]:
    done = subprocess.run(
        [str(SCRIPTS / "changed-datasets.sh"), *args],
        cwd=repo,
        capture_output=True,
        check=True,
    )
    return sorted(done.stdout.decode().split("\0")[:-1]), done.stderr.decode()


def test_a_push_uploads_its_whole_range_with_spaces_intact(
    history: tuple[Path, list[str]],
) -> None:
    repo, (first, _, third) = history
    # Two commits pushed at once: both count, not only the last; deletions are not uploads.
    files, _ = _changed(repo, first, third)
    assert files == ["datasets/a/my data.csv", "datasets/a/x.csv", "datasets/b/z.csv"]


def test_a_new_branch_or_a_lost_base_uploads_everything(history: tuple[Path, list[str]]) -> None:
    repo, (*_, third) = history
    everything = ["datasets/a/my data.csv", "datasets/a/x.csv", "datasets/b/z.csv"]
    assert _changed(repo, "0" * 40, third)[0] == everything
    files, note = _changed(repo, "1" * 40, third)  # a force push's base not in the clone
    assert files == everything and "not available" in note
    assert _changed(repo)[0] == everything  # by hand


def test_upload_sends_manifests_first_and_skips_other_files(tmp_path: Path) -> None:
    # Stand-ins for the two commands the script drives, recording their arguments.
    log = tmp_path / "calls"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for command, answer in (("aws", "data-bucket"), ("automlops", "")):
        script = fake_bin / command
        script.write_text(
            "#!/usr/bin/env bash\n"
            f'printf "%s\\n" "{command} $*" >> "{log}"\n'
            f'[ "$1" = ssm ] && echo {answer}\n'
            "exit 0\n"
        )
        script.chmod(0o755)
    repo = tmp_path / "repo"
    (repo / "datasets" / "a").mkdir(parents=True)
    (repo / "datasets" / "a" / "manifest.json").write_text('{"dataset": "a"}')
    paths = ["datasets/a/my data.csv", "datasets/a/manifest.json", "datasets/notes.txt"]
    env = {**os.environ, "PATH": f"{fake_bin}:{BIN}:{os.environ['PATH']}"}
    subprocess.run(
        [str(SCRIPTS / "upload-datasets.sh"), "dev"],
        cwd=repo,
        env=env,
        input="\0".join(paths) + "\0",
        text=True,
        capture_output=True,
        check=True,
    )
    calls = log.read_text().splitlines()
    assert calls == [
        "aws ssm get-parameter --name /automlops/dev/buckets/data "
        "--query Parameter.Value --output text",
        "aws s3 cp datasets/a/manifest.json s3://data-bucket/data/a/manifest.json",
        "automlops aws upload datasets/a/my data.csv --dataset a --stage dev",
    ]
    # A manifest naming another dataset stops the upload before anything is stored.
    (repo / "datasets" / "a" / "manifest.json").write_text('{"dataset": "b"}')
    log.unlink()
    refused = subprocess.run(
        [str(SCRIPTS / "upload-datasets.sh"), "dev"],
        cwd=repo,
        env=env,
        input="datasets/a/manifest.json\0",
        text=True,
        capture_output=True,
    )
    assert refused.returncode != 0 and "dataset must be 'a'" in refused.stderr
    assert not any("s3 cp" in line for line in log.read_text().splitlines())


# -- images ------------------------------------------------------------------------------------


def test_images_install_the_lock_with_cpu_only_xgboost() -> None:
    lock = {}
    for line in (DEPLOY / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            lock[canonicalize_name(name)] = version
    assert "xgboost" not in lock and "nvidia-nccl-cu12" not in lock
    # Every runtime requirement of the package is pinned, within its declared range.
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        pinned = lock["xgboost-cpu" if name == "xgboost" else name]
        assert requirement.specifier.contains(pinned), (line, pinned)
    for dockerfile in ("lambda.Dockerfile", "sagemaker.Dockerfile"):
        text = (DEPLOY / dockerfile).read_text()
        assert "requirements.lock" in text and "--no-deps" in text, dockerfile
        assert "deploy/aws/requirements.lock" in (DEPLOY / f"{dockerfile}.dockerignore").read_text()
