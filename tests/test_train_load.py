"""The train stage's loading counts against the budget: a big split is transformed only as far
as the budget allows (a stratified sample, never fewer rows than the search samples)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from automlops.config import Manifest
from automlops.events import S3Event, S3EventRecord
from automlops.local.runtime import LocalRuntime, open_runtime
from automlops.ml.artifact import ModelArtifact
from automlops.reports.tuning_text import fitted_on
from automlops.stages import train as stage
from automlops.stages.preprocess import preprocess
from support import upload


def _next_record(runtime: LocalRuntime) -> S3EventRecord:
    [message] = runtime.queue.receive(runtime.settings.queues.events)
    runtime.queue.delete(runtime.settings.queues.events, message.receipt_handle)
    [record] = S3Event.model_validate_json(message.body).records
    return record


@pytest.fixture
def preprocessed(tmp_path: Path) -> tuple[LocalRuntime, S3EventRecord]:
    """A 3,000-row upload (one class in five is positive) preprocessed; its schema's event."""
    rng = np.random.default_rng(0)
    n = 3000
    x = rng.normal(size=n)
    frame = pl.DataFrame(
        {
            "x": x.round(4),
            "city": rng.choice(["north", "south", "east"], n),
            "y": np.where(x + rng.normal(0, 0.5, n) > 0.9, "yes", "no"),
        }
    )
    runtime = open_runtime(tmp_path / "home")
    manifest = Manifest(dataset="big", target="y", positive="yes", time_budget_s=5)
    upload(runtime, manifest, "big.csv", frame.write_csv().encode())
    preprocess(_next_record(runtime), runtime.ports())
    yield runtime, _next_record(runtime)
    runtime.close()


def test_a_split_too_big_for_the_budget_is_loaded_as_a_stratified_sample(
    preprocessed: tuple[LocalRuntime, S3EventRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, record = preprocessed
    # The search's samples scaled down to this file: 300 training and 100 validation rows.
    monkeypatch.setattr(stage, "TUNE_MAX_TRAIN_ROWS", 300)
    monkeypatch.setattr(stage, "TUNE_MAX_VALID_ROWS", 100)
    monkeypatch.setattr(stage, "_RATE_PROBE_ROWS", 50)
    whole = stage._load(record, runtime.ports(), started=time.monotonic() + 1e6)
    assert whole.sampled_note == ""
    assert len(whole.train[1]) == whole.split_rows[0] > 2000

    # The budget long spent: the least the search needs, in the classes' proportions.
    spent = stage._load(record, runtime.ports(), started=time.monotonic() - 1e6)
    assert (len(spent.train[1]), len(spent.validation[1])) == (300, 100)
    assert spent.split_rows == whole.split_rows
    assert spent.sampled_note.startswith("a sample of 400 of the ")
    share = whole.train[1].mean()
    assert abs(spent.train[1].mean() - share) <= 1 / 300 + 1e-9
    # The sampled rows are rows of the split, features and labels together.
    full = {(*row, label) for row, label in zip(*whole.train, strict=True)}
    assert all((*row, label) in full for row, label in zip(*spent.train, strict=True))


def test_a_model_fitted_on_a_loaded_sample_says_it_is_a_sample_of_the_file(
    preprocessed: tuple[LocalRuntime, S3EventRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, record = preprocessed
    monkeypatch.setattr(stage, "TUNE_MAX_TRAIN_ROWS", 300)
    monkeypatch.setattr(stage, "TUNE_MAX_VALID_ROWS", 100)
    monkeypatch.setattr(stage, "_RATE_PROBE_ROWS", 50)
    load = stage._load
    # As if loading had found the budget spent: the splits' least sample is loaded.
    monkeypatch.setattr(stage, "_load", lambda r, p, started: load(r, p, started - 1e6))
    result = stage.train(record, runtime.ports())
    assert "a sample of 400 of the " in (result.note or "")

    artifact = ModelArtifact.from_tar_gz(runtime.store.get("model-output", result.outputs[0]))
    stored = sum(stage._load(record, runtime.ports(), time.monotonic() + 1e6).split_rows)
    fitted = fitted_on(artifact.metadata.selection, artifact.metadata.refit)
    assert fitted is not None
    assert f"of the {stored} training and validation rows" in fitted
