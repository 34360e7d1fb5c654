"""Entry point of the SageMaker image: `train` (a training job) or `serve` (an endpoint).

SageMaker starts the image as `<entrypoint> train` or `<entrypoint> serve`. Training runs the
very train stage of the local runtime and the train function, over a store whose reads come
from the job's input channels (`/opt/ml/input/data/<channel>/`) and whose model write lands in
`/opt/ml/model`, which SageMaker packs into `<output path>/<job>/output/model.tar.gz`.
Serving runs the SageMaker contract app (`serving.sagemaker`), capturing its traffic to S3
when the model's environment names a capture bucket (`endpoint_capture`), and in a Batch
Transform job recording each mini-batch's outcome to S3 (`transform_batches`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from automlops import keys
from automlops.config import Buckets, Queues, Settings
from automlops.errors import ConflictError, NotFoundError, PermanentError
from automlops.events import SqsRecord, object_created
from automlops.ml.artifact import METADATA, TRANSFORM, ModelArtifact
from automlops.ports import DeadLetter, ObjectInfo, ObjectStore, Ports
from automlops.routing import Stage
from automlops.stages import STAGES, StageResult

if TYPE_CHECKING:
    from automlops.serving.capture import CaptureWriter
    from automlops.serving.transform_batches import MiniBatchLog

OPT_ML = Path("/opt/ml")


class ChannelStore:
    """An ObjectStore inside a training job.

    Reads of the channel keys come from the channel files; any other read goes to `fallback`
    (S3 with the job's role) when given. The one write allowed is the run's model artifact,
    unpacked into the model directory and written to `fallback` only if absent there.
    """

    def __init__(
        self,
        files: dict[tuple[str, str], Path],
        model_dir: Path,
        model_target: tuple[str, str],
        fallback: ObjectStore | None = None,
    ) -> None:
        self.files = files
        self.model_dir = model_dir
        self.model_target = model_target
        self.fallback = fallback

    def _info(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        return ObjectInfo(bucket=bucket, key=key, size=len(data), etag=digest)

    def _file_info(self, bucket: str, key: str, path: Path) -> ObjectInfo:
        # Hashed in chunks: a channel holds the whole training set.
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            digest = hashlib.file_digest(handle, lambda: hashlib.md5(usedforsecurity=False))
        return ObjectInfo(bucket=bucket, key=key, size=size, etag=digest.hexdigest())

    def get(self, bucket: str, key: str) -> bytes:
        """Read a channel file, else the fallback store."""
        path = self.files.get((bucket, key))
        if path is not None:
            return path.read_bytes()
        if self.fallback is None or (bucket, key) == self.model_target:
            raise NotFoundError(f"no such object in the job's channels: s3://{bucket}/{key}")
        return self.fallback.get(bucket, key)

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """Channel files are present; the model is absent until this job writes it."""
        path = self.files.get((bucket, key))
        if path is not None:
            return self._file_info(bucket, key, path)
        if (bucket, key) == self.model_target:
            return None
        return None if self.fallback is None else self.fallback.head(bucket, key)

    def put(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        """Accept only the run's model.tar.gz: its members go to the model directory."""
        if (bucket, key) != self.model_target:
            raise PermanentError(f"a training job writes only its model, not s3://{bucket}/{key}")
        artifact = ModelArtifact.from_tar_gz(data, key)  # validates before anything is written
        self.model_dir.mkdir(parents=True, exist_ok=True)
        members = {
            METADATA: artifact.metadata.model_dump_json(indent=1).encode(),
            TRANSFORM: artifact.transform.model_dump_json(indent=1).encode(),
            artifact.metadata.model_file: artifact.model,
        }
        for name, payload in members.items():
            (self.model_dir / Path(name).name).write_bytes(payload)
        if self.fallback is not None:
            try:
                return self.fallback.put_if(bucket, key, data, if_match=None)
            except ConflictError:
                # Another attempt of this run wrote its model first: that one stays (deploy
                # may already have registered it), this one is not needed.
                print(f"s3://{bucket}/{key} already exists; kept as it is", flush=True)
        return self._info(bucket, key, data)

    def put_file(self, bucket: str, key: str, source: Path) -> ObjectInfo:
        """`put` of a file's bytes (the model is small; only the model may be written)."""
        if (bucket, key) != self.model_target:
            raise PermanentError(f"a training job writes only its model, not s3://{bucket}/{key}")
        return self.put(bucket, key, source.read_bytes())

    @contextmanager
    def writer(self, bucket: str, key: str) -> Iterator[BinaryIO]:
        """`put_file` of what the block writes (only the model may be written)."""
        if (bucket, key) != self.model_target:
            raise PermanentError(f"a training job writes only its model, not s3://{bucket}/{key}")
        with tempfile.TemporaryDirectory(prefix="automlops-model-") as scratch:
            path = Path(scratch) / "object"
            with open(path, "wb") as handle:
                yield handle
            self.put_file(bucket, key, path)

    def put_if(self, bucket: str, key: str, data: bytes, *, if_match: str | None) -> ObjectInfo:
        """Only the model's only-if-absent write (what train asks for): `put`, which writes
        it to S3 only if absent and keeps an earlier attempt's file."""
        if if_match is None and (bucket, key) == self.model_target:
            return self.put(bucket, key, data)
        raise PermanentError("a training job does not update shared documents")

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        local = sorted(k for (b, k) in self.files if b == bucket and k.startswith(prefix))
        return local or ([] if self.fallback is None else self.fallback.list(bucket, prefix))

    def local_file(self, bucket: str, key: str) -> Path | None:
        """Channel files are local; anything else is not."""
        return self.files.get((bucket, key))

    def get_tags(self, bucket: str, key: str) -> dict[str, str]:
        """Channel files carry no tags; other objects' come from the fallback store."""
        if (bucket, key) in self.files:
            return {}
        if self.fallback is None or (bucket, key) == self.model_target:
            raise NotFoundError(f"no such object in the job's channels: s3://{bucket}/{key}")
        return self.fallback.get_tags(bucket, key)

    def put_tags(self, bucket: str, key: str, tags: dict[str, str]) -> None:
        raise PermanentError("a training job does not tag objects")


class _NoQueue:
    """Training sends no messages; its output write is what triggers deploy. Every Queue call
    but an empty receive is refused: one would be a bug in the train stage."""

    def _refuse(self) -> PermanentError:
        return PermanentError("a training job has no queue")

    def send(self, queue: str, body: str, *, delay_s: float = 0.0) -> str:
        raise self._refuse()

    def receive(
        self, queue: str, *, max_messages: int = 1, visibility_timeout_s: float | None = None
    ) -> list[SqsRecord]:
        return []

    def delete(self, queue: str, receipt_handle: str) -> None:
        raise self._refuse()

    def change_visibility(self, queue: str, receipt_handle: str, timeout_s: float) -> None:
        raise self._refuse()

    def record_error(self, queue: str, receipt_handle: str, error: str) -> None:
        raise self._refuse()

    def dead_letter(self, queue: str, message: SqsRecord, error: str) -> None:
        raise self._refuse()

    def dead_letter_exhausted(self, queue: str) -> list[DeadLetter]:
        return []

    def counts(self, queue: str) -> tuple[int, int]:
        return (0, 0)

    def dead_letters(self, queue: str) -> list[DeadLetter]:
        return []

    def redrive(self, queue: str, message_id: str | None = None) -> int:
        raise self._refuse()


class _NoHost:
    def deploy(self, dataset: str, version: int, artifact_bucket: str, artifact_key: str) -> str:
        raise PermanentError("a training job does not host models")

    def invoke(self, endpoint: str, body: bytes, *, content_type: str, accept: str) -> bytes:
        raise PermanentError("a training job does not call endpoints")


def _channel_file(directory: Path) -> Path:
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    if len(files) != 1:
        raise PermanentError(f"channel {directory} holds {len(files)} files; expected one")
    return files[0]


def train_in_job(opt_ml: Path = OPT_ML, fallback: ObjectStore | None = None) -> StageResult:
    """Run the train stage on the job's channels; the model lands in `<opt_ml>/model`."""
    params: dict[str, Any] = json.loads(
        (opt_ml / "input" / "config" / "hyperparameters.json").read_text()
    )
    dataset, run_id = params["dataset"], params["run_id"]
    automl_bucket, model_bucket = params["automl_data_bucket"], params["model_output_bucket"]
    channels: dict[str, str] = json.loads(params["channels"])
    files = {
        (automl_bucket, key): _channel_file(opt_ml / "input" / "data" / name)
        for name, key in channels.items()
    }
    model_target = (model_bucket, keys.model_key(dataset, run_id))
    store = ChannelStore(files, opt_ml / "model", model_target, fallback)
    settings = Settings(
        buckets=Buckets(
            data=params.get("data_bucket", "data"),
            automl_data=automl_bucket,
            model_output=model_bucket,
            model_monitoring=params.get("model_monitoring_bucket", "model-monitoring"),
        ),
        queues=Queues(events="", evaluation=""),
    )
    ports = Ports(
        store=store,
        queue=_NoQueue(),
        host=_NoHost(),
        settings=settings,
        progress=lambda text: print(text, flush=True),
    )
    schema_key = channels["schema"]
    size = files[(automl_bucket, schema_key)].stat().st_size
    record = object_created(
        automl_bucket, schema_key, size=size, etag="", configuration_id="sagemaker-training-job"
    ).records[0]
    return STAGES[Stage.train].run(record, ports)


def main(argv: list[str] | None = None) -> int:
    """`train` or `serve`, as SageMaker passes them."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "serve"
    if command == "serve":
        from automlops.serving.sagemaker import serve

        serve(capture=endpoint_capture(), batches=transform_batches())
        return 0
    if command == "train":
        try:
            result = train_in_job(fallback=_s3_fallback())
        except Exception as exc:
            # SageMaker shows the content of this file as the job's FailureReason.
            failure = OPT_ML / "output" / "failure"
            failure.parent.mkdir(parents=True, exist_ok=True)
            failure.write_text(f"{type(exc).__name__}: {exc}"[:1000])
            traceback.print_exc()
            return 1
        print(f"trained {result.run.dataset}/{result.run.run_id}: {result.headline}", flush=True)
        return 0
    print(f"unknown command {command!r}; expected train or serve", file=sys.stderr)
    return 2


def endpoint_capture(store: ObjectStore | None = None) -> CaptureWriter | None:
    """The capture writer of an endpoint's container: to the bucket its environment names
    ($AUTOMLOPS_CAPTURE_BUCKET, set by hosting), tuned by the same $AUTOMLOPS_CAPTURE* as
    locally; None when no bucket is named or capture is off. `store` defaults to S3 with the
    endpoint's role (which may put objects under capture/ of that bucket only)."""
    from automlops.config import CaptureSettings
    from automlops.serving.capture import capture_writer
    from automlops.serving.sagemaker import ENV_CAPTURE_BUCKET

    bucket = os.environ.get(ENV_CAPTURE_BUCKET)
    if not bucket:
        return None
    settings = CaptureSettings()
    if not settings.enabled:
        return None
    if store is None:
        import boto3

        from automlops.aws.s3_store import S3ObjectStore

        store = S3ObjectStore(boto3.client("s3"))
    return capture_writer(store, bucket, settings)


def transform_batches(store: ObjectStore | None = None) -> MiniBatchLog | None:
    """Where a Batch Transform job's container records its mini-batches (the run and bucket
    its environment names, `aws.transform`); None outside a transform job. `store` defaults to
    S3 with the job's role (which may put objects under transform/batches/ of that bucket)."""
    from automlops.serving.sagemaker import ENV_SCORE_BUCKET, transform_batch_log

    if not os.environ.get(ENV_SCORE_BUCKET):
        return None
    if store is None:
        import boto3

        from automlops.aws.s3_store import S3ObjectStore

        store = S3ObjectStore(boto3.client("s3"))
    return transform_batch_log(store)


def _s3_fallback() -> ObjectStore | None:
    try:
        import boto3

        from automlops.aws.s3_store import S3ObjectStore

        return S3ObjectStore(boto3.client("s3"))
    except Exception:  # no credentials or region: the channels must suffice
        return None


if __name__ == "__main__":
    sys.exit(main())
