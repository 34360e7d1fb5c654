"""Stage 3: a new model.tar.gz is checked, registered, made servable and queued for evaluation."""

from __future__ import annotations

from automlops import keys
from automlops.errors import PermanentError
from automlops.events import EvaluationMessage, S3EventRecord
from automlops.ml.artifact_probe import checked_artifact
from automlops.ports import Ports
from automlops.registry import ModelVersion, Registry, VersionStatus
from automlops.stages.result import StageResult


def identify(record: S3EventRecord, ports: Ports) -> keys.RunRef:
    """The run a model.tar.gz belongs to, named by its key."""
    return keys.parse_model_key(record.key)


def deploy(record: S3EventRecord, ports: Ports) -> StageResult:
    """Register the artifact as a candidate version, host it, and ask for its evaluation.

    The artifact is untrusted until it passed `checked_artifact` (structure, sizes, feature
    indices, a load and a test prediction in a child process): one that fails fails the run
    with the reason and is never registered, so there is no version to serve or promote. A
    version whose hosting fails for good is rejected with the reason.
    """
    run = identify(record, ports)
    settings = ports.settings
    artifact = checked_artifact(ports.store.get(record.bucket, record.key), record.key)
    meta = artifact.metadata
    registry = Registry(ports.store, settings.buckets.model_output)
    entry = registry.register(
        run.dataset,
        ModelVersion(
            version=0,
            run_id=run.run_id,
            created_at=ports.clock().isoformat(),
            task=meta.task.value,
            # Recorded so that evaluate tells a champion of another target from the registry
            # alone, without loading the champion's model file.
            target=meta.target.name,
            learner=meta.learner,
            artifact_bucket=record.bucket,
            artifact_key=record.key,
            source_key=meta.lineage.source_key,
            source_sha256=meta.lineage.source_sha256,
            test_key=meta.lineage.split_keys["test"],
        ),
    )
    if entry.report_key is not None or entry.status is not VersionStatus.candidate:
        # A redelivered event for a version already evaluated: nothing left to do.
        return StageResult(run=run, duplicate=True, model_version=entry.version)
    try:
        endpoint = ports.host.deploy(run.dataset, entry.version, record.bucket, record.key)
    except PermanentError as exc:
        # Hosting cannot succeed (the endpoint failed, a quota is reached): the version is
        # rejected with the reason, so no candidate waits forever for an evaluation.
        registry.reject(run.dataset, entry.version, f"hosting failed: {exc}")
        raise
    registry.set_endpoint(run.dataset, entry.version, endpoint)
    message = EvaluationMessage(
        dataset=run.dataset,
        version=entry.version,
        run_id=run.run_id,
        endpoint=endpoint,
        bucket=settings.buckets.automl_data,
        test_key=entry.test_key,
    )
    ports.queue.send(settings.queues.evaluation, message.model_dump_json())
    return StageResult(run=run, model_version=entry.version, outputs=[endpoint])
