"""The aws-mode runtime: boto3 clients wired into the stage ports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from automlops.aws.config import AwsConfig, load_config
from automlops.aws.s3_store import S3ObjectStore
from automlops.aws.sagemaker import SageMakerModelHost, TrainingJobLauncher
from automlops.aws.sqs_queue import SqsQueue
from automlops.aws.training import TrainDispatcher
from automlops.ports import Ports, ProgressFn
from automlops.routing import Router, Stage
from automlops.stages import STAGES, StageResult

StageRunner = Callable[[Any, Ports], StageResult]


@dataclass
class AwsRuntime:
    """Config, adapters and the stage runners of one Lambda container (built at cold start)."""

    config: AwsConfig
    store: S3ObjectStore
    queue: SqsQueue
    host: SageMakerModelHost
    launcher: TrainingJobLauncher
    runners: dict[Stage, StageRunner] = field(default_factory=dict)

    @property
    def router(self) -> Router:
        return Router(self.config.settings())

    def ports(self, progress: ProgressFn | None = None) -> Ports:
        """Ports for one stage run."""
        ports = Ports(
            store=self.store, queue=self.queue, host=self.host, settings=self.config.settings()
        )
        if progress is not None:
            ports.progress = progress
        return ports


def _client_config() -> Any:
    from botocore.config import Config

    # Standard retry mode backs off on throttling; serverless endpoints may cold-start for
    # tens of seconds, hence the generous read timeout.
    return Config(retries={"mode": "standard", "max_attempts": 5}, read_timeout=90)


def build_runtime(
    config: AwsConfig | None = None,
    *,
    session: Any | None = None,
    endpoint_url: str | None = None,
    runtime_client: Any | None = None,
) -> AwsRuntime:
    """Wire boto3 clients (default session and region) into the adapters.

    `endpoint_url` points every client at an emulator (moto in the tests); `runtime_client`
    replaces the SageMaker runtime client (the tests' stand-in for a hosted container).
    """
    import boto3

    session = session or boto3.session.Session()
    options: dict[str, Any] = {"config": _client_config()}
    if endpoint_url:
        options["endpoint_url"] = endpoint_url
    if config is None:
        config = load_config(ssm_client=session.client("ssm", **options))
    sagemaker = session.client("sagemaker", **options)
    runtime = runtime_client or session.client("sagemaker-runtime", **options)
    launcher = TrainingJobLauncher(config, sagemaker)
    runners: dict[Stage, StageRunner] = {stage: spec.run for stage, spec in STAGES.items()}
    # Training runs in the function or as a SageMaker job, as the config says.
    runners[Stage.train] = TrainDispatcher(config, launcher)
    return AwsRuntime(
        config=config,
        store=S3ObjectStore(session.client("s3", **options)),
        queue=SqsQueue(session.client("sqs", **options)),
        host=SageMakerModelHost(config, sagemaker, runtime),
        launcher=launcher,
        runners=runners,
    )
