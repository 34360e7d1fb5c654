"""Decisions are atomic: a candidate is promoted only over the champion it was compared with.

Two evaluations are interleaved deterministically: while candidate A is between its comparison
and its decision, candidate B is evaluated to the end (and crowned as the first model). A must
then be compared again with B, never crowned as a second "first model".
"""

from __future__ import annotations

import io
import json

import polars as pl
import pytest

from automlops.demo import breast_cancer_csv
from automlops.local.runtime import LocalRuntime
from automlops.local.worker import Worker
from automlops.registry import VersionStatus
from automlops.stages import evaluate as evaluate_stage
from decision_chain import FIRST_MODEL, check_decision_chain
from support import linear_cancer_manifest, upload

DATASET = "race"
MANIFEST = linear_cancer_manifest(DATASET)


def _halves() -> tuple[bytes, bytes]:
    full = pl.read_csv(io.BytesIO(breast_cancer_csv()))
    parts = []
    for frame in (full.head(280), full.tail(280)):
        buffer = io.BytesIO()
        frame.write_csv(buffer)
        parts.append(buffer.getvalue())
    return parts[0], parts[1]


def _deploy_both(runtime: LocalRuntime) -> None:
    """Two uploads taken through deploy: two candidates, both served, neither evaluated."""
    first, second = _halves()
    upload(runtime, MANIFEST, "a.csv", first)
    upload(runtime, MANIFEST, "b.csv", second)
    worker = Worker(runtime)
    evaluation = runtime.settings.queues.evaluation
    worker.queues = [q for q in worker.queues if q != evaluation]
    worker.run_until_idle()
    doc = runtime.registry.read(DATASET)
    assert [v.status for v in doc.versions] == [VersionStatus.candidate] * 2
    assert all(v.endpoint for v in doc.versions) and doc.champion is None


def test_a_candidate_is_compared_again_when_the_champion_changed_meanwhile(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _deploy_both(runtime)
    real_decide = evaluate_stage._decide
    outer: list[int] = []  # the champion A saw on each of its comparisons
    finished: list = []
    nested = Worker(runtime, on_run_end=finished.append)
    nested.queues = [runtime.settings.queues.evaluation]

    nesting: list[bool] = []

    def decide_then_let_b_win(scored, manifest, evidence, previous, *rest):  # type: ignore[no-untyped-def]
        gate = real_decide(scored, manifest, evidence, previous, *rest)
        if nesting:
            return gate  # B's own comparison, inside A's
        outer.append(-1 if previous is None else previous)
        if len(outer) == 1:
            # Between A's comparison and its decision, another worker evaluates B to the end.
            nesting.append(True)
            assert nested.step()
            nesting.clear()
        return gate

    monkeypatch.setattr(evaluate_stage, "_decide", decide_then_let_b_win)
    Worker(runtime, on_run_end=finished.append).run_until_idle()
    assert sorted(r.status for r in finished) == ["succeeded", "succeeded"], finished

    doc = runtime.registry.read(DATASET)
    chain = check_decision_chain(doc)
    b = chain[0]
    [a] = [v.version for v in doc.versions if v.version != b]
    # A first saw no champion, then was compared again with B, the champion at its decision.
    assert outer == [-1, b]
    decision = doc.get(a).decisions[-1]
    assert not decision.reason.startswith(FIRST_MODEL)
    assert f"champion v{b} " in decision.reason, decision.reason
    assert decision.details["comparisons"], "A's decision carries no comparison with B"
    assert len(doc.get(a).decisions) == 1
    # A's report is the one of its second comparison: the decision the registry holds.
    report_key = doc.get(a).report_key
    assert report_key is not None
    bucket = runtime.settings.buckets.model_monitoring
    report = json.loads(runtime.store.get(bucket, report_key))
    assert report["decision"]["reason"] == decision.reason
    assert report["champion"]["version"] == b
