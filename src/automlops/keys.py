"""The object key layout, in one place.

```
[data]             data/<dataset>/<upload>/<file>.csv   an upload through automlops (CLI, dashboard,
                                                        `aws upload`): triggers preprocess
                   data/<dataset>/<file>.csv            a file a person put there (cp, aws s3 cp):
                                                        triggers preprocess too
                   data/<dataset>/manifest.json         the dataset's manifest
                   score/<dataset>/<file>.{csv,parquet} files to score (trigger score)
                   score/<dataset>/<file>.json          its options (version...), written first
[automl-data]      automl/<dataset>/<run>/{train,validation,test}.parquet
                   automl/<dataset>/<run>/transform.json
                   automl/<dataset>/<run>/drift.json    the upload vs the champion's training data
                   automl/<dataset>/<run>/schema.json   written last (triggers train)
[model-output]     <dataset>/<run>/output/model.tar.gz  (triggers deploy)
                   registry/<dataset>.json              versions and champion
                   predictions/<dataset>/<run>/<file>   a scored file, in the input's format
                   predictions/<dataset>/<run>/errors.csv    rows that could not be read
                   predictions/<dataset>/<run>/lineage.json  input hash -> version -> output
                                                        (written last: the run is done)
                   predictions/<dataset>/<run>/parts/<n>.<ext>  chunks written so far
                   predictions/<dataset>/<run>/transform/<file>.out  a Batch Transform job's
                                                        output (above the function's size)
                   predictions/<dataset>/<run>/transform/batches/<sha256>-<random>.json
                       one record per mini-batch the job's container answered (rows read,
                       scored, the rows left out); the job's end sums them into errors.csv
                   runs/<dataset>/<run>/training-failure.json  (AWS) a training job's failure
                   runs/<dataset>/<run>/transform-job.json  (AWS) a scoring run's Batch Transform
                                                        job's end; runs/ holds only these
                                                        records, so listing it stays cheap
[model-monitoring] <dataset>/<date>/<run>/report.{json,md,html}  one evaluation (json last)
                   <dataset>/<date>/<run>/<plot>.png         the plots report.html shows
                   capture/<dataset>/v<version>/<yyyy-mm-dd>/<hh>/<part>.jsonl.gz
                       what the champion served, one gzip JSONL object per write and hour (UTC)
                   labels/<dataset>/<yyyymmddThhmmss.ffffffZ>-<source>.jsonl
                       ground truth as received (API or CSV), in arrival order: last wins
                   monitoring/<dataset>/<yyyymmddThhmmss.ffffffZ>/monitor.{json,html}
                       one monitor run (retrain.json beside it when a policy looked)
[data]             feedback/<dataset>/<file>.csv        labels dropped as CSV (id,label|value)
```

Each upload through automlops gets a folder of its own (`<upload>`: when and a random part), so
a second upload of the same file name never replaces the first before a worker has read it.
A file a person puts straight into `data/<dataset>/` is at a key of their choosing: replacing it
before its run starts is theirs to do, and preprocess refuses to name the new bytes after the
old notification (it checks the ETag the event announced).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from automlops.errors import PermanentError

SPLITS = ("train", "validation", "test")
SCHEMA_FILE = "schema.json"
MODEL_FILE = "output/model.tar.gz"


def source_key(dataset: str, filename: str, upload_id: str | None = None) -> str:
    """Where an upload is stored: in its upload's own folder when it has an id."""
    if upload_id is None:
        return f"{uploads_prefix(dataset)}{filename}"
    return f"{uploads_prefix(dataset)}{upload_id}/{filename}"


def uploads_prefix(dataset: str) -> str:
    """Every upload of a dataset lies under this prefix (in its own folder or not)."""
    return f"data/{dataset}/"


def manifest_key(dataset: str) -> str:
    return f"data/{dataset}/manifest.json"


def run_prefix(dataset: str, run_id: str) -> str:
    return f"automl/{dataset}/{run_id}/"


def split_key(dataset: str, run_id: str, split: str) -> str:
    return f"{run_prefix(dataset, run_id)}{split}.parquet"


def transform_key(dataset: str, run_id: str) -> str:
    return f"{run_prefix(dataset, run_id)}transform.json"


def schema_key(dataset: str, run_id: str) -> str:
    return f"{run_prefix(dataset, run_id)}{SCHEMA_FILE}"


def drift_key(dataset: str, run_id: str) -> str:
    """Where preprocess records how the upload of a run drifted from the champion's data."""
    return f"{run_prefix(dataset, run_id)}drift.json"


def model_key(dataset: str, run_id: str) -> str:
    return f"{dataset}/{run_id}/{MODEL_FILE}"


def registry_key(dataset: str) -> str:
    return f"registry/{dataset}.json"


def report_prefix(dataset: str, date: str, run_id: str) -> str:
    return f"{dataset}/{date}/{run_id}/"


def report_files(report_key: str) -> dict[str, str]:
    """The sibling files of an evaluation's report.json, by kind."""
    prefix = report_key.removesuffix("report.json")
    return {"json": report_key, "markdown": prefix + "REPORT.md", "html": prefix + "report.html"}


CAPTURE_SUFFIX = ".jsonl.gz"


def capture_prefix(dataset: str, version: int | None = None) -> str:
    """Captured traffic of a dataset, or of one of its versions."""
    base = f"capture/{dataset}/"
    return base if version is None else f"{base}v{version}/"


def capture_hour_prefix(dataset: str, version: int, hour: datetime) -> str:
    """Captured traffic of one version in one UTC hour."""
    return f"{capture_prefix(dataset, version)}{hour:%Y-%m-%d}/{hour:%H}/"


def capture_key(dataset: str, version: int, hour: datetime, part: str) -> str:
    """One write of captured requests: capture/<dataset>/v<version>/<yyyy-mm-dd>/<hh>/<part>."""
    return f"{capture_hour_prefix(dataset, version, hour)}{part}{CAPTURE_SUFFIX}"


def capture_key_hour(key: str) -> str | None:
    """The `<yyyy-mm-dd>/<hh>` a capture key was written for (None: not a capture key), which
    sorts as time does."""
    parts = key.split("/")
    if len(parts) != 6 or parts[0] != "capture" or not key.endswith(CAPTURE_SUFFIX):
        return None
    return f"{parts[3]}/{parts[4]}"


def labels_prefix(dataset: str) -> str:
    """Ground-truth batches of a dataset (monitoring bucket); keys sort in arrival order."""
    return f"labels/{dataset}/"


def labels_key(dataset: str, received: datetime, source: str) -> str:
    """One batch of labels, named by when it arrived and where from (`api-<id>`, `csv-<etag>`)."""
    return f"{labels_prefix(dataset)}{received:%Y%m%dT%H%M%S.%fZ}-{source}.jsonl"


def feedback_prefix(dataset: str) -> str:
    """Where label CSVs of a dataset are dropped (data bucket)."""
    return f"feedback/{dataset}/"


def monitor_prefix(dataset: str, at: datetime) -> str:
    """One monitor run's report files (monitoring bucket), stamped to the microsecond (two runs
    in one second must not share a folder; the fixed-width stamp sorts as time does)."""
    return f"monitoring/{dataset}/{at:%Y%m%dT%H%M%S.%fZ}/"


@dataclass(frozen=True)
class SourceRef:
    """An uploaded file: data/<dataset>/[<upload>/]<file>."""

    dataset: str
    filename: str  # the file's own name (as upload sanitised it), without its folder
    upload_id: str | None = None  # None for a file put straight into the dataset's folder


@dataclass(frozen=True)
class RunRef:
    """A pipeline run of one dataset, named after the content it processes."""

    dataset: str
    run_id: str


SCORE_PREFIX = "score/"
SCORE_OPTIONS_SUFFIX = ".json"


def score_key(dataset: str, filename: str) -> str:
    """Where a file to score is dropped (its write triggers the score stage)."""
    return f"{SCORE_PREFIX}{dataset}/{filename}"


def score_options_key(dataset: str, filename: str) -> str:
    """The sidecar of a file to score: its options, written before the file."""
    return score_key(dataset, filename) + SCORE_OPTIONS_SUFFIX


def run_records_prefix(dataset: str | None = None) -> str:
    """Where the AWS event handlers' run records are (every dataset's, or one's)."""
    return "runs/" if dataset is None else f"runs/{dataset}/"


def run_record_key(dataset: str, run_id: str, name: str) -> str:
    """One record of a run (`training-failure.json`, `transform-job.json`)."""
    return f"{run_records_prefix(dataset)}{run_id}/{name}"


def predictions_prefix(dataset: str, run_id: str) -> str:
    return f"predictions/{dataset}/{run_id}/"


def predictions_key(dataset: str, run_id: str, filename: str) -> str:
    """The scored file of a scoring run (named like its input)."""
    return f"{predictions_prefix(dataset, run_id)}{filename}"


def prediction_errors_key(dataset: str, run_id: str) -> str:
    return f"{predictions_prefix(dataset, run_id)}errors.csv"


def prediction_lineage_key(dataset: str, run_id: str) -> str:
    """Written last by a scoring run: its presence means the run's outputs are complete."""
    return f"{predictions_prefix(dataset, run_id)}lineage.json"


def prediction_part_key(dataset: str, run_id: str, index: int, suffix: str) -> str:
    """Chunk `index` of a scoring run's output (`suffix`: its extension or `errors.csv`)."""
    return f"{predictions_prefix(dataset, run_id)}parts/{index:06d}.{suffix}"


def transform_batches_prefix(dataset: str, run_id: str) -> str:
    """The records of a scoring run's Batch Transform mini-batches (model-output bucket)."""
    return f"{predictions_prefix(dataset, run_id)}transform/batches/"


def transform_batch_key(dataset: str, run_id: str, content_sha256: str, nonce: str) -> str:
    """One mini-batch's record: named by the mini-batch's content and a random part, so two
    answers (concurrent, or a retry) never overwrite each other, and a retry is known by its
    content (`parse_transform_batch_key`)."""
    return f"{transform_batches_prefix(dataset, run_id)}{content_sha256}-{nonce}.json"


def parse_transform_batch_key(key: str) -> str:
    """The content hash a mini-batch record's key names."""
    name = key.rsplit("/", 1)[-1]
    content, dash, _ = name.removesuffix(".json").rpartition("-")
    if not dash or not content or not key.endswith(".json"):
        raise PermanentError(f"{key}: not a transform mini-batch record key")
    return content


def parse_score_key(key: str) -> SourceRef:
    """Split score/<dataset>/<file> into its parts."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] + "/" != SCORE_PREFIX or not parts[1] or not parts[2]:
        raise PermanentError(f"{key}: files to score must be stored as score/<dataset>/<file>")
    return SourceRef(dataset=parts[1], filename=parts[2])


def parse_source_key(key: str) -> SourceRef:
    """Split data/<dataset>/[<upload>/]<file> into its parts."""
    parts = key.split("/")
    if (
        len(parts) not in (3, 4)
        or parts[0] != "data"
        or any(part in ("", ".", "..") for part in parts[1:])
    ):
        raise PermanentError(
            f"{key}: uploads must be stored as data/<dataset>/<file>.csv "
            "(or data/<dataset>/<upload>/<file>.csv)"
        )
    upload_id = parts[2] if len(parts) == 4 else None
    return SourceRef(dataset=parts[1], filename=parts[-1], upload_id=upload_id)


def parse_schema_key(key: str) -> RunRef:
    """Split automl/<dataset>/<run>/schema.json into its parts."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "automl" or parts[3] != SCHEMA_FILE:
        raise PermanentError(f"{key}: not a processed-data schema key")
    return RunRef(dataset=parts[1], run_id=parts[2])


def parse_model_key(key: str) -> RunRef:
    """Split <dataset>/<run>/output/model.tar.gz into its parts."""
    parts = key.split("/")
    if len(parts) != 4 or "/".join(parts[2:]) != MODEL_FILE:
        raise PermanentError(f"{key}: not a model artifact key")
    return RunRef(dataset=parts[0], run_id=parts[1])
