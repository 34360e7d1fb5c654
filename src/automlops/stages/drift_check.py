"""The drift check preprocess runs on every upload, before anything is trained on it.

The upload is compared with the current champion's training split (the rows that model learned
from), the comparison is written as drift.json beside the run's splits, and the manifest's
`drift` setting decides: `warn` adds a note to the schema, `block` fails the run.
"""

from __future__ import annotations

import io

import polars as pl
import pyarrow.parquet as pq

from automlops import keys
from automlops.config import Manifest, Task
from automlops.errors import PermanentError
from automlops.ml.evaluation import drift
from automlops.ports import Ports
from automlops.registry import ModelVersion, Registry
from automlops.tabular.schema import DatasetSchema

# Rows compared per side at most. PSI over deciles and frequent categories is settled long
# before this many rows, and with more the chi-square test only calls ever smaller shifts
# significant (PSI is what has to be material); a seeded sample keeps a 4-million-row upload
# and its champion's training split from doubling preprocess's memory.
DRIFT_MAX_ROWS = 500_000


def check_drift(
    ports: Ports,
    run: keys.RunRef,
    frame: pl.DataFrame,
    target: str,
    manifest: Manifest,
    source: str,
) -> list[str]:
    """Write drift.json for this upload; returns notes, raises PermanentError under `block`."""
    store, buckets = ports.store, ports.settings.buckets
    report = drift.DriftReport(
        dataset=run.dataset,
        run_id=run.run_id,
        source_key=source,
        created_at=ports.clock().isoformat(),
        action=manifest.drift,
        rows=frame.height,
    )
    champion = Registry(store, buckets.model_output).read(run.dataset).champion_version()
    train_key = "" if champion is None else keys.split_key(run.dataset, champion.run_id, "train")
    if champion is None:
        report.notes.append("no champion yet: nothing to compare with")
    elif store.head(buckets.automl_data, train_key) is None:
        report.notes.append(f"the champion's training data {train_key} is gone")
    else:
        _compare_with_champion(ports, report, champion, train_key, frame, target)
    drift_key = keys.drift_key(run.dataset, run.run_id)
    store.put(buckets.automl_data, drift_key, report.model_dump_json(indent=1).encode())
    return _verdict(report, manifest, source, f"{buckets.automl_data}/{drift_key}")


def _compare_with_champion(
    ports: Ports,
    report: drift.DriftReport,
    champion: ModelVersion,
    train_key: str,
    frame: pl.DataFrame,
    target: str,
) -> None:
    """Compare the upload with the champion's training split; the findings go into `report`."""
    seed = ports.settings.seed
    baseline, baseline_rows = read_sample(
        ports.store.get(ports.settings.buckets.automl_data, train_key), seed
    )
    if baseline.height < baseline_rows:
        report.notes.append(
            f"the champion's {baseline_rows:,} training rows compared through a seeded "
            f"sample of {baseline.height:,}"
        )
    current = frame
    if frame.height > DRIFT_MAX_ROWS:
        current = frame.sample(DRIFT_MAX_ROWS, seed=seed)
        report.notes.append(
            f"the upload's {frame.height:,} rows compared through a seeded sample of "
            f"{DRIFT_MAX_ROWS:,}"
        )
    kinds, known, target_kind = training_view(ports, report.dataset, champion.run_id, baseline)
    columns, new, vanished, skipped = drift.compare_frames(
        baseline,
        current,
        {k: v for k, v in kinds.items() if k != target},
        known_columns=known,
        target=target,
        target_kind=target_kind,
    )
    report.baseline = drift.BaselineRef(
        version=champion.version,
        run_id=champion.run_id,
        train_key=train_key,
        rows=baseline.height,
    )
    report.columns, report.new_columns = columns, new
    report.vanished_columns, report.skipped = vanished, skipped
    report.drifted = [c.name for c in columns if c.drifted and c.role == "feature"] + vanished


def _verdict(report: drift.DriftReport, manifest: Manifest, source: str, where: str) -> list[str]:
    """The manifest's `drift` setting applied: no notes without drift, a note under `warn`,
    PermanentError under `block` (naming `where` the report is)."""
    if not report.drifted:
        return []
    assert report.baseline is not None
    message = (
        f"data drift against the training data of champion v{report.baseline.version} "
        f"in {len(report.drifted)} column(s): {report.describe()}"
    )
    if manifest.drift == "block":
        raise PermanentError(
            f"{source}: {message}. The manifest's drift setting is 'block', so nothing was "
            f"trained; see {where}"
        )
    return [message]


def read_sample(data: bytes, seed: int) -> tuple[pl.DataFrame, int]:
    """A Parquet split (or a seeded sample of about DRIFT_MAX_ROWS of its rows when it is
    bigger) and its row count.

    Row groups are read one at a time and sampled, so the whole split is never in memory.
    """
    reader = pq.ParquetFile(io.BytesIO(data))
    total = reader.metadata.num_rows
    if total <= DRIFT_MAX_ROWS:
        return pl.read_parquet(io.BytesIO(data)), total
    parts = []
    for i in range(reader.num_row_groups):
        group = pl.from_arrow(reader.read_row_group(i))
        assert isinstance(group, pl.DataFrame)
        share = round(group.height * DRIFT_MAX_ROWS / total)
        parts.append(group.sample(min(share, group.height), seed=seed + i))
    return pl.concat(parts), total


def training_view(
    ports: Ports, dataset: str, run_id: str, baseline: pl.DataFrame
) -> tuple[dict[str, str], list[str], drift.Kind]:
    """Feature kinds as training decided them, every column training saw, the target's kind."""
    store, bucket = ports.store, ports.settings.buckets.automl_data
    schema_key = keys.schema_key(dataset, run_id)
    if store.head(bucket, schema_key) is None:
        # No schema to ask: judge by the stored dtypes.
        kinds = {
            c: "numeric" if baseline[c].dtype.is_numeric() else "categorical"
            for c in baseline.columns
        }
        return kinds, baseline.columns, "categorical"
    schema = DatasetSchema.model_validate_json(store.get(bucket, schema_key))
    kinds = {c.name: c.kind for c in schema.columns if c.kind and c.decision.startswith("feature")}
    target_kind: drift.Kind = "numeric" if schema.target.task is Task.regression else "categorical"
    return kinds, [c.name for c in schema.columns], target_kind
