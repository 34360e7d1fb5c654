"""Registry.decide is a compare-and-swap on the champion, on the directory store and on S3:
racing evaluations make one chain of decisions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from automlops.aws.s3_store import S3ObjectStore
from automlops.errors import ConflictError
from automlops.local.store import DirectoryStore
from automlops.registry import (
    ChampionChanged,
    EvaluationOutcome,
    ModelVersion,
    Registry,
    VersionStatus,
)
from decision_chain import FIRST_MODEL, check_decision_chain

B = "models"
DATASET = "race"


@pytest.fixture(params=["directory", "s3"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    if request.param == "directory":
        yield Registry(DirectoryStore(tmp_path / "store", [B]), B)
    else:
        with mock_aws():
            client = boto3.client("s3", region_name="us-east-1")
            client.create_bucket(Bucket=B)
            yield Registry(S3ObjectStore(client), B)


def _register(registry: Registry, count: int) -> None:
    for index in range(count):
        registry.register(
            DATASET,
            ModelVersion(
                version=0,
                run_id=f"run-{index}",
                created_at="2026-01-01T00:00:00+00:00",
                task="binary",
                learner="linear",
                artifact_bucket=B,
                artifact_key=f"a{index}",
                source_key=f"s{index}",
                source_sha256="0" * 64,
                test_key=f"t{index}",
                endpoint=f"e{index}",
            ),
        )


def _outcome(compared_with: int | None, promote: bool = True) -> EvaluationOutcome:
    verdict = "not worse than" if promote else "worse than"
    reason = (
        FIRST_MODEL
        if compared_with is None
        else f"{verdict} champion v{compared_with} beyond noise"
    )
    return EvaluationOutcome(
        metrics={"roc_auc": 0.9}, report_key="r.json", promote=promote, reason=reason
    )


def test_a_decision_over_a_replaced_champion_is_refused(registry: Registry) -> None:
    _register(registry, 2)
    registry.promote(DATASET, 2, "crowned by an operator")
    with pytest.raises(ChampionChanged) as raised:
        registry.decide(DATASET, 1, _outcome(None), compared_with=None)
    assert raised.value.champion == 2 and raised.value.compared_with is None
    assert isinstance(raised.value, ConflictError)  # a retryable failure, never a failed run
    doc = registry.read(DATASET)
    assert doc.champion == 2 and doc.get(1).decisions == [] and doc.get(1).report_key is None

    crowned = registry.decide(DATASET, 1, _outcome(2), compared_with=2)
    assert crowned.status is VersionStatus.champion
    doc = registry.read(DATASET)
    assert doc.champion == 1 and doc.champion_history == [2]
    assert doc.get(1).decisions[-1].replaced == 2
    assert doc.get(1).report_key == "r.json" and doc.get(1).metrics == {"roc_auc": 0.9}


def test_a_rejection_also_waits_for_the_champion_it_was_compared_with(registry: Registry) -> None:
    _register(registry, 3)
    registry.decide(DATASET, 1, _outcome(None), compared_with=None)
    registry.decide(DATASET, 2, _outcome(1), compared_with=1)
    with pytest.raises(ChampionChanged):
        registry.decide(DATASET, 3, _outcome(1, promote=False), compared_with=1)
    assert registry.read(DATASET).get(3).status is VersionStatus.candidate


def test_evaluations_that_all_saw_no_champion_make_one_chain(registry: Registry) -> None:
    """The worst interleaving, step by step: every candidate is compared while there is no
    champion, then each tries to land its decision; a refused one compares again."""
    versions = 5
    _register(registry, versions)
    seen = {v: registry.read(DATASET).champion for v in range(1, versions + 1)}
    assert set(seen.values()) == {None}
    pending = list(seen)
    refused = 0
    while pending:
        version = pending.pop(0)
        try:
            registry.decide(DATASET, version, _outcome(seen[version]), compared_with=seen[version])
        except ChampionChanged as exc:
            refused += 1
            seen[version] = exc.champion  # compared again, with the champion now serving
            pending.append(version)
    # Each landing decision sends every candidate still waiting back to compare again.
    assert refused == versions * (versions - 1) // 2
    assert check_decision_chain(registry.read(DATASET)) == list(range(1, versions + 1))


def test_racing_threads_make_one_chain(tmp_path: Path) -> None:
    """Real threads on the directory store (moto's in-memory S3 is not thread-safe)."""
    registry = Registry(DirectoryStore(tmp_path / "store", [B]), B)
    versions = 8
    _register(registry, versions)
    barrier = threading.Barrier(versions)
    errors: list[BaseException] = []

    def evaluate(version: int) -> None:
        try:
            barrier.wait()
            while True:
                compared_with = registry.read(DATASET).champion  # the comparison's champion
                try:
                    registry.decide(
                        DATASET, version, _outcome(compared_with), compared_with=compared_with
                    )
                    return
                except ChampionChanged:
                    continue
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=evaluate, args=(v,)) for v in range(1, versions + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    doc = registry.read(DATASET)
    chain = check_decision_chain(doc)
    assert sorted(chain) == list(range(1, versions + 1))  # every one promoted, one at a time
