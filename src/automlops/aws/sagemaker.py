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
from automlops.config import CaptureSettings
from automlops.errors import PermanentError

# The container reads its environment by these names: one for both sides.
from automlops.serving.sagemaker import (
    ENV_CAPTURE_BUCKET,
    ENV_DATASET,
    ENV_VERSION,
    NO_CAPTURE_ATTRIBUTE,
)
from automlops.tabular.schema import DatasetSchema

# SageMaker names: letters, digits and hyphens, at most 63 characters. ARNs lowercase them,
# so names are lowercase too and IAM policies can scope to "<prefix>-*".
_NAME_MAX = 63
_UNSAFE = re.compile(r"[^a-z0-9-]+")
TRAINING_CHANNELS = ("train", "validation")
VARIANT = "AllTraffic"
# SageMaker's own copy of a job's /opt/ml/model (automl-data bucket; no notification there).
JOB_OUTPUT_PREFIX = "training-jobs/"


# Room kept after a dataset's base name for the longest suffix: "-v" and a version number.
_SUFFIX_ROOM = 9
LIVE_SUFFIX = "-live"


def dataset_base(prefix: str, dataset: str) -> str:
    """`<prefix>-<dataset>` made SageMaker-safe, the stem of every name of the dataset's
    resources; a hash keeps altered (or shortened) names unique."""
    clean = _UNSAFE.sub("-", dataset.lower()).strip("-") or "dataset"
    name = f"{prefix}-{clean}"
    if clean != dataset or len(name) + _SUFFIX_ROOM > _NAME_MAX:
        digest = hashlib.sha256(dataset.encode()).hexdigest()[:6]
        room = _NAME_MAX - _SUFFIX_ROOM - len(prefix) - len(digest) - 2
        name = f"{prefix}-{clean[: max(1, room)].strip('-')}-{digest}"
    return re.sub(r"-{2,}", "-", name)


def resource_name(prefix: str, dataset: str, version: int) -> str:
    """`<prefix>-<dataset>-v<n>`: the model and endpoint config of one version, and the
    short-lived endpoint its candidate is evaluated on."""
    return f"{dataset_base(prefix, dataset)}-v{version}"


def live_endpoint_name(prefix: str, dataset: str) -> str:
    """`<prefix>-<dataset>-live`: the one endpoint serving a dataset's champion. No version
    name ends so, and "-v<n>" never ends a live name, so the two never collide."""
    return dataset_base(prefix, dataset) + LIVE_SUFFIX


def version_of(prefix: str, dataset: str, name: str) -> int | None:
    """The version a `resource_name` of this dataset names, else None."""
    match = re.fullmatch(re.escape(dataset_base(prefix, dataset)) + r"-v(\d+)", name)
    return None if match is None else int(match.group(1))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def limit_checked(what: str, exc: ClientError) -> Exception:
    """The error to raise for a failed SageMaker create/update call: a quota reached is
    permanent (retries would only fill the dead-letter queue), anything else is as it was."""
    if _code(exc) == "ResourceLimitExceeded":
        return PermanentError(
            f"SageMaker quota reached creating {what}: {_message(exc)[:300]}. Retire unused "
            "endpoints or ask for a quota increase in Service Quotas; a version whose hosting "
            "failed so can be served later with `automlops aws promote`"
        )
    return exc


def _tags(config: AwsConfig, **extra: str) -> list[dict[str, str]]:
    tags = {"automlops:stack": config.name_prefix, **extra}
    return [{"Key": k, "Value": v} for k, v in tags.items()]


class SageMakerModelHost:
    """Serverless endpoints running the project's serving image.

    Each version gets a model and an endpoint config named `<prefix>-<dataset>-v<n>`. `deploy`
    (the ModelHost port) hosts a candidate on a short-lived endpoint of that name, which the
    hosting lifecycle (`automlops.aws.hosting`) deletes once the candidate is decided; the
    dataset's champion is served by one endpoint, `<prefix>-<dataset>-live`, switched between
    configs in place with UpdateEndpoint. Every create is done only if absent, so a redelivered
    event is harmless; `invoke` goes through the SageMaker runtime API, which speaks the
    container contract (`POST /invocations`).
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
        """Host `s3://artifact_bucket/artifact_key` on its candidate endpoint; returns its name."""
        name = self.ensure_version(dataset, version, artifact_bucket, artifact_key)
        tags = _tags(
            self.config, **{"automlops:dataset": dataset, "automlops:version": str(version)}
        )
        self._create_once(
            "endpoint " + name,
            self.sagemaker.describe_endpoint,
            {"EndpointName": name},
            self.sagemaker.create_endpoint,
            {"EndpointName": name, "EndpointConfigName": name, "Tags": tags},
        )
        self.wait_in_service(name)
        return name

    def ensure_version(
        self, dataset: str, version: int, artifact_bucket: str, artifact_key: str
    ) -> str:
        """Create the version's model and endpoint config unless they exist; returns the
        config's name (a pruned version is recreated so, when a rollback needs it)."""
        config = self.config
        if not config.sagemaker_image or not config.sagemaker_role_arn:
            raise PermanentError("AUTOMLOPS_SAGEMAKER_IMAGE and _ROLE_ARN must be configured")
        name = resource_name(config.name_prefix, dataset, version)
        tags = _tags(config, **{"automlops:dataset": dataset, "automlops:version": str(version)})
        self._create_once(
            "model " + name,
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
                    "Environment": self.environment(dataset, version),
                },
                "Tags": tags,
            },
        )
        self._create_once(
            "endpoint config " + name,
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
        return name

    def environment(self, dataset: str, version: int) -> dict[str, str]:
        """The serving container's environment: the version it serves, and where and how its
        traffic is captured (the monitoring bucket; this function's own $AUTOMLOPS_CAPTURE and
        $AUTOMLOPS_CAPTURE_RATE, fixed when the model is created)."""
        capture = CaptureSettings()
        return {
            ENV_DATASET: dataset,
            ENV_VERSION: str(version),
            ENV_CAPTURE_BUCKET: self.config.bucket_model_monitoring,
            "AUTOMLOPS_CAPTURE": "1" if capture.enabled else "0",
            "AUTOMLOPS_CAPTURE_RATE": repr(capture.sample_rate),
        }

    def endpoint_config(self, endpoint: str) -> str | None:
        """The config an endpoint runs (None when there is no such endpoint)."""
        try:
            described = self.sagemaker.describe_endpoint(EndpointName=endpoint)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return str(described["EndpointConfigName"])

    def switch(self, endpoint: str, config_name: str, tags: dict[str, str]) -> str | None:
        """Make `endpoint` run `config_name`: created when absent, else updated in place
        (SageMaker keeps serving the old config until the new one is in service, and stays on
        it if the update fails). Waits until in service; returns the config it ran before."""
        previous = self.endpoint_config(endpoint)
        if previous == config_name:
            self.wait_in_service(endpoint)
            return previous
        try:
            if previous is None:
                self.sagemaker.create_endpoint(
                    EndpointName=endpoint,
                    EndpointConfigName=config_name,
                    Tags=_tags(self.config, **tags),
                )
            else:
                self.sagemaker.update_endpoint(
                    EndpointName=endpoint, EndpointConfigName=config_name
                )
        except ClientError as exc:
            raise limit_checked(f"endpoint {endpoint}", exc) from None
        self.wait_in_service(endpoint)
        return previous

    def names(self, kind: str, contains: str) -> list[str]:
        """Names of this account's `kind` (endpoint, endpoint-config, model) containing
        `contains`, across pages."""
        operation, key, field = {
            "endpoint": ("list_endpoints", "Endpoints", "EndpointName"),
            "endpoint-config": ("list_endpoint_configs", "EndpointConfigs", "EndpointConfigName"),
            "model": ("list_models", "Models", "ModelName"),
        }[kind]
        found: list[str] = []
        for page in self.sagemaker.get_paginator(operation).paginate(NameContains=contains):
            found.extend(str(item[field]) for item in page.get(key, []))
        # NameContains is a filter SageMaker applies; check it here too (emulators may not).
        return sorted(name for name in found if contains in name)

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
        """Call the endpoint (SageMaker runtime `InvokeEndpoint`). The project's own calls
        (evaluation, canaries) are marked so the container does not capture them as traffic."""
        try:
            response = self.runtime.invoke_endpoint(
                EndpointName=endpoint,
                Body=body,
                ContentType=content_type,
                Accept=accept,
                CustomAttributes=NO_CAPTURE_ATTRIBUTE,
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

    def delete_endpoint(self, endpoint: str) -> None:
        """Delete an endpoint (absent: nothing to do)."""
        self._delete(self.sagemaker.delete_endpoint, {"EndpointName": endpoint})

    def delete_version(self, name: str) -> None:
        """Delete a version's endpoint config and model (absent: nothing to do)."""
        self._delete(self.sagemaker.delete_endpoint_config, {"EndpointConfigName": name})
        self._delete(self.sagemaker.delete_model, {"ModelName": name})

    def delete(self, endpoint: str) -> None:
        """Remove an endpoint with the config and model of the same name (teardown)."""
        self.delete_endpoint(endpoint)
        self.delete_version(endpoint)

    @staticmethod
    def _delete(call: Callable[..., Any], args: dict[str, Any]) -> None:
        try:
            call(**args)
        except ClientError as exc:
            if not _missing(exc):
                raise

    @staticmethod
    def _create_once(
        what: str,
        describe: Callable[..., Any],
        describe_args: dict[str, Any],
        create: Callable[..., Any],
        create_args: dict[str, Any],
    ) -> None:
        try:
            describe(**describe_args)
            return
        except ClientError as exc:
            if not _missing(exc) and _code(exc) != "ValidationException":
                raise
        try:
            create(**create_args)
        except ClientError as exc:
            # Two deliveries racing: the other one created it.
            if "already exist" not in _message(exc):
                raise limit_checked(what, exc) from None


def _missing(exc: ClientError) -> bool:
    """Whether SageMaker answered that the named resource does not exist."""
    return "Could not find" in _message(exc) or _code(exc) == "ResourceNotFound"


def training_job_name(prefix: str, run_id: str, attempt: int) -> str:
    """`<prefix>-<run>-a<n>`: training job names are unique per account and region forever,
    so they carry the stack (two stacks training the same data never collide) and an attempt
    number (a failed job, or one whose model file is gone, can be retried under a new name)."""
    suffix = f"-a{attempt}"
    name = f"{prefix}-{run_id}{suffix}"
    if len(name) > _NAME_MAX:
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
        room = _NAME_MAX - len(prefix) - len(suffix) - len(digest) - 2
        name = f"{prefix}-{run_id[: max(1, room)]}-{digest}{suffix}"
    return _UNSAFE.sub("-", name.lower())


@dataclass(frozen=True)
class LaunchResult:
    """What launching (or finding) the run's training job found."""

    job_name: str
    status: str
    created: bool
    model_key: str


# Attempts a run may make before launching is refused (each costs a training job).
MAX_ATTEMPTS = 5
_LIVE_STATES = ("InProgress", "Stopping")


class TrainingJobLauncher:
    """Starts a SageMaker training job running the project's image on one run's splits.

    The job writes the run's model file itself, with a conditional write, to
    `s3://<model-bucket>/<dataset>/<run>/output/model.tar.gz`: the very key the in-function
    path writes, whose ObjectCreated triggers deploy, whatever the attempt. SageMaker's own
    copy of /opt/ml/model goes under `training-jobs/` in the automl-data bucket, where nothing
    listens. Launching is idempotent: a job of the run in progress is found, not doubled.
    """

    def __init__(self, config: AwsConfig, sagemaker_client: Any) -> None:
        self.config = config
        self.sagemaker = sagemaker_client

    def request(
        self, schema: DatasetSchema, schema_bucket: str, schema_key: str, attempt: int = 1
    ) -> dict[str, Any]:
        """The CreateTrainingJob request for an attempt of a run."""
        config = self.config
        run_id, dataset = schema.run_id, schema.dataset
        channels = {name: schema.split_keys[name] for name in TRAINING_CHANNELS}
        channels["schema"] = schema_key
        channels["transform"] = schema.transform_key
        content_types = {"schema": "application/json", "transform": "application/json"}
        return {
            "TrainingJobName": training_job_name(config.name_prefix, run_id, attempt),
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
            "OutputDataConfig": {
                "S3OutputPath": f"s3://{config.bucket_automl_data}/{JOB_OUTPUT_PREFIX}{dataset}",
                **({"KmsKeyId": config.kms_key_arn} if config.kms_key_arn else {}),
            },
            "ResourceConfig": {
                "InstanceType": config.training_instance_type,
                "InstanceCount": 1,
                "VolumeSizeInGB": config.training_volume_gb,
                **({"VolumeKmsKeyId": config.kms_key_arn} if config.kms_key_arn else {}),
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": config.training_max_runtime_s},
            # SageMaker retries internal failures (capacity, host) under the same job name.
            "RetryStrategy": {"MaximumRetryAttempts": 2},
            "Environment": {"AUTOMLOPS_NAME_PREFIX": config.name_prefix},
            "Tags": _tags(
                config,
                **{
                    "automlops:dataset": dataset,
                    "automlops:run": run_id,
                    "automlops:attempt": str(attempt),
                },
            ),
        }

    def launch(self, schema: DatasetSchema, schema_bucket: str, schema_key: str) -> LaunchResult:
        """Find the run's job in progress, else start its next attempt.

        Called while the run has no model file: an earlier attempt that completed has lost it
        (a stack removed and deployed again), and one that failed or was stopped stays failed
        (its run's failure is recorded by `training_job_state`); either way a new attempt
        starts, under a new name.
        """
        if not self.config.sagemaker_image or not self.config.sagemaker_role_arn:
            raise PermanentError("AUTOMLOPS_SAGEMAKER_IMAGE and _ROLE_ARN must be configured")
        model_key = keys.model_key(schema.dataset, schema.run_id)
        attempt = 1
        while True:
            request = self.request(schema, schema_bucket, schema_key, attempt)
            name = request["TrainingJobName"]
            existing = self._describe(name)
            if existing is None:
                break
            if existing["TrainingJobStatus"] in _LIVE_STATES:
                return LaunchResult(name, existing["TrainingJobStatus"], False, model_key)
            attempt += 1
            if attempt > MAX_ATTEMPTS:
                raise PermanentError(
                    f"run {schema.run_id} already had {MAX_ATTEMPTS} training jobs, the last "
                    f"{name} {existing['TrainingJobStatus'].lower()}: "
                    f"{existing.get('FailureReason', 'no reason given')}"
                )
        try:
            self.sagemaker.create_training_job(**request)
            return LaunchResult(name, "InProgress", True, model_key)
        except ClientError as exc:
            if "already" not in _message(exc).lower() and _code(exc) != "ResourceInUse":
                raise limit_checked(f"training job {name}", exc) from None
        # Two deliveries racing: the other one created this attempt.
        found = self._describe(name)
        if found is None:
            raise RuntimeError(f"training job {name} exists and cannot be described yet")
        return LaunchResult(name, found["TrainingJobStatus"], False, model_key)

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
