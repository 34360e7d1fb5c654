"""Stand-ins for what AWS itself does around the handlers, small and explicit.

- `LambdaInvoker` plays Lambda's SQS event source mapping: long-polls each queue the template
  maps to a function, calls the function's handler with the exact Lambda SQS event, deletes the
  messages not reported in `batchItemFailures`.
- `LocalSageMakerRuntime` plays a SageMaker endpoint: moto records endpoints but runs no
  container, so for `InvokeEndpoint` it unpacks the ModelDataUrl of the model the endpoint runs
  now from (moto) S3 as SageMaker would into /opt/ml/model, serves it with the project's
  SageMaker-contract app on a loopback port and POSTs /invocations. Everything else
  (CreateModel, CreateEndpointConfig, CreateEndpoint, DescribeEndpoint, deletes) goes to moto.
- `emulate_update_endpoint` plays UpdateEndpoint, which moto (5.2) does not implement: the
  endpoint is switched to the new config in moto's own state, as SageMaker does once the new
  config is in service.
- `CallRecorder` notes every AWS call a function makes, as IAM action + resource, so the tests
  can check the function's role allows it.
"""

from __future__ import annotations

import importlib
import io
import json
import tarfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aws_stack import ACCOUNT, REGION, Call, Stack
from botocore.exceptions import ClientError
from moto.sagemaker.models import sagemaker_backends

from automlops.local.model_host import EmbeddedServer
from automlops.serving.sagemaker import CUSTOM_ATTRIBUTES_HEADER, create_sagemaker_app


@dataclass
class FakeContext:
    """The attributes of a Lambda context object that powertools reads."""

    function_name: str
    memory_limit_in_mb: int = 3008
    function_version: str = "$LATEST"

    def __post_init__(self) -> None:
        self.invoked_function_arn = (
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"
        )
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


class CallRecorder:
    """Hooks boto3 clients; records calls per function as IAM (action, resource, context)."""

    def __init__(self) -> None:
        self.function = "test"  # calls made by the test itself, outside any handler
        self.calls: dict[str, list[Call]] = defaultdict(list)

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build", self._hook)

    def record(self, call: Call) -> None:
        self.calls[self.function].append(call)

    def _hook(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        for call in _iam_calls(service, model.name, params):
            self.record(call)


def _iam_calls(service: str, operation: str, p: dict[str, Any]) -> list[Call]:
    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}"
    if service == "s3":
        if operation == "ListObjectsV2":
            return [
                Call(
                    "s3:ListBucket",
                    f"arn:aws:s3:::{p['Bucket']}",
                    {"s3:prefix": p.get("Prefix", "")},
                )
            ]
        action = {"HeadObject": "GetObject"}.get(operation, operation)
        calls = [Call(f"s3:{action}", f"arn:aws:s3:::{p['Bucket']}/{p['Key']}")]
        if operation == "HeadObject":
            # S3's rule: a HEAD of a missing object answers 404 only to a caller allowed
            # s3:ListBucket on the bucket (else 403), and a HEAD carries no s3:prefix.
            calls.append(Call("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}"))
        return calls
    if service == "sqs":
        name = p.get("QueueName") or p["QueueUrl"].rsplit("/", 1)[-1]
        return [Call(f"sqs:{operation}", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")]
    if service == "sagemaker" and operation.startswith("List"):
        return [Call(f"sagemaker:{operation}", "*")]  # list calls take no resource ARN
    if service == "sagemaker":
        kinds = {
            "Model": ("model", "ModelName"),
            "EndpointConfig": ("endpoint-config", "EndpointConfigName"),
            "Endpoint": ("endpoint", "EndpointName"),
            "TrainingJob": ("training-job", "TrainingJobName"),
            "TransformJob": ("transform-job", "TransformJobName"),
        }
        kind = next(k for k in sorted(kinds, key=len, reverse=True) if operation.endswith(k))
        prefix, name_param = kinds[kind]
        resource = arn.format("sagemaker", f"{prefix}/{p[name_param].lower()}")
        tags = {f"aws:RequestTag/{t['Key']}": t["Value"] for t in p.get("Tags", [])}
        calls = [Call(f"sagemaker:{operation}", resource, tags)]
        if p.get("Tags"):
            calls.append(Call("sagemaker:AddTags", resource, tags))
        role = p.get("ExecutionRoleArn") or p.get("RoleArn")
        if role:
            calls.append(
                Call("iam:PassRole", role, {"iam:PassedToService": "sagemaker.amazonaws.com"})
            )
        return calls
    return [Call(f"{service}:{operation}", "*")]


class LocalSageMakerRuntime:
    """A `sagemaker-runtime` client whose endpoints are the contract app on loopback ports."""

    def __init__(self, sagemaker: Any, s3: Any, workdir: Path, recorder: CallRecorder) -> None:
        self.sagemaker = sagemaker
        self.s3 = s3
        self.workdir = workdir
        self.recorder = recorder
        self.servers: dict[str, EmbeddedServer] = {}  # by model name: endpoints switch models
        self.client = httpx.Client(timeout=60)

    def invoke_endpoint(
        self,
        *,
        EndpointName: str,
        Body: bytes,
        ContentType: str,
        Accept: str,
        CustomAttributes: str | None = None,
    ) -> dict[str, Any]:
        self.recorder.record(
            Call(
                "sagemaker:InvokeEndpoint",
                f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{EndpointName.lower()}",
            )
        )
        server = self._server(EndpointName)
        response = self.client.post(
            f"{server.url}/invocations",
            content=Body,
            headers={
                "content-type": ContentType,
                "accept": Accept,
                # SageMaker forwards CustomAttributes to the container verbatim.
                **({CUSTOM_ATTRIBUTES_HEADER: CustomAttributes} if CustomAttributes else {}),
            },
        )
        if response.status_code >= 400:
            # What the real runtime API answers when the container says no.
            raise ClientError(
                {
                    "Error": {"Code": "ModelError", "Message": response.text},
                    "OriginalStatusCode": response.status_code,
                },
                "InvokeEndpoint",
            )
        return {
            "Body": io.BytesIO(response.content),
            "ContentType": response.headers["content-type"],
        }

    def ping(self, endpoint: str) -> int:
        return self.client.get(f"{self._server(endpoint).url}/ping").status_code

    def _server(self, endpoint: str) -> EmbeddedServer:
        """The container serving the model `endpoint` runs now (started on first use)."""
        try:
            described = self.sagemaker.describe_endpoint(EndpointName=endpoint)
        except ClientError as exc:
            # What the runtime API answers for an endpoint that does not exist.
            raise ClientError(
                {"Error": {"Code": "ValidationError", "Message": str(exc)}}, "InvokeEndpoint"
            ) from None
        assert described["EndpointStatus"] == "InService"
        config = self.sagemaker.describe_endpoint_config(
            EndpointConfigName=described["EndpointConfigName"]
        )
        (variant,) = config["ProductionVariants"]
        model = variant["ModelName"]
        return self.servers.get(model) or self._start(model)

    def _start(self, model: str) -> EmbeddedServer:
        container = self.sagemaker.describe_model(ModelName=model)["PrimaryContainer"]
        bucket, key = container["ModelDataUrl"].removeprefix("s3://").split("/", 1)
        model_dir = self.workdir / model / "opt" / "ml" / "model"
        model_dir.mkdir(parents=True)
        data = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(model_dir, filter="data")
        version = container["Environment"]["AUTOMLOPS_MODEL_VERSION"]
        server = EmbeddedServer(create_sagemaker_app(model_dir, version=version))
        server.start()
        self.servers[model] = server
        return server

    def close(self) -> None:
        self.client.close()
        for server in self.servers.values():
            server.stop()


@dataclass
class _Answered:
    """The HTTP response botocore sees for a call a `before-call` hook answered."""

    status_code: int = 200
    headers: dict[str, str] | None = None


def _update_endpoint(params: dict[str, Any], **_: Any) -> tuple[_Answered, dict[str, Any]]:
    body = json.loads(params["body"])
    backend = sagemaker_backends[ACCOUNT][REGION]
    endpoint = backend.endpoints.get(body["EndpointName"])
    if endpoint is None:
        raise ClientError(
            {"Error": {"Code": "ValidationException", "Message": "Could not find endpoint"}},
            "UpdateEndpoint",
        )
    config = backend.describe_endpoint_config(body["EndpointConfigName"])
    endpoint.endpoint_config_name = body["EndpointConfigName"]
    endpoint.production_variants = config["ProductionVariants"]
    return _Answered(headers={}), {"EndpointArn": endpoint.arn}


def emulate_update_endpoint(client: Any) -> None:
    """Answer a SageMaker client's UpdateEndpoint calls in moto's state (see the module)."""
    client.meta.events.register("before-call.sagemaker.UpdateEndpoint", _update_endpoint)


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def load_handler(dotted: str) -> Handler:
    """Import `package.module.function`, as the Lambda runtime does with the image command."""
    module, name = dotted.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


class LambdaInvoker:
    """Lambda's SQS event source mappings, as declared in the template, run in this process."""

    def __init__(self, stack: Stack, sqs: Any, recorder: CallRecorder) -> None:
        self.sqs = sqs
        self.recorder = recorder
        self.sources: list[tuple[str, str, str, Handler]] = []
        for queue, function in stack.event_sources():
            name = stack.names[queue]
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            self.sources.append((name, url, function, load_handler(stack.handler_of(function))))
        self.invocations: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def _lambda_event(self, queue: str, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "Records": [
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": message.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": message["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
                    "awsRegion": REGION,
                }
            ]
        }

    def poll_once(self, wait_s: int = 1) -> int:
        """One long-poll round over the queues; returns how many messages were handled."""
        handled = 0
        for queue, url, function, handler in self.sources:
            response = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=wait_s, AttributeNames=["All"]
            )
            for message in response.get("Messages", []):
                # The event source mapping's own calls, under the function's role.
                self.recorder.function = function
                for action in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes"):
                    self.recorder.record(
                        Call(f"sqs:{action}", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}")
                    )
                event = self._lambda_event(queue, message)
                try:
                    result = handler(event, FakeContext(function_name=function))
                finally:
                    self.recorder.function = "test"
                self.invocations.append((function, event, result))
                failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
                if message["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                handled += 1
        return handled

    def pending(self) -> int:
        """Messages visible, in flight or delayed on the mapped queues."""
        total = 0
        for _, url, _, _ in self.sources:
            attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
                "Attributes"
            ]
            total += sum(
                int(attributes.get(name, 0))
                for name in (
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                )
            )
        return total

    def run_until_idle(self, timeout_s: float = 90.0) -> None:
        """Poll until every mapped queue is empty and nothing is in flight."""
        deadline = time.monotonic() + timeout_s
        while True:
            # moto delivers S3 notifications within the PUT, so an empty round with nothing in
            # flight means idle; long-polling is only needed while retries are delayed.
            if self.poll_once(wait_s=0) == 0:
                if self.pending() == 0:
                    return
                self.poll_once(wait_s=1)
            if time.monotonic() > deadline:
                raise TimeoutError(f"queues not idle after {timeout_s}s: {self.pending()} pending")
