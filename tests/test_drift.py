"""Data drift: the upload against the champion's training data, warn or block."""

from __future__ import annotations

import io
import json

import numpy as np
import polars as pl
import pytest

from automlops import keys
from automlops.config import Manifest, Task
from automlops.demo import breast_cancer_csv
from automlops.local.runtime import LocalRuntime
from automlops.local.worker import Worker
from automlops.ml.evaluation import drift
from automlops.tabular.schema import DatasetSchema
from support import upload

CANCER = Manifest(
    dataset="d",
    target="diagnosis",
    positive="malignant",
    task=Task.binary,
    time_budget_s=1,
    learners=["linear"],
)


def _frame(n: int, seed: int, shift: float = 0.0) -> pl.DataFrame:
    r = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "x": r.normal(10.0 + shift, 2.0, n),
            "city": r.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
            "y": r.integers(0, 2, n),
        }
    )


def test_same_distribution_is_not_drift() -> None:
    columns, new, vanished, _ = drift.compare_frames(
        _frame(800, 0), _frame(300, 1), {"x": "numeric", "city": "categorical"}, target="y"
    )
    assert not any(c.drifted for c in columns)
    assert all(c.psi < 0.1 for c in columns)
    assert new == [] and vanished == []


def test_a_two_sd_shift_a_new_category_and_missing_values_are_drift() -> None:
    current = _frame(300, 1, shift=4.0)  # +2 standard deviations
    current = current.with_columns(
        pl.when(pl.int_range(300) < 60).then(pl.lit("zz")).otherwise("city").alias("city"),
        pl.lit(1).alias("extra"),
    )
    columns, new, vanished, _ = drift.compare_frames(
        _frame(800, 0),
        current,
        {"x": "numeric", "city": "categorical", "gone": "numeric"},
        known_columns=["x", "city", "y", "gone"],
        target="y",
    )
    by_name = {c.name: c for c in columns}
    assert by_name["x"].drifted and by_name["x"].psi > 1.0 and by_name["x"].p_value < 1e-6
    assert by_name["city"].drifted and by_name["city"].new_categories == ["zz"]
    assert "(new)" in by_name["city"].bins
    assert not by_name["y"].drifted and by_name["y"].role == "target"
    assert new == ["extra"] and vanished == ["gone"]
    assert columns[0].drifted  # most shifted first

    gappy = _frame(300, 2).with_columns(
        pl.when(pl.int_range(300) % 4 == 0).then(None).otherwise(pl.col("x")).alias("x")
    )
    [x] = drift.compare_frames(_frame(800, 0), gappy, {"x": "numeric"})[0]
    assert x.drifted and x.reasons == ["missing 0% -> 25%"]


def _shifted_cancer(column: str) -> bytes:
    frame = pl.read_csv(io.BytesIO(breast_cancer_csv()))
    sd = float(frame[column].std())  # type: ignore[arg-type]
    buffer = io.BytesIO()
    frame.with_columns(pl.col(column) + 2 * sd).write_csv(buffer)
    return buffer.getvalue()


def test_a_drifted_upload_is_flagged_and_blocked_when_the_manifest_says_so(
    runtime: LocalRuntime,
) -> None:
    upload(runtime, CANCER, "v1.csv", breast_cancer_csv())
    Worker(runtime).run_until_idle()
    assert runtime.registry.read("d").champion == 1
    shifted = _shifted_cancer("mean_radius")

    blocking = CANCER.model_copy(update={"drift": "block"})
    upload(runtime, blocking, "shifted.csv", shifted)
    finished: list = []
    Worker(runtime, on_run_end=finished.append).run_until_idle()
    [blocked] = finished
    assert blocked.status == "failed"
    assert "data drift" in blocked.error and "'mean_radius'" in blocked.error
    assert "nothing was trained" in blocked.error
    assert [s.name for s in blocked.stages] == ["preprocess"]
    assert blocked.stages[0].attempts == 1  # permanent: not retried
    assert len(runtime.registry.read("d").versions) == 1
    report = json.loads(runtime.store.get("automl-data", keys.drift_key("d", blocked.id)))
    assert report["action"] == "block" and report["drifted"] == ["mean_radius"]

    # Under the default `warn` the same upload is recorded and goes on to training.
    upload(runtime, CANCER, "shifted.csv", shifted)
    Worker(runtime).step()  # preprocess only
    first_run = runtime.registry.read("d").get(1).run_id
    [schema_key] = [
        k
        for k in runtime.store.list("automl-data")
        if k.endswith(keys.SCHEMA_FILE) and first_run not in k
    ]
    schema = DatasetSchema.model_validate_json(runtime.store.get("automl-data", schema_key))
    assert any("data drift" in note and "mean_radius" in note for note in schema.notes)
    report = drift.DriftReport.model_validate_json(
        runtime.store.get("automl-data", keys.drift_key("d", schema.run_id))
    )
    assert report.action == "warn" and report.drifted == ["mean_radius"]
    assert report.baseline is not None and report.baseline.version == 1
    column = next(c for c in report.columns if c.name == "mean_radius")
    assert column.psi > drift.PSI_THRESHOLD
    # Everything else stayed put.
    assert all(not c.drifted for c in report.columns if c.name != "mean_radius")


def test_big_uploads_are_compared_through_seeded_samples(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from automlops.stages import drift_check

    upload(runtime, CANCER, "v1.csv", breast_cancer_csv())
    Worker(runtime).run_until_idle()
    monkeypatch.setattr(drift_check, "DRIFT_MAX_ROWS", 150)  # the cancer data: ~400 / 570 rows
    upload(runtime, CANCER, "shifted.csv", _shifted_cancer("mean_radius"))
    Worker(runtime).step()  # preprocess only
    first_run = runtime.registry.read("d").get(1).run_id
    [key] = [
        k
        for k in runtime.store.list("automl-data")
        if k.endswith("drift.json") and first_run not in k
    ]
    report = drift.DriftReport.model_validate_json(runtime.store.get("automl-data", key))
    assert report.drifted == ["mean_radius"]  # still found on the samples
    assert report.baseline is not None and 140 <= report.baseline.rows <= 160
    assert any("compared through a seeded sample of 150" in n for n in report.notes)
    assert any("training rows compared through a seeded sample" in n for n in report.notes)
