"""Big test splits: scored in-process with the artifact, checked against the endpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from automlops.errors import PermanentError
from automlops.local.runtime import open_runtime
from automlops.ml.artifact import ModelArtifact
from automlops.stages import evaluate
from automlops.stages.evaluate import plot_sample, read_rows, score_endpoint, score_rows
from support import DEMO_DATASET


def test_big_row_sets_are_scored_in_process_and_agree_with_the_endpoint(
    trained_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = open_runtime(trained_home)
    try:
        champion = runtime.registry.read(DEMO_DATASET).champion_version()
        assert champion is not None and champion.endpoint is not None
        artifact = ModelArtifact.from_tar_gz(
            runtime.store.get(champion.artifact_bucket, champion.artifact_key), "model"
        )
        meta = artifact.metadata
        bucket = runtime.settings.buckets.automl_data
        rows = read_rows(runtime.store, bucket, champion.test_key, meta, "new_test")
        served = score_endpoint(runtime.host, champion.endpoint, rows.features, meta)

        monkeypatch.setattr(evaluate, "ENDPOINT_MAX_ROWS", 10)
        monkeypatch.setattr(evaluate, "ENDPOINT_CHECK_ROWS", 8)
        calls: list[int] = []
        real = evaluate.score_endpoint

        def counting(host, endpoint, features, meta):  # type: ignore[no-untyped-def]
            calls.append(features.height)
            return real(host, endpoint, features, meta)

        monkeypatch.setattr(evaluate, "score_endpoint", counting)
        local = score_rows(runtime.host, champion.endpoint, artifact, rows.features, meta)
        np.testing.assert_allclose(local, served, atol=1e-6)
        assert calls == [8]  # only the sample went over HTTP

        def wrong(host, endpoint, features, meta):  # type: ignore[no-untyped-def]
            return real(host, endpoint, features, meta) + 0.1

        monkeypatch.setattr(evaluate, "score_endpoint", wrong)
        with pytest.raises(PermanentError, match="disagrees with its artifact"):
            score_rows(runtime.host, champion.endpoint, artifact, rows.features, meta)
    finally:
        runtime.close()


def test_plots_get_a_sample_of_big_row_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluate, "PLOT_MAX_ROWS", 100)
    y, pred = np.arange(1000) % 2, np.linspace(0, 1, 1000)
    small_y, small_pred, champion = plot_sample(y, pred, pred * 0.5)
    assert len(small_y) == len(small_pred) == 100 and champion is not None
    np.testing.assert_allclose(champion, small_pred * 0.5)
    assert plot_sample(y[:50], pred[:50], None)[0] is not None
