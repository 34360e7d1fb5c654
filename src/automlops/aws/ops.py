"""Operator commands on a deployed stage, found by its SSM parameters: `automlops aws upload |
models | runs | promote | rollback | dlq list | dlq redrive | teardown`.

The use cases are the local CLI's (`automlops.usecases`) over the S3 store and SQS queue; only
finding the stage and tearing it down are AWS's own. `python -m automlops.aws` runs this
sub-app too (the CI workflows call it so).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from automlops import command_line as cl
from automlops.aws.config import AwsConfig, load_config
from automlops.aws.training_failures import TrainingJobFailure, list_failures, retrain
from automlops.errors import AutomlopsError
from automlops.ports import ObjectStore
from automlops.registry import Registry
from automlops.usecases import dead_letters, promotion
from automlops.usecases import models as model_cases
from automlops.usecases import upload as upload_case

# The queues of the S3-triggered stages, named by the deployment as `<name prefix>-<stage>`
# (serverless.yml); the evaluation queue's name is published in SSM.
_STAGE_QUEUES = ("preprocess", "train", "deploy")


def stage_config(stage: str, session: Any, endpoint_url: str | None = None) -> AwsConfig:
    """A deployed stage's configuration, from its SSM parameters."""
    ssm = session.client("ssm", endpoint_url=endpoint_url)
    return load_config({}, ssm_client=ssm, ssm_prefix=f"/automlops/{stage}")


def pipeline_queues(config: AwsConfig) -> list[str]:
    """The queues a deployed stage's functions consume (each with a `-dlq` beside it)."""
    return [f"{config.name_prefix}-{name}" for name in _STAGE_QUEUES] + [config.queue_evaluation]


@dataclass
class Stage:
    """A deployed stage: its configuration and the adapters the use cases run over."""

    config: AwsConfig
    session: Any
    store: Any  # S3ObjectStore (imported with boto3, only when a command runs)
    queue: Any  # SqsQueue
    endpoint_url: str | None = None

    @property
    def registry(self) -> Registry:
        return Registry(self.store, self.config.bucket_model_output)

    def reconcile_hosting(self, dataset: str) -> str:
        """Make the dataset's endpoint serve its champion (UpdateEndpoint), retire the rest;
        returns what it did, for the operator. A stage without SageMaker hosting configured
        (no serving image or role in its parameters) has only its registry changed."""
        from automlops.aws.runtime import hosting_lifecycle
        from automlops.aws.sagemaker import SageMakerModelHost

        if not self.config.sagemaker_image or not self.config.sagemaker_role_arn:
            return "no SageMaker hosting configured for this stage: registry only"

        host = SageMakerModelHost(
            self.config,
            self.session.client("sagemaker", endpoint_url=self.endpoint_url),
            self.session.client("sagemaker-runtime", endpoint_url=self.endpoint_url),
        )
        done = hosting_lifecycle(self.config, host, self.store).reconcile(dataset)
        return f"{done.live} serves v{done.serving}"


def open_stage(stage: str, endpoint_url: str | None = None) -> Stage:
    """Find a deployed stage by its SSM parameters and connect to its bucket and queues."""
    import boto3

    from automlops.aws.s3_store import S3ObjectStore
    from automlops.aws.sqs_queue import SqsQueue

    session = boto3.session.Session()
    config = stage_config(stage, session, endpoint_url)
    return Stage(
        config=config,
        session=session,
        store=S3ObjectStore(session.client("s3", endpoint_url=endpoint_url)),
        queue=SqsQueue(session.client("sqs", endpoint_url=endpoint_url)),
        endpoint_url=endpoint_url,
    )


def models_document(
    config: AwsConfig,
    listing: list[model_cases.DatasetModels],
    failures: list[TrainingJobFailure] | None = None,
) -> list[Any]:
    """`aws models` output: each dataset's versions with status, endpoint, metrics, report,
    and its runs whose training job failed (with SageMaker's reason)."""
    failed: dict[str, list[dict[str, Any]]] = {}
    for failure in failures or []:
        failed.setdefault(failure.dataset, []).append(failure.model_dump())
    known = {item.dataset for item in listing}
    unlisted = [model_cases.DatasetModels(d, None, None, []) for d in sorted(set(failed) - known)]
    return [
        {
            "dataset": item.dataset,
            "champion": item.champion,
            "failed_runs": failed.get(item.dataset, []),
            "versions": [
                {
                    "version": v.version,
                    "status": v.status.value,
                    "endpoint": v.endpoint,
                    "metrics": v.metrics,
                    "report": None
                    if v.report_key is None
                    else f"s3://{config.bucket_model_monitoring}/{v.report_key}",
                }
                for v in item.versions
            ],
        }
        for item in [*listing, *unlisted]
    ]


def teardown(config: AwsConfig, session: Any, endpoint_url: str | None = None) -> list[str]:
    """Delete the stage's endpoints, models and configs; empty its buckets (all versions).

    `serverless remove` cannot delete non-empty buckets, nor the SageMaker resources the
    deploy stage created at run time.
    """
    from automlops.aws.sagemaker import SageMakerModelHost

    sagemaker = session.client("sagemaker", endpoint_url=endpoint_url)
    host = SageMakerModelHost(config, sagemaker, None)
    done: list[str] = []
    prefix = config.name_prefix + "-"
    for name in host.names("endpoint", prefix):
        if name.startswith(prefix):
            host.delete_endpoint(name)
            done.append(f"endpoint {name}")
    names = set(host.names("endpoint-config", prefix)) | set(host.names("model", prefix))
    for name in sorted(n for n in names if n.startswith(prefix)):
        host.delete_version(name)
        done.append(f"model and endpoint config {name}")
    s3 = session.resource("s3", endpoint_url=endpoint_url)
    for name in (
        config.bucket_data,
        config.bucket_automl_data,
        config.bucket_model_output,
        config.bucket_model_monitoring,
    ):
        s3.Bucket(name).object_versions.delete()
        done.append(f"bucket {name} emptied")
    return done


# -- the `automlops aws` commands ------------------------------------------------------------

aws_app = cl.typer_app("Operator commands on a deployed AWS stage (found by its SSM parameters).")
aws_dlq_app = typer.Typer(help="The stage's dead-letter queues: list and redrive.")
aws_app.add_typer(aws_dlq_app, name="dlq")

StageName = Annotated[str, typer.Option("--stage", help="Deployed stage (SSM /automlops/<stage>).")]
EndpointUrl = Annotated[
    str | None, typer.Option("--endpoint-url", hidden=True, help="AWS API endpoint (emulators).")
]


@aws_app.command("upload")
def upload_command(
    file: Annotated[
        Path | None, typer.Argument(exists=True, dir_okay=False, readable=True, show_default=False)
    ] = None,
    file_option: Annotated[
        Path | None,
        typer.Option("--file", exists=True, dir_okay=False, readable=True, help="Same as FILE."),
    ] = None,
    dataset: cl.UploadDataset = None,
    target: cl.UploadTarget = None,
    positive: cl.UploadPositive = None,
    task: cl.UploadTask = None,
    drop: cl.UploadDrop = None,
    keep: cl.UploadKeep = None,
    time_budget: cl.UploadTimeBudget = None,
    stage: StageName = "dev",
    endpoint_url: EndpointUrl = None,
) -> None:
    """Store FILE's manifest, then FILE under data/<dataset>/ (its arrival starts the run)."""
    path = file or file_option
    if path is None:
        raise cl.fail("upload needs FILE (or --file)")
    ops = open_stage(stage, endpoint_url)
    options = cl.upload_options(dataset, target, positive, task, drop, time_budget, keep=keep)
    with cl.refusals(upload_case.UploadRefused):
        done = upload_case.upload(ops.store, ops.config.bucket_data, path.name, path, options)
    typer.echo(f"s3://{done.bucket}/{done.key}")


@aws_app.command("models")
def models_command(
    dataset: cl.DatasetFilter = None, stage: StageName = "dev", endpoint_url: EndpointUrl = None
) -> None:
    """Each dataset's versions: status, endpoint, metrics, report (JSON)."""
    ops = open_stage(stage, endpoint_url)
    with cl.refusals(ValueError):
        listing = model_cases.list_models(ops.registry, dataset)
    failures = list_failures(ops.store, ops.config.bucket_model_output, dataset)
    typer.echo(json.dumps(models_document(ops.config, listing, failures), indent=1))


@aws_app.command("runs")
def runs_command(
    dataset: cl.DatasetFilter = None, stage: StageName = "dev", endpoint_url: EndpointUrl = None
) -> None:
    """Runs whose SageMaker jobs say more than the functions' logs (JSON, newest first):
    training runs whose job failed or was stopped, with the reason ("kind": "training"), and
    scoring runs of a Batch Transform job, completed (where the predictions are) or failed
    ("kind": "scoring")."""
    ops = open_stage(stage, endpoint_url)
    typer.echo(json.dumps(runs_document(ops.store, ops.config, dataset), indent=1))


def runs_document(
    store: ObjectStore, config: AwsConfig, dataset: str | None
) -> list[dict[str, Any]]:
    """What `automlops aws runs` prints."""
    from automlops.aws.transform import list_records  # the serving stack: only when asked

    bucket = config.bucket_model_output
    runs = [{"kind": "training", **f.model_dump()} for f in list_failures(store, bucket, dataset)]
    runs += [{"kind": "scoring", **r.model_dump()} for r in list_records(store, bucket, dataset)]
    return sorted(runs, key=lambda r: str(r["at"]), reverse=True)


@aws_app.command("retrain")
def retrain_command(
    dataset: str, run_id: str, stage: StageName = "dev", endpoint_url: EndpointUrl = None
) -> None:
    """Send a run whose SageMaker training job failed back to training (its next attempt)."""
    from datetime import UTC, datetime

    ops = open_stage(stage, endpoint_url)
    config = ops.config
    with cl.refusals(AutomlopsError):
        message_id = retrain(
            ops.store,
            ops.queue,
            (config.bucket_automl_data, config.bucket_model_output),
            f"{config.name_prefix}-train",
            dataset,
            run_id,
            datetime.now(UTC).isoformat(),
        )
    typer.echo(f"run {run_id} of {dataset} sent back to training (message {message_id})")


@aws_app.command("promote")
def promote_command(
    dataset: str,
    version: int,
    reason: cl.Reason = "promoted by operator",
    stage: StageName = "dev",
    endpoint_url: EndpointUrl = None,
) -> None:
    """Make VERSION the champion of DATASET."""
    ops = open_stage(stage, endpoint_url)
    with cl.refusals(ValueError, AutomlopsError):
        promotion.promote(ops.registry, dataset, version, reason)
        served = ops.reconcile_hosting(dataset)
    typer.echo(f"{dataset} v{version} is champion; {served}")


@aws_app.command("rollback")
def rollback_command(
    dataset: str, stage: StageName = "dev", endpoint_url: EndpointUrl = None
) -> None:
    """Serve the previous champion of DATASET again (its endpoint is updated back)."""
    ops = open_stage(stage, endpoint_url)
    with cl.refusals(ValueError, AutomlopsError):
        restored = promotion.rollback(ops.registry, dataset, "rolled back by operator")
        served = ops.reconcile_hosting(dataset)
    typer.echo(f"{dataset} v{restored.version} is champion again; {served}")


@aws_dlq_app.command("list")
def dlq_list_command(stage: StageName = "dev", endpoint_url: EndpointUrl = None) -> None:
    """Messages in the stage's dead-letter queues (JSON)."""
    ops = open_stage(stage, endpoint_url)
    items = cl.dead_letter_documents(
        dead_letters.list_dead_letters(ops.queue, pipeline_queues(ops.config))
    )
    typer.echo(json.dumps(items, indent=2))


@aws_dlq_app.command("redrive")
def dlq_redrive_command(
    message_id: cl.MessageId = None,
    all_: cl.AllMessages = False,
    stage: StageName = "dev",
    endpoint_url: EndpointUrl = None,
) -> None:
    """Move dead-lettered messages back to their queue."""
    target = cl.redrive_target(message_id, all_)
    ops = open_stage(stage, endpoint_url)
    with cl.refusals(AutomlopsError):
        moved = dead_letters.redrive(ops.queue, pipeline_queues(ops.config), target)
    typer.echo(f"redrove {moved} message(s)")


@aws_app.command("teardown")
def teardown_command(
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: data and endpoints go.")] = False,
    stage: StageName = "dev",
    endpoint_url: EndpointUrl = None,
) -> None:
    """Delete the stage's endpoints and empty its buckets (before `serverless remove`)."""
    if not yes:
        raise cl.fail("teardown deletes data, models and endpoints: pass --yes")
    ops = open_stage(stage, endpoint_url)
    for line in teardown(ops.config, ops.session, ops.endpoint_url):
        typer.echo(line)
