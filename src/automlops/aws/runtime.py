"""The aws-mode runtime: boto3 clients wired into the stage ports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from automlops.aws.alert_metrics import CloudWatchAlerts
from automlops.aws.config import AwsConfig, load_config
from automlops.aws.hosting import EndpointLifecycle
from automlops.aws.s3_store import S3ObjectStore
from automlops.aws.sagemaker import SageMakerModelHost, TrainingJobLauncher
from automlops.aws.sqs_queue import SqsQueue
from automlops.aws.training import TrainDispatcher
from automlops.aws.transform import ScoreDispatcher, TransformJobLauncher
from automlops.errors import PermanentError
from automlops.ports import Ports, ProgressFn
from automlops.registry import Registry, VersionStatus
from automlops.routing import Router, Stage
from automlops.stages import STAGES, StageResult
from automlops.stages.evaluate import read_message
from automlops.usecases.alerts import AlertSink

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

    def lifecycle(self) -> EndpointLifecycle:
        """The endpoint lifecycle over this runtime's host and registry."""
        return hosting_lifecycle(self.config, self.host, self.store)

    def alerts(self) -> AlertSink:
        """Where this stack's alerts go: CloudWatch metrics (`aws.alert_metrics`)."""
        return CloudWatchAlerts(self.config.name_prefix)

    def ports(self, progress: ProgressFn | None = None) -> Ports:
        """Ports for one stage run."""
        ports = Ports(
            store=self.store, queue=self.queue, host=self.host, settings=self.config.settings()
        )
        if progress is not None:
            ports.progress = progress
        return ports


def hosting_lifecycle(
    config: AwsConfig, host: SageMakerModelHost, store: S3ObjectStore
) -> EndpointLifecycle:
    """The endpoint lifecycle of a stack (the functions' and the operator commands')."""
    return EndpointLifecycle(
        host,
        store,
        Registry(store, config.bucket_model_output),
        keep=config.keep_versions,
        canary_bucket=config.bucket_automl_data,
    )


class ReconcilingRunner:
    """A stage runner (deploy, evaluate) followed by the hosting reconciliation of its dataset,
    so decided candidates' endpoints go and the champion is served by the dataset's endpoint.

    An evaluation that fails permanently rejects its candidate first (with the reason), so no
    candidate and no endpoint is left waiting forever for a decision that cannot come.
    """

    def __init__(self, stage: Stage, runner: StageRunner, lifecycle: EndpointLifecycle) -> None:
        self.stage = stage
        self.runner = runner
        self.lifecycle = lifecycle

    def __call__(self, event: Any, ports: Ports) -> StageResult:
        """Run the stage, then reconcile (after a success or a permanent failure)."""
        run = STAGES[self.stage].identify(event, ports)
        try:
            result = self.runner(event, ports)
        except PermanentError as exc:
            if self.stage is Stage.evaluate:
                self._reject(event, str(exc))
            self.lifecycle.reconcile(run.dataset)
            raise
        done = self.lifecycle.reconcile(run.dataset)
        if done.switched_from is not None or done.deleted_endpoints or done.deleted_versions:
            ports.progress(
                f"hosting: {done.live} serves v{done.serving}; deleted endpoints "
                f"{done.deleted_endpoints or 'none'}, versions {done.deleted_versions or 'none'}"
            )
        return result

    def _reject(self, event: Any, reason: str) -> None:
        message = read_message(event)
        registry = self.lifecycle.registry
        entry = registry.read(message.dataset).get(message.version)
        if entry.status is VersionStatus.candidate:
            registry.reject(message.dataset, message.version, f"evaluation failed: {reason}")


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
    s3 = session.client("s3", **options)
    store = S3ObjectStore(s3)
    host = SageMakerModelHost(config, sagemaker, runtime)
    # Scoring runs in the function while the file fits, else as a Batch Transform job.
    runners[Stage.score] = ScoreDispatcher(
        config, TransformJobLauncher(config, sagemaker, s3), host
    )
    lifecycle = hosting_lifecycle(config, host, store)
    for stage in (Stage.deploy, Stage.evaluate):
        runners[stage] = ReconcilingRunner(stage, runners[stage], lifecycle)
    return AwsRuntime(
        config=config,
        store=store,
        queue=SqsQueue(session.client("sqs", **options)),
        host=host,
        launcher=launcher,
        runners=runners,
    )
