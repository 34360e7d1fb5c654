"""SageMaker: the ModelHost on serverless endpoints, and the training-job launcher."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from automlops import keys
from automlops.aws.config import AwsConfig
from automlops.errors import PermanentError
from automlops.tabular.schema import DatasetSchema

# SageMaker names: letters, digits and hyphens, at most 63 characters. ARNs lowercase them,
# so names are lowercase too and IAM policies can scope to "<prefix>-*".
_NAME_MAX = 63
_UNSAFE = re.compile(r"[^a-z0-9-]+")
TRAINING_CHANNELS = ("train", "validation")
VARIANT = "AllTraffic"
ENV_DATASET = "AUTOMLOPS_DATASET"
ENV_VERSION = "AUTOMLOPS_MODEL_VERSION"


def resource_name(prefix: str, dataset: str, version: int) -> str:
    """`<prefix>-<dataset>-v<n>`, made SageMaker-safe; a hash keeps altered names unique."""
    clean = _UNSAFE.sub("-", dataset.lower()).strip("-") or "dataset"
    suffix = f"-v{version}"
    name = f"{prefix}-{clean}{suffix}"
    if clean != dataset or len(name) > _NAME_MAX:
        digest = hashlib.sha256(dataset.encode()).hexdigest()[:6]
        room = _NAME_MAX - len(prefix) - len(suffix) - len(digest) - 2
        name = f"{prefix}-{clean[: max(1, room)].strip('-')}-{digest}{suffix}"
    return re.sub(r"-{2,}", "-", name)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def _tags(config: AwsConfig, **extra: str) -> list[dict[str, str]]:
    tags = {"automlops:stack": config.name_prefix, **extra}
    return [{"Key": k, "Value": v} for k, v in tags.items()]


class SageMakerModelHost:
    """One serverless endpoint per model version, running the project's serving image.

    `deploy` creates model, endpoint config and endpoint (each only if absent, so a redelivered
    deploy event is harmless) and waits until the endpoint is in service; `invoke` calls it
    through the SageMaker runtime API, which speaks the container contract (`POST /invocations`).
    """

    def __init__(
        self,
        config: AwsConfig,
        sagemaker_client: Any,
        runtime_client: Any,
        *,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = 15.0,
    ) -> None:
        self.config = config
        self.sagemaker = sagemaker_client
        self.runtime = runtime_client
        self._sleep = sleep
        self._poll_s = poll_s

    def deploy(self, dataset: str, version: int, artifact_bucket: str, artifact_key: str) -> str:
        """Host `s3://artifact_bucket/artifact_key`; returns the endpoint name."""
        config = self.config
        if not config.sagemaker_image or not config.sagemaker_role_arn:
            raise PermanentError("AUTOMLOPS_SAGEMAKER_IMAGE and _ROLE_ARN must be configured")
        name = resource_name(config.name_prefix, dataset, version)
        tags = _tags(config, **{"automlops:dataset": dataset, "automlops:version": str(version)})
        self._create_once(
            self.sagemaker.describe_model,
            {"ModelName": name},
            self.sagemaker.create_model,
            {
                "ModelName": name,
                "ExecutionRoleArn": config.sagemaker_role_arn,
                "PrimaryContainer": {
                    "Image": config.sagemaker_image,
                    "Mode": "SingleModel",
                    "ModelDataUrl": f"s3://{artifact_bucket}/{artifact_key}",
                    "Environment": {ENV_DATASET: dataset, ENV_VERSION: str(version)},
                },
                "Tags": tags,
            },
        )
        self._create_once(
            self.sagemaker.describe_endpoint_config,
            {"EndpointConfigName": name},
            self.sagemaker.create_endpoint_config,
            {
                "EndpointConfigName": name,
                "ProductionVariants": [
                    {
                        "VariantName": VARIANT,
                        "ModelName": name,
                        "ServerlessConfig": {
                            "MemorySizeInMB": config.serverless_memory_mb,
                            "MaxConcurrency": config.serverless_max_concurrency,
                        },
                    }
                ],
                "Tags": tags,
            },
        )
        self._create_once(
            self.sagemaker.describe_endpoint,
            {"EndpointName": name},
            self.sagemaker.create_endpoint,
            {"EndpointName": name, "EndpointConfigName": name, "Tags": tags},
        )
        self.wait_in_service(name)
        return name

    def wait_in_service(self, endpoint: str) -> None:
        """Wait for InService; Failed is permanent, a timeout is retried by redelivery."""
        deadline = time.monotonic() + self.config.endpoint_wait_s
        while True:
            status = self.sagemaker.describe_endpoint(EndpointName=endpoint)
            state = status["EndpointStatus"]
            if state == "InService":
                return
            if state == "Failed":
                raise PermanentError(
                    f"endpoint {endpoint} failed: {status.get('FailureReason', 'no reason given')}"
                )
            if time.monotonic() >= deadline:
                # Transient: the message comes back and this wait resumes on the same endpoint.
                raise TimeoutError(f"endpoint {endpoint} still {state}")
            self._sleep(self._poll_s)

    def invoke(self, endpoint: str, body: bytes, *, content_type: str, accept: str) -> bytes:
        """Call the endpoint (SageMaker runtime `InvokeEndpoint`)."""
        try:
            response = self.runtime.invoke_endpoint(
                EndpointName=endpoint, Body=body, ContentType=content_type, Accept=accept
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            original = exc.response.get("OriginalStatusCode")
            if _code(exc) == "ModelError" and original and 400 <= int(original) < 500:
                # The container refused the request itself: retrying cannot help.
                raise PermanentError(
                    f"endpoint {endpoint} refused the request: {error.get('Message', '')[:300]}"
                ) from None
            raise  # throttling, cold start, endpoint still updating: transient
        return response["Body"].read()

    def delete(self, endpoint: str) -> None:
        """Remove an endpoint with its config and model (used to retire rejected versions)."""
        for call, arg in (
            (self.sagemaker.delete_endpoint, {"EndpointName": endpoint}),
            (self.sagemaker.delete_endpoint_config, {"EndpointConfigName": endpoint}),
            (self.sagemaker.delete_model, {"ModelName": endpoint}),
        ):
            try:
                call(**arg)
            except ClientError as exc:
                if "Could not find" not in _message(exc):
                    raise

    @staticmethod
    def _create_once(
        describe: Callable[..., Any],
        describe_args: dict[str, Any],
        create: Callable[..., Any],
        create_args: dict[str, Any],
    ) -> None:
        try:
            describe(**describe_args)
            return
        except ClientError as exc:
            if "Could not find" not in _message(exc) and _code(exc) != "ValidationException":
                raise
        try:
            create(**create_args)
        except ClientError as exc:
            # Two deliveries racing: the other one created it.
            if "already exist" not in _message(exc):
                raise


@dataclass(frozen=True)
class LaunchResult:
    """What launching (or finding) the run's training job found."""

    job_name: str
    status: str
    created: bool
    model_key: str


class TrainingJobLauncher:
    """Starts a SageMaker training job running the project's image on one run's splits.

    The job is named after the run and writes to `s3://<model-bucket>/<dataset>/`, so SageMaker
    puts the artifact at `<dataset>/<run>/output/model.tar.gz`: the very key the in-function
    path writes, whose ObjectCreated triggers deploy. The name makes launching idempotent.
    """

    def __init__(self, config: AwsConfig, sagemaker_client: Any) -> None:
        self.config = config
        self.sagemaker = sagemaker_client

    def request(self, schema: DatasetSchema, schema_bucket: str, schema_key: str) -> dict[str, Any]:
        """The CreateTrainingJob request for a run."""
        config = self.config
        run_id, dataset = schema.run_id, schema.dataset
        channels = {name: schema.split_keys[name] for name in TRAINING_CHANNELS}
        channels["schema"] = schema_key
        channels["transform"] = schema.transform_key
        content_types = {"schema": "application/json", "transform": "application/json"}
        return {
            "TrainingJobName": run_id,
            "AlgorithmSpecification": {
                "TrainingImage": config.sagemaker_image,
                "TrainingInputMode": "File",
            },
            "RoleArn": config.sagemaker_role_arn,
            # Hyperparameters are how SageMaker passes strings to the container's `train`.
            "HyperParameters": {
                "dataset": dataset,
                "run_id": run_id,
                "automl_data_bucket": schema_bucket,
                "model_output_bucket": config.bucket_model_output,
                "data_bucket": config.bucket_data,
                "channels": json.dumps(channels, sort_keys=True),
            },
            "InputDataConfig": [
                {
                    "ChannelName": name,
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": f"s3://{schema_bucket}/{key}",
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                    "ContentType": content_types.get(name, "application/x-parquet"),
                    "CompressionType": "None",
                    "InputMode": "File",
                }
                for name, key in channels.items()
            ],
            "OutputDataConfig": {"S3OutputPath": f"s3://{config.bucket_model_output}/{dataset}"},
            "ResourceConfig": {
                "InstanceType": config.training_instance_type,
                "InstanceCount": 1,
                "VolumeSizeInGB": config.training_volume_gb,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": config.training_max_runtime_s},
            # SageMaker retries internal failures (capacity, host) under the same job name.
            "RetryStrategy": {"MaximumRetryAttempts": 2},
            "Environment": {"AUTOMLOPS_NAME_PREFIX": config.name_prefix},
            "Tags": _tags(config, **{"automlops:dataset": dataset, "automlops:run": run_id}),
        }

    def launch(self, schema: DatasetSchema, schema_bucket: str, schema_key: str) -> LaunchResult:
        """Create the run's training job unless it exists; a failed one fails the run."""
        if not self.config.sagemaker_image or not self.config.sagemaker_role_arn:
            raise PermanentError("AUTOMLOPS_SAGEMAKER_IMAGE and _ROLE_ARN must be configured")
        request = self.request(schema, schema_bucket, schema_key)
        name = request["TrainingJobName"]
        model_key = keys.model_key(schema.dataset, schema.run_id)
        existing = self._describe(name)
        if existing is None:
            try:
                self.sagemaker.create_training_job(**request)
                return LaunchResult(name, "InProgress", True, model_key)
            except ClientError as exc:
                if "already" not in _message(exc).lower() and _code(exc) != "ResourceInUse":
                    raise
                existing = self._describe(name)
                if existing is None:
                    raise
        output = existing.get("OutputDataConfig", {}).get("S3OutputPath", "").rstrip("/")
        if output != request["OutputDataConfig"]["S3OutputPath"]:
            # Job names are unique per account and region, and never freed.
            raise PermanentError(
                f"training job {name} exists but writes to {output}: another stack in this "
                "account trained the same data; upload it under another dataset name"
            )
        status = existing["TrainingJobStatus"]
        if status in ("Failed", "Stopped"):
            raise PermanentError(
                f"training job {name} {status.lower()}: "
                f"{existing.get('FailureReason', 'no reason given')}; "
                "change the manifest or the data and upload again to start a new run"
            )
        return LaunchResult(name, status, False, model_key)

    def _describe(self, name: str) -> dict[str, Any] | None:
        try:
            return self.sagemaker.describe_training_job(TrainingJobName=name)
        except ClientError as exc:
            if "Could not find" in _message(exc) or _code(exc) in (
                "ValidationException",
                "ResourceNotFound",
            ):
                return None
            raise
