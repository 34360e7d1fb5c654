"""The lifecycle of a dataset's SageMaker resources, kept in step with its registry.

One endpoint per dataset serves the champion (`<prefix>-<dataset>-live`). A candidate is
evaluated on a short-lived endpoint of its own, deleted once it is decided. `reconcile` makes
SageMaker match the registry, and is run after every deploy, evaluation, promotion and
rollback (it is idempotent: running it twice changes nothing):

- the live endpoint runs the champion's endpoint config: created, or switched in place with
  UpdateEndpoint. Serverless endpoints have no deployment guardrails, so the switch is guarded
  by canaries: the champion's config answers a test row on its candidate endpoint before the
  switch (when that endpoint still runs), and the live endpoint must answer with the
  champion's version after it, else it is switched back and the registry rolled back;
- candidate endpoints of decided versions are deleted;
- models and endpoint configs are kept for the champion, the last `keep` earlier champions
  (what a rollback restores) and undecided candidates; the others are deleted.

Data capture: the serverless endpoints this stack creates do not support SageMaker's own
capture (a serverless feature exclusion), so the serving container captures its traffic itself
(`serving.sagemaker`, to the bucket its model's environment names: `SageMakerModelHost.
environment`). `data_capture_config` is SageMaker's own, for instance-backed variants: it writes
under the same version prefix of the monitoring bucket, where the monitor reads both layouts
(`stages.traffic`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from automlops import keys
from automlops.aws.sagemaker import (
    SageMakerModelHost,
    live_endpoint_name,
    resource_name,
    version_of,
)
from automlops.config import CaptureSettings
from automlops.errors import PermanentError
from automlops.ml.artifact import ModelArtifact
from automlops.ports import ObjectStore
from automlops.registry import ModelVersion, Registry, RegistryDoc, VersionStatus
from automlops.serving import wire

# Earlier champions whose model and endpoint config stay for a rollback.
DEFAULT_KEEP = 2
# Bodies of these types are captured as text (others as base64), as the monitor reads them.
CAPTURED_CONTENT_TYPES = {"CsvContentTypes": [wire.CSV], "JsonContentTypes": [wire.JSON]}


def data_capture_config(
    variant: dict[str, Any],
    bucket: str,
    dataset: str,
    version: int,
    capture: CaptureSettings,
) -> dict[str, Any] | None:
    """The `DataCaptureConfig` of a version's endpoint config with this production variant:
    requests and answers, the sampled share of `capture`, to the version's capture prefix of
    `bucket`. None when capture is off or the variant is serverless (SageMaker refuses capture
    there), so a caller may add it to every endpoint config it creates."""
    if "ServerlessConfig" in variant or not capture.enabled or capture.sample_rate <= 0:
        return None
    prefix = keys.capture_prefix(dataset, version).rstrip("/")
    return {
        "EnableCapture": True,
        # SageMaker takes whole percents: a positive rate captures at least 1 %.
        "InitialSamplingPercentage": max(1, round(capture.sample_rate * 100)),
        "DestinationS3Uri": f"s3://{bucket}/{prefix}",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": CAPTURED_CONTENT_TYPES,
    }


@dataclass
class Reconciled:
    """What one reconciliation did (logged; the tests read it)."""

    live: str | None = None
    serving: int | None = None
    switched_from: str | None = None
    deleted_endpoints: list[str] = field(default_factory=list)
    deleted_versions: list[str] = field(default_factory=list)


def undecided(entry: ModelVersion) -> bool:
    """A candidate still waiting for (or in) its evaluation."""
    return entry.status is VersionStatus.candidate and entry.report_key is None


def kept_versions(doc: RegistryDoc, keep: int) -> set[int]:
    """Versions whose model and endpoint config stay: the champion, the last `keep` earlier
    champions, and undecided candidates."""
    kept = {v.version for v in doc.versions if undecided(v)}
    if doc.champion is not None:
        kept.add(doc.champion)
    if keep > 0:
        kept.update(doc.champion_history[-keep:])
    return kept


class EndpointLifecycle:
    """Keeps a dataset's endpoints, endpoint configs and models in step with its registry."""

    def __init__(
        self,
        host: SageMakerModelHost,
        store: ObjectStore,
        registry: Registry,
        *,
        keep: int = DEFAULT_KEEP,
        canary_bucket: str | None = None,
    ) -> None:
        self.host = host
        self.store = store
        self.registry = registry
        self.keep = keep
        # Where the versions' test splits are (the automl-data bucket); None: no canary rows.
        self.canary_bucket = canary_bucket

    @property
    def prefix(self) -> str:
        return self.host.config.name_prefix

    def reconcile(self, dataset: str) -> Reconciled:
        """Make the dataset's SageMaker resources match its registry (see the module)."""
        doc = self.registry.read(dataset)
        done = Reconciled()
        champion = doc.champion_version()
        if champion is not None:
            self._serve(dataset, doc, champion, done)
            doc = self.registry.read(dataset)
        self._retire(dataset, doc, done)
        self._record_endpoints(dataset, done)
        return done

    def _serve(
        self, dataset: str, doc: RegistryDoc, champion: ModelVersion, done: Reconciled
    ) -> None:
        live = live_endpoint_name(self.prefix, dataset)
        config_name = self.host.ensure_version(
            dataset, champion.version, champion.artifact_bucket, champion.artifact_key
        )
        done.live, done.serving = live, champion.version
        current = self.host.endpoint_config(live)
        if current == config_name:
            self.host.wait_in_service(live)
            return
        candidate = resource_name(self.prefix, dataset, champion.version)
        tags = {"automlops:dataset": dataset, "automlops:role": "live"}
        try:
            if self.host.endpoint_config(candidate) == config_name:
                # Before the switch: the config answers on the endpoint it was evaluated on.
                self._canary(candidate, champion)
            done.switched_from = self.host.switch(live, config_name, tags)
            self._canary(live, champion)
        except PermanentError as exc:
            self._give_up(dataset, doc, champion, live, current, tags, str(exc))

    def _give_up(
        self,
        dataset: str,
        doc: RegistryDoc,
        champion: ModelVersion,
        live: str,
        previous: str | None,
        tags: dict[str, str],
        error: str,
    ) -> None:
        """A champion that cannot be served: the live endpoint goes back to the config it ran
        (if it was switched), the registry back to the previous champion (if there is one),
        and the failure is raised (permanent: the run, or the operator's command, fails)."""
        outcome = f"version {champion.version} failed its canary on {live}: {error}"
        if previous is not None and self.host.endpoint_config(live) != previous:
            try:
                self.host.switch(live, previous, tags)
            except Exception as exc:  # reported with the original failure
                outcome += f"; switching {live} back to {previous} failed too: {exc}"
        if doc.champion_history:
            self.registry.rollback(dataset, outcome)
            outcome += "; the previous champion is restored"
        raise PermanentError(outcome)

    def _canary(self, endpoint: str, entry: ModelVersion) -> None:
        """One test row through `endpoint` must be answered by `entry`'s version."""
        rows = self._canary_rows(entry)
        if rows is None:
            return
        answer = wire.invoke(self.host, endpoint, rows)
        if answer.model_version != str(entry.version) or len(answer.predictions) != len(rows):
            raise PermanentError(
                f"{endpoint} answered as version {answer.model_version} with "
                f"{len(answer.predictions)} prediction(s) for {len(rows)} row(s)"
            )

    def _canary_rows(self, entry: ModelVersion) -> list[dict[str, object]] | None:
        """The first row of the version's test split without its target (None: no split)."""
        if (
            self.canary_bucket is None
            or self.store.head(self.canary_bucket, entry.test_key) is None
        ):
            return None
        artifact = ModelArtifact.from_tar_gz(
            self.store.get(entry.artifact_bucket, entry.artifact_key), entry.artifact_key
        )
        frame = pl.read_parquet(io.BytesIO(self.store.get(self.canary_bucket, entry.test_key)))
        target = artifact.metadata.target.name
        return frame.head(1).drop(target, strict=False).to_dicts()

    def _retire(self, dataset: str, doc: RegistryDoc, done: Reconciled) -> None:
        """Delete decided candidates' endpoints and the versions no rollback needs."""
        undecided_versions = {v.version for v in doc.versions if undecided(v)}
        kept = kept_versions(doc, self.keep)
        stem = resource_name(self.prefix, dataset, 0)[:-1]  # "<base>-v"
        for name in self.host.names("endpoint", stem):
            version = version_of(self.prefix, dataset, name)
            if version is not None and version not in undecided_versions:
                self.host.delete_endpoint(name)
                done.deleted_endpoints.append(name)
        names = set(self.host.names("endpoint-config", stem)) | set(self.host.names("model", stem))
        for name in sorted(names):
            version = version_of(self.prefix, dataset, name)
            if version is not None and version not in kept:
                self.host.delete_version(name)
                done.deleted_versions.append(name)

    def _record_endpoints(self, dataset: str, done: Reconciled) -> None:
        """The registry names the endpoint each version is served on now (None: none)."""

        def served_on(doc: RegistryDoc, entry: ModelVersion) -> str | None:
            if entry.version == done.serving and doc.champion == done.serving:
                return done.live
            if entry.endpoint in done.deleted_endpoints:
                return None
            if entry.endpoint is not None and entry.endpoint == done.live:
                return None  # an earlier champion: the live endpoint serves another now
            return entry.endpoint

        def stale(doc: RegistryDoc) -> list[ModelVersion]:
            return [v for v in doc.versions if served_on(doc, v) != v.endpoint]

        def change(doc: RegistryDoc) -> None:
            for entry in stale(doc):
                entry.endpoint = served_on(doc, entry)

        if stale(self.registry.read(dataset)):  # no write (and no CAS race) when in step
            self.registry.update(dataset, change)
