"""Where a file is scored on AWS: in the score function while it fits, else a SageMaker Batch
Transform job running the project's image (its `/invocations`, the serving code) on the file.

The score function reads the whole file into memory and onto its disk (`stages.score`), so a
file above `AwsConfig.score_function_max_bytes` (at most a third of the function's memory)
goes to a transform job instead: CSV split by line into mini-batches, each answered by the
container as the local score stage writes rows (`serving.sagemaker.score_mini_batch`: the
input's columns or the id column, then `prediction` and `probability_<label>` per class, and
the explanation columns when asked), assembled by line into one CSV with one header line under
`predictions/<dataset>/<run>/transform/<file>.out`. The job's end, completed or failed, is
announced by EventBridge and recorded as `runs/<dataset>/<run>/transform-job.json`
(`transform_job_state` handler), beside a failed training job's record.

Unreadable rows get the local stage's treatment. The container records each mini-batch's
outcome under `transform/batches/` (`serving.transform_batches`: rows read and scored, the rows
left out by their line); the job's end sums the records (a retried mini-batch, known by its
content, once) and writes `errors.csv` (row, column, message; 1-based data rows) beside the
predictions. SageMaker does not say where a mini-batch sits in the file, so the rows are
numbered by streaming the file once and matching each line against the bad lines' hashes (only
when some row was left out; memory holds the bad lines only). Whether a row can be read depends
on its line alone, so a bad line repeated in the file is bad wherever it is: every occurrence
is listed and counted. More than the run's `max_bad_share` unreadable fails the run as the
local stage does (its record "Failed" with the count and the first row, the failed-run alert
sent); else it is recorded "Completed" with the rows and the error count.

The job runs the version's SageMaker model, the one hosting creates (`ensure_version`).
Launching is idempotent: a job of the run in progress or completed is found, not doubled.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from automlops import keys
from automlops.aws.config import AwsConfig
from automlops.aws.job_events import FINAL_STATES, read_state_change
from automlops.aws.sagemaker import (
    MAX_ATTEMPTS,
    SageMakerModelHost,
    limit_checked,
    training_job_name,
)
from automlops.errors import PermanentError
from automlops.events import S3EventRecord
from automlops.ml.batch import (
    RowError,
    ScoreOptions,
    TableFormat,
    errors_bytes,
    too_many_bad_rows,
)
from automlops.ports import ObjectStore, Ports
from automlops.routing import Stage

# The container reads them: one name for both sides. The job's environment names its run
# (EventBridge's detail carries it back) and where the container records its mini-batches.
from automlops.serving.sagemaker import (
    ENV_CSV_HEADER,
    ENV_SCORE_BUCKET,
    ENV_SCORE_DATASET,
    ENV_SCORE_OPTIONS,
    ENV_SCORE_RUN,
)
from automlops.serving.transform_batches import BadLine, MiniBatchRecord, line_digest
from automlops.stages import STAGES, StageResult
from automlops.stages.score import ScoreJob, plan

TRANSFORM_OUTPUT = "transform/"
RECORD_FILE = "transform-job.json"
_LIVE_STATES = ("InProgress", "Stopping", "Completed")
_HEADER_BYTES = 64 * 1024
# SageMaker's limit on one environment value.
_ENV_VALUE_MAX = 10240

Where = Literal["function", "transform"]


@dataclass(frozen=True)
class ScoringChoice:
    """Where a file is scored and why (logged with the run)."""

    where: Where
    reason: str


def choose_scoring(size: int, fmt: TableFormat, config: AwsConfig) -> ScoringChoice:
    """In the function while the file fits it, else a transform job. What a transform job
    cannot do is refused with why, never done differently: a Parquet file (it splits files
    by line)."""
    limit = config.score_function_bytes()
    if size <= limit:
        return ScoringChoice("function", f"{size:,} bytes fit in the function (<= {limit:,})")
    too_big = f"a file of {size:,} bytes is more than the score function takes ({limit:,})"
    if fmt is not TableFormat.csv:
        raise PermanentError(
            f"{too_big} and only CSV files are scored by a Batch Transform job: split it or "
            "drop it as CSV"
        )
    return ScoringChoice("transform", f"{size:,} bytes > {limit:,}: a Batch Transform job")


def transform_prefix(dataset: str, run_id: str) -> str:
    """Where a run's transform job writes its output (model-output bucket)."""
    return keys.predictions_prefix(dataset, run_id) + TRANSFORM_OUTPUT


def record_key(dataset: str, run_id: str) -> str:
    """Where a run's transform job's end is recorded (model-output bucket)."""
    return keys.run_record_key(dataset, run_id, RECORD_FILE)


@dataclass(frozen=True)
class TransformLaunch:
    """What launching (or finding) a run's transform job found."""

    job_name: str
    status: str
    created: bool
    output_prefix: str


class TransformJobLauncher:
    """Starts the Batch Transform job of a scoring run."""

    def __init__(self, config: AwsConfig, sagemaker_client: Any, s3_client: Any) -> None:
        self.config = config
        self.sagemaker = sagemaker_client
        self.s3 = s3_client

    def header(self, bucket: str, key: str) -> str:
        """The first line of a CSV in S3 (read by range: the file may be many GB)."""
        head = self.s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{_HEADER_BYTES - 1}")
        data: bytes = head["Body"].read()
        line, newline, _ = data.partition(b"\n")
        if not newline and len(data) >= _HEADER_BYTES:
            raise PermanentError(f"{key}: the header line is longer than {_HEADER_BYTES:,} bytes")
        return line.rstrip(b"\r").decode("utf-8", "replace").lstrip("\ufeff")

    def request(
        self, job: ScoreJob, model_name: str, bucket: str, header: str, attempt: int = 1
    ) -> dict[str, Any]:
        """The CreateTransformJob request of an attempt of a scoring run."""
        config, run = self.config, job.run
        source = f"s3://{bucket}/{keys.score_key(run.dataset, job.source.filename)}"
        # Scoring a file is not traffic: the model's capture is off in the job.
        environment = {
            ENV_SCORE_DATASET: run.dataset,
            ENV_SCORE_RUN: run.run_id,
            ENV_SCORE_BUCKET: config.bucket_model_output,
            ENV_SCORE_OPTIONS: job.options.model_dump_json(exclude_defaults=True),
            "AUTOMLOPS_CAPTURE": "0",
        }
        if len(header) <= _ENV_VALUE_MAX:
            environment[ENV_CSV_HEADER] = header
        return {
            "TransformJobName": training_job_name(config.name_prefix, run.run_id, attempt),
            "ModelName": model_name,
            "BatchStrategy": "MultiRecord",
            # Mini-batches of lines well under the invocation body limit of the container.
            "MaxPayloadInMB": config.transform_max_payload_mb,
            "MaxConcurrentTransforms": 1,
            "Environment": environment,
            "TransformInput": {
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": source,
                    }
                },
                "ContentType": "text/csv",
                "CompressionType": "None",
                "SplitType": "Line",
            },
            "TransformOutput": {
                "S3OutputPath": f"s3://{config.bucket_model_output}/"
                + transform_prefix(run.dataset, run.run_id).rstrip("/"),
                "Accept": "text/csv",
                "AssembleWith": "Line",
                **({"KmsKeyId": config.kms_key_arn} if config.kms_key_arn else {}),
            },
            "TransformResources": {
                "InstanceType": config.transform_instance_type,
                "InstanceCount": 1,
                **({"VolumeKmsKeyId": config.kms_key_arn} if config.kms_key_arn else {}),
            },
            "Tags": [
                {"Key": "automlops:stack", "Value": config.name_prefix},
                {"Key": "automlops:dataset", "Value": run.dataset},
                {"Key": "automlops:run", "Value": run.run_id},
                {"Key": "automlops:version", "Value": str(job.version.version)},
            ],
        }

    def launch(self, job: ScoreJob, model_name: str, bucket: str) -> TransformLaunch:
        """Find the run's job in progress (or completed), else start its next attempt (a
        failed or stopped one stays failed, its end recorded by `transform_job_state`)."""
        header = self.header(bucket, keys.score_key(job.run.dataset, job.source.filename))
        output = transform_prefix(job.run.dataset, job.run.run_id)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            request = self.request(job, model_name, bucket, header, attempt)
            name = request["TransformJobName"]
            existing = self._describe(name)
            if existing is not None:
                status = existing["TransformJobStatus"]
                if status in _LIVE_STATES:
                    return TransformLaunch(name, status, False, output)
                continue
            try:
                self.sagemaker.create_transform_job(**request)
            except ClientError as exc:
                found = self._describe(name)  # two deliveries racing: the other one made it
                if found is None:
                    raise limit_checked(f"transform job {name}", exc) from None
                return TransformLaunch(name, found["TransformJobStatus"], False, output)
            return TransformLaunch(name, "InProgress", True, output)
        raise PermanentError(
            f"scoring run {job.run.run_id} already had {MAX_ATTEMPTS} transform jobs, all "
            "failed or stopped"
        )

    def _describe(self, name: str) -> dict[str, Any] | None:
        try:
            return self.sagemaker.describe_transform_job(TransformJobName=name)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", "")
            if "Could not find" in message or code in ("ValidationException", "ResourceNotFound"):
                return None
            raise


class ScoreDispatcher:
    """The score stage in aws mode: the same stage function, or a transform job."""

    def __init__(
        self, config: AwsConfig, launcher: TransformJobLauncher, host: SageMakerModelHost
    ) -> None:
        self.config = config
        self.launcher = launcher
        self.host = host

    def __call__(self, record: S3EventRecord, ports: Ports) -> StageResult:
        """Score in the function, or launch (or find) the run's transform job."""
        size = record.s3.object.size
        if not size:  # a hand-made event: ask the store
            info = ports.store.head(record.bucket, record.key)
            size = 0 if info is None else info.size
        job = plan(record, ports)
        choice = choose_scoring(size, job.fmt, self.config)
        ports.progress(f"scoring in the {choice.where}: {choice.reason}")
        if choice.where == "function":
            return STAGES[Stage.score].run(record, ports)
        done = read_record(ports.store, self.config.bucket_model_output, job.run)
        if done is not None and done.status == "Completed":
            return StageResult(run=job.run, duplicate=True, note=f"already scored by {done.job}")
        version = job.version
        model = self.host.ensure_version(
            job.run.dataset, version.version, version.artifact_bucket, version.artifact_key
        )
        launched = self.launcher.launch(job, model, record.bucket)
        verb = "launched" if launched.created else f"found ({launched.status})"
        return StageResult(
            run=job.run,
            outputs=[f"transform-job/{launched.job_name}"],
            duplicate=not launched.created,
            model_version=version.version,
            note=f"Batch Transform job {launched.job_name} {verb} with version "
            f"{version.version}; it writes {launched.output_prefix}",
        )


class TransformJobRecord(BaseModel):
    """The end of a scoring run's transform job (`transform-job.json`)."""

    dataset: str
    run_id: str
    job: str
    # Completed | Failed | Stopped: SageMaker's, but Failed too for a job that completed with
    # more unreadable rows than the run's max_bad_share (`reason` says so).
    status: str
    reason: str | None = None
    output: str | None = None  # the S3 prefix holding the job's output (job completed)
    # The predictions file (Completed): the input's columns, then the prediction columns.
    predictions: str | None = None
    at: str
    # The job completed: its data rows, those it left out, and where errors.csv names them
    # (None: no mini-batch recorded its outcome).
    rows: int | None = None
    error_rows: int | None = None
    errors: str | None = None


class TransformJobDetail(BaseModel):
    """The part of EventBridge's "SageMaker Transform Job State Change" detail read here (the
    job's DescribeTransformJob answer)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    job_name: str = Field(alias="TransformJobName")
    status: str = Field(alias="TransformJobStatus")
    failure_reason: str | None = Field(default=None, alias="FailureReason")
    environment: dict[str, str] = Field(default_factory=dict, alias="Environment")
    output: dict[str, Any] = Field(default_factory=dict, alias="TransformOutput")
    input: dict[str, Any] = Field(default_factory=dict, alias="TransformInput")

    def source_uri(self) -> str | None:
        """The scored file (the job's one input object)."""
        uri = self.input.get("DataSource", {}).get("S3DataSource", {}).get("S3Uri")
        return uri if isinstance(uri, str) else None

    def predictions_uri(self) -> str | None:
        """Where the job wrote the predictions of its one input file: SageMaker names the
        output `<input file name>.out` under the output path."""
        path = self.output.get("S3OutputPath")
        source = self.source_uri()
        if not path or not source:
            return None
        return f"{path.rstrip('/')}/{source.rsplit('/', 1)[-1]}.out"


@dataclass(frozen=True)
class TransformJobEnd:
    """A scoring run's transform job that ended: its record so far, the run's options and the
    scored file (bucket, key), as the job's description tells them."""

    record: TransformJobRecord
    options: ScoreOptions
    source: tuple[str, str] | None


def end_of(event: dict[str, Any]) -> TransformJobEnd | None:
    """The end an EventBridge event announces; None for a state that is no end. PermanentError
    when the event is not a transform job state change of a scoring run."""
    change = read_state_change(event, TransformJobDetail, "transform job")
    detail = change.detail
    if detail.status not in FINAL_STATES:
        return None
    env = detail.environment
    if ENV_SCORE_DATASET not in env or ENV_SCORE_RUN not in env:
        raise PermanentError(f"transform job {detail.job_name} names no dataset and run")
    try:
        options = ScoreOptions.model_validate_json(env.get(ENV_SCORE_OPTIONS) or "{}")
    except ValueError as exc:
        raise PermanentError(f"transform job {detail.job_name}: bad options: {exc}") from None
    failed = detail.status != "Completed"
    record = TransformJobRecord(
        dataset=env[ENV_SCORE_DATASET],
        run_id=env[ENV_SCORE_RUN],
        job=detail.job_name,
        status=detail.status,
        reason=(detail.failure_reason or f"the job was {detail.status.lower()}")
        if failed
        else None,
        output=None if failed else detail.output.get("S3OutputPath"),
        predictions=None if failed else detail.predictions_uri(),
        at=change.time,
    )
    uri = detail.source_uri()
    source = None
    if uri is not None and uri.startswith("s3://"):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        source = (bucket, key)
    return TransformJobEnd(record, options, source)


def write_record(store: ObjectStore, bucket: str, record: TransformJobRecord) -> str:
    """Record a transform job's end on its run (the latest attempt's wins); returns its key."""
    key = record_key(record.dataset, record.run_id)
    store.put(bucket, key, record.model_dump_json(indent=1).encode())
    return key


def list_records(
    store: ObjectStore, bucket: str, dataset: str | None = None
) -> list[TransformJobRecord]:
    """The recorded transform job ends of scoring runs (of `dataset`, else all), newest first.
    Lists the run records only (`runs/`), never the predictions and their parts."""
    found = [
        TransformJobRecord.model_validate_json(store.get(bucket, key))
        for key in store.list(bucket, keys.run_records_prefix(dataset))
        if key.endswith("/" + RECORD_FILE)
    ]
    return sorted(found, key=lambda r: r.at, reverse=True)


def read_record(store: ObjectStore, bucket: str, run: keys.RunRef) -> TransformJobRecord | None:
    """A run's recorded transform job end, None when there is none."""
    key = record_key(run.dataset, run.run_id)
    if store.head(bucket, key) is None:
        return None
    return TransformJobRecord.model_validate_json(store.get(bucket, key))


# -- unreadable rows: the mini-batches' records summed at the job's end ------------------------

# Bad lines held at once while the file is streamed (the rest counted, not numbered): a few
# tens of MB at most, whatever the file.
MAX_NAMED_ERRORS = 100_000
_READ_BYTES = 1 << 20


@dataclass
class BatchTally:
    """What a run's mini-batch records add up to (a retried mini-batch counted once)."""

    records: int = 0
    rows: int = 0
    bad: int = 0
    named: dict[str, BadLine] = field(default_factory=dict)  # by the line's SHA-256


def tally_batches(store: ObjectStore, bucket: str, run: keys.RunRef) -> BatchTally:
    """Sum the mini-batch records of a run's transform job. Two records of the same content
    are one mini-batch answered twice (SageMaker retried it) and count once; so would two
    mini-batches of identical bytes, which only a file repeating whole blocks of lines has."""
    tally = BatchTally()
    seen: set[str] = set()
    for key in store.list(bucket, keys.transform_batches_prefix(run.dataset, run.run_id)):
        content = keys.parse_transform_batch_key(key)
        if content in seen:
            continue
        seen.add(content)
        record = MiniBatchRecord.model_validate_json(store.get(bucket, key))
        tally.records += 1
        tally.rows += record.rows
        tally.bad += record.bad
        for line in record.named:
            # The same line elsewhere is found by the stream; over the cap, rows are counted
            # (by `bad`) but not numbered.
            if len(tally.named) < MAX_NAMED_ERRORS:
                tally.named.setdefault(line.sha256, line)
    return tally


def number_bad_rows(
    lines: Iterable[bytes], named: dict[str, BadLine]
) -> tuple[int, list[RowError]]:
    """Stream a CSV file's lines (without line breaks) once: its data rows (non-empty lines
    after the header line), and a `RowError` (1-based data row) for every line among `named`
    (every occurrence: a line is bad wherever it is). Only lines of a bad line's length are
    hashed."""
    lengths = {line.length for line in named.values()}
    rows = 0
    header = True
    errors: list[RowError] = []
    for line in lines:
        if not line:
            continue
        if header:
            header = False
            continue
        rows += 1
        if len(line) in lengths:
            bad = named.get(line_digest(line))
            if bad is not None:
                errors.append(RowError(rows, bad.column, bad.message))
    return rows, errors


def s3_lines(s3_client: Any, bucket: str, key: str) -> Iterator[bytes]:
    """An S3 object's lines (split at `\\n`, a trailing `\\r` dropped), read a MB at a time."""
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"]
    rest = b""
    for chunk in body.iter_chunks(_READ_BYTES):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield line.removesuffix(b"\r")
    if rest:
        yield rest.removesuffix(b"\r")


def settle(
    end: TransformJobEnd, store: ObjectStore, s3_client: Any, bucket: str
) -> TransformJobRecord:
    """A completed job's record with its unreadable rows: errors.csv written beside the
    predictions (before the record), and the run failed when more than the run's
    `max_bad_share` of its rows are unreadable. A job that did not complete, or whose container
    recorded no mini-batch, is returned as it is."""
    record = end.record
    if record.status != "Completed":
        return record
    run = keys.RunRef(record.dataset, record.run_id)
    tally = tally_batches(store, bucket, run)
    if tally.records == 0:
        return record
    rows, errors = tally.rows, list[RowError]()
    if tally.named and end.source is not None:
        rows, errors = number_bad_rows(s3_lines(s3_client, *end.source), tally.named)
    # Each bad row is counted once by its mini-batch's record; the stream finds every
    # occurrence of a named line (more only where byte-identical mini-batches counted once).
    bad = max(tally.bad, len(errors))
    errors_key = keys.prediction_errors_key(run.dataset, run.run_id)
    store.put(bucket, errors_key, errors_bytes(errors))
    done = record.model_copy(update={"rows": rows, "error_rows": bad, "errors": errors_key})
    share = end.options.max_bad_share
    if not bad or bad <= share * rows:
        return done
    filename = "the file" if end.source is None else end.source[1].rsplit("/", 1)[-1]
    first = errors[0] if errors else None
    reason = too_many_bad_rows(filename, bad, rows, share, first, so_far=False)
    return done.model_copy(update={"status": "Failed", "reason": reason, "predictions": None})
