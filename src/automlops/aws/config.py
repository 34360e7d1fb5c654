"""Configuration in aws mode: environment variables first, then SSM Parameter Store.

The deployment sets every value as a function environment variable and also publishes them as
SSM parameters under `/automlops/<stage>/` (the reference resolved its bucket names from SSM),
so operators, CI workflows and the training container can find a stack by its stage alone.

| environment variable                 | SSM parameter (under the prefix) |
|--------------------------------------|----------------------------------|
| AUTOMLOPS_BUCKET_DATA                | buckets/data                     |
| AUTOMLOPS_BUCKET_AUTOML_DATA         | buckets/automl-data              |
| AUTOMLOPS_BUCKET_MODEL_OUTPUT        | buckets/model-output             |
| AUTOMLOPS_BUCKET_MODEL_MONITORING    | buckets/model-monitoring         |
| AUTOMLOPS_QUEUE_EVALUATION           | queues/evaluation                |
| AUTOMLOPS_NAME_PREFIX                | name-prefix                      |
| AUTOMLOPS_SAGEMAKER_ROLE_ARN         | sagemaker/role-arn               |
| AUTOMLOPS_SAGEMAKER_IMAGE            | sagemaker/image                  |
| AUTOMLOPS_TRAINING_MODE              | training/mode                    |
| AUTOMLOPS_TRAINING_INSTANCE_TYPE     | training/instance-type           |
| AUTOMLOPS_FUNCTION_MAX_ROWS          | training/function-max-rows       |
| AUTOMLOPS_FUNCTION_MAX_BYTES         | training/function-max-bytes      |
| AUTOMLOPS_FUNCTION_MAX_SECONDS       | training/function-max-seconds    |
| AUTOMLOPS_SCORE_FUNCTION_MAX_BYTES   | scoring/function-max-bytes       |
| AUTOMLOPS_TRANSFORM_INSTANCE_TYPE    | scoring/transform-instance-type  |
| AUTOMLOPS_SERVERLESS_MEMORY_MB       | endpoint/memory-mb               |
| AUTOMLOPS_SERVERLESS_MAX_CONCURRENCY | endpoint/max-concurrency         |
| AUTOMLOPS_ENDPOINT_WAIT_S            | endpoint/wait-seconds            |
| AUTOMLOPS_KEEP_VERSIONS              | endpoint/keep-versions           |
| AUTOMLOPS_MAX_RECEIVES               | queues/max-receives              |
| AUTOMLOPS_RETRY_BASE_S               | queues/retry-base-seconds        |

`AUTOMLOPS_SSM_PREFIX` (e.g. `/automlops/dev`) turns the SSM look-up on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel

from automlops.config import Buckets, Queues, Settings

TrainingMode = Literal["auto", "function", "sagemaker"]

# (environment variable, SSM name under the prefix, field path in the flat config)
_KEYS: tuple[tuple[str, str, str], ...] = (
    ("AUTOMLOPS_BUCKET_DATA", "buckets/data", "bucket_data"),
    ("AUTOMLOPS_BUCKET_AUTOML_DATA", "buckets/automl-data", "bucket_automl_data"),
    ("AUTOMLOPS_BUCKET_MODEL_OUTPUT", "buckets/model-output", "bucket_model_output"),
    ("AUTOMLOPS_BUCKET_MODEL_MONITORING", "buckets/model-monitoring", "bucket_model_monitoring"),
    ("AUTOMLOPS_QUEUE_EVALUATION", "queues/evaluation", "queue_evaluation"),
    ("AUTOMLOPS_NAME_PREFIX", "name-prefix", "name_prefix"),
    ("AUTOMLOPS_SAGEMAKER_ROLE_ARN", "sagemaker/role-arn", "sagemaker_role_arn"),
    ("AUTOMLOPS_SAGEMAKER_IMAGE", "sagemaker/image", "sagemaker_image"),
    ("AUTOMLOPS_TRAINING_MODE", "training/mode", "training_mode"),
    ("AUTOMLOPS_TRAINING_INSTANCE_TYPE", "training/instance-type", "training_instance_type"),
    ("AUTOMLOPS_FUNCTION_MAX_ROWS", "training/function-max-rows", "function_max_rows"),
    ("AUTOMLOPS_FUNCTION_MAX_BYTES", "training/function-max-bytes", "function_max_bytes"),
    ("AUTOMLOPS_FUNCTION_MAX_SECONDS", "training/function-max-seconds", "function_max_seconds"),
    (
        "AUTOMLOPS_SCORE_FUNCTION_MAX_BYTES",
        "scoring/function-max-bytes",
        "score_function_max_bytes",
    ),
    (
        "AUTOMLOPS_TRANSFORM_INSTANCE_TYPE",
        "scoring/transform-instance-type",
        "transform_instance_type",
    ),
    ("AUTOMLOPS_SERVERLESS_MEMORY_MB", "endpoint/memory-mb", "serverless_memory_mb"),
    (
        "AUTOMLOPS_SERVERLESS_MAX_CONCURRENCY",
        "endpoint/max-concurrency",
        "serverless_max_concurrency",
    ),
    ("AUTOMLOPS_ENDPOINT_WAIT_S", "endpoint/wait-seconds", "endpoint_wait_s"),
    ("AUTOMLOPS_KEEP_VERSIONS", "endpoint/keep-versions", "keep_versions"),
    ("AUTOMLOPS_KMS_KEY_ARN", "kms-key-arn", "kms_key_arn"),
    ("AUTOMLOPS_MAX_RECEIVES", "queues/max-receives", "max_receives"),
    ("AUTOMLOPS_RETRY_BASE_S", "queues/retry-base-seconds", "retry_base_s"),
)
SSM_PREFIX_VAR = "AUTOMLOPS_SSM_PREFIX"
LAMBDA_MEMORY_VAR = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
# An upload may take at most this fraction (1/n) of the function's memory.
UPLOAD_MEMORY_SHARE = 3


class AwsConfig(BaseModel):
    """Everything the AWS adapters need, flat so it maps 1:1 to env vars and SSM names."""

    bucket_data: str
    bucket_automl_data: str
    bucket_model_output: str
    bucket_model_monitoring: str
    queue_evaluation: str
    # Prefix of every SageMaker resource this stack creates (IAM policies are scoped to it).
    name_prefix: str = "automlops-dev"
    sagemaker_role_arn: str = ""
    sagemaker_image: str = ""
    training_mode: TrainingMode = "auto"
    training_instance_type: str = "ml.m5.xlarge"
    training_volume_gb: int = 30
    training_max_runtime_s: int = 24 * 3600
    # In-function training is chosen while the data fits Lambda's 15 min / 10 GB comfortably.
    function_max_rows: int = 1_000_000
    function_max_bytes: int = 256 * 1024 * 1024
    function_max_seconds: float = 600.0
    # Batch scoring in the function (which holds the file in memory and on disk) up to this
    # size and a third of its memory; above, a SageMaker Batch Transform job.
    score_function_max_bytes: int = 512 * 1024 * 1024
    transform_instance_type: str = "ml.m5.xlarge"
    transform_max_payload_mb: int = 6
    serverless_memory_mb: int = 2048
    serverless_max_concurrency: int = 5
    endpoint_wait_s: float = 720.0
    # Earlier champions whose model and endpoint config are kept for a rollback.
    keep_versions: int = 2
    # The stack's customer-managed KMS key ("" for service-managed keys): SageMaker jobs
    # encrypt their outputs and volumes with it, as the buckets do.
    kms_key_arn: str = ""
    max_receives: int = 5
    retry_base_s: float = 30.0
    # The function's memory (Lambda sets AWS_LAMBDA_FUNCTION_MEMORY_SIZE); bounds the uploads
    # preprocess accepts. None outside Lambda.
    function_memory_mb: int | None = None

    def max_upload_bytes(self, default: int) -> int:
        """The largest upload preprocess takes here: `default`, and at most a third of the
        function's memory (preprocess holds the typed table, 1-1.5x the file, and its splits)."""
        if self.function_memory_mb is None:
            return default
        return min(default, self.function_memory_mb * 1024 * 1024 // UPLOAD_MEMORY_SHARE)

    def score_function_bytes(self) -> int:
        """The largest file the score function scores itself (see `score_function_max_bytes`)."""
        return self.max_upload_bytes(self.score_function_max_bytes)

    def settings(self) -> Settings:
        """The runtime Settings the stages see."""
        return Settings(
            max_upload_bytes=self.max_upload_bytes(Settings().max_upload_bytes),
            buckets=Buckets(
                data=self.bucket_data,
                automl_data=self.bucket_automl_data,
                model_output=self.bucket_model_output,
                model_monitoring=self.bucket_model_monitoring,
            ),
            # The object-events queue of the local runtime has no twin here: each S3-triggered
            # stage has its own queue, wired by the deployment, never named by the code.
            queues=Queues(events="", evaluation=self.queue_evaluation),
            max_receives=self.max_receives,
            retry_base_s=self.retry_base_s,
        )


def ssm_parameters(client: Any, prefix: str) -> dict[str, str]:
    """Every parameter under `prefix` (recursive), by name relative to the prefix."""
    prefix = "/" + prefix.strip("/")
    values: dict[str, str] = {}
    paginator = client.get_paginator("get_parameters_by_path")
    for page in paginator.paginate(Path=prefix, Recursive=True, WithDecryption=True):
        for parameter in page.get("Parameters", []):
            values[parameter["Name"].removeprefix(prefix + "/")] = parameter["Value"]
    return values


def load_config(
    environ: Mapping[str, str] | None = None,
    *,
    ssm_client: Any | None = None,
    ssm_prefix: str | None = None,
) -> AwsConfig:
    """Build the config: environment variables override SSM parameters under the prefix."""
    environ = os.environ if environ is None else environ
    prefix = ssm_prefix or environ.get(SSM_PREFIX_VAR)
    from_ssm: dict[str, str] = {}
    if prefix:
        if ssm_client is None:
            import boto3

            ssm_client = boto3.client("ssm")
        from_ssm = ssm_parameters(ssm_client, prefix)
    values: dict[str, Any] = {}
    for env_name, ssm_name, field in _KEYS:
        if environ.get(env_name):
            values[field] = environ[env_name]
        elif ssm_name in from_ssm:
            values[field] = from_ssm[ssm_name]
    if environ.get(LAMBDA_MEMORY_VAR, "").isdigit():
        values["function_memory_mb"] = int(environ[LAMBDA_MEMORY_VAR])
    missing = [
        env_name
        for env_name, ssm_name, field in _KEYS
        if field.startswith(("bucket_", "queue_")) and field not in values
    ]
    if missing:
        where = f" or SSM parameters under {prefix}" if prefix else f" (or set {SSM_PREFIX_VAR})"
        raise ValueError(f"aws configuration incomplete: set {', '.join(missing)}{where}")
    return AwsConfig.model_validate(values)
