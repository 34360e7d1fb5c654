"""The registry's decision history read as a chain: one first model, then each promotion
compared with the champion it replaced (shared by the gate-race tests)."""

from __future__ import annotations

import itertools

from automlops.registry import Decision, RegistryDoc, VersionStatus

FIRST_MODEL = "first model for this dataset"


def promotions(doc: RegistryDoc) -> list[tuple[int, Decision]]:
    """Every decision that made a version champion, as (version, decision)."""
    return [
        (entry.version, decision)
        for entry in doc.versions
        for decision in entry.decisions
        if decision.status is VersionStatus.champion
    ]


def check_decision_chain(doc: RegistryDoc) -> list[int]:
    """Assert the chain's invariants; returns the champions in the order they were crowned.

    Exactly one "first model" decision, and it replaced nobody; every other promotion names in
    its reason the champion it was compared with, and that is the champion it replaced.
    """
    made = promotions(doc)
    firsts = [version for version, d in made if d.reason.startswith(FIRST_MODEL)]
    assert len(firsts) == 1, f"{doc.dataset}: 'first model' decisions for versions {firsts}"
    chain = [*doc.champion_history, *([] if doc.champion is None else [doc.champion])]
    assert len(made) == len(chain), f"{doc.dataset}: promotions {made} vs champions {chain}"
    by_version = dict(made)
    assert chain[0] == firsts[0] and by_version[chain[0]].replaced is None, (
        f"{doc.dataset}: the first champion v{chain[0]} is not the first model"
    )
    for before, after in itertools.pairwise(chain):
        decision = by_version[after]
        assert f"champion v{before} " in decision.reason, (
            f"{doc.dataset}: v{after} replaced v{before} but was decided on: {decision.reason}"
        )
        assert decision.replaced == before, (
            f"{doc.dataset}: v{after} records replacing {decision.replaced}, not v{before}"
        )
    for entry in doc.versions:
        assert entry.decisions, f"{doc.dataset}: v{entry.version} was never decided"
    return chain
