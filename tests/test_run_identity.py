"""A run's name: what it processes (dataset, content, options), and nothing else."""

from __future__ import annotations

from automlops.config import Manifest
from automlops.stages.preprocess import run_identity


class _LaterManifest(Manifest):
    """The manifest as a later release might have it: one more option, at its default."""

    calibrate: bool = False


def test_an_option_added_later_at_its_default_keeps_earlier_runs_names() -> None:
    manifest = Manifest(dataset="bank", target="y", positive="yes", drop=["duration"])
    later = _LaterManifest(**manifest.model_dump())
    assert run_identity("bank", '"abc"', 10, later) == run_identity("bank", '"abc"', 10, manifest)


def test_options_set_away_from_their_defaults_name_another_run() -> None:
    manifest = Manifest(dataset="bank", target="y")
    same = run_identity("bank", '"abc"', 10, manifest)
    assert run_identity("bank", '"abc"', 10, manifest.model_copy(update={"keep": ["id"]})) != same
    assert run_identity("bank", '"abc"', 10, manifest.model_copy(update={"target": "z"})) != same
    assert run_identity("bank", '"abd"', 10, manifest) != same
    assert run_identity("bank", '"abc"', 11, manifest) != same
