"""The time budget is a budget: every fit stops at its deadline and still yields a usable model,
trials leave room for their refit, and the trials cut short are counted."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from automlops.config import Task
from automlops.ml.learners.base import FitJob
from automlops.ml.learners.catalog import learner
from automlops.ml.tuning.refit import RefitCost
from automlops.ml.tuning.rows import SearchRowSet
from automlops.ml.tuning.search import Tuner


def _binary(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    return x, (x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 0.5, n) > 0).astype(int)


def _params(name: str, task: Task) -> dict:
    defaults = learner(name).portfolio(task, 10_000)[0]
    return {k.split(".", 1)[1]: v for k, v in defaults.items() if "." in k}


@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
def test_a_trial_past_its_deadline_stops_after_its_first_round_and_predicts(name: str) -> None:
    x, y = _binary(600)
    seen: list[int] = []
    job = FitJob(
        Task.binary,
        2,
        (x[:400], y[:400]),
        (x[400:], y[400:]),  # a trial: early stopping on the validation rows
        seed=0,
        nthread=1,
        on_round=lambda step, score: seen.append(step) is not None,
        deadline=time.monotonic() - 1,
    )
    model = learner(name).fit({**_params(name, Task.binary), "rounds": 300}, job)
    assert model.rounds == 1
    pred = model.predict(x[400:])
    assert pred.shape == (200,) and np.all((pred >= 0) & (pred <= 1))


def test_a_logistic_fit_past_its_deadline_stops_its_iterations_and_predicts() -> None:
    # Strongly correlated features and a weak penalty: L-BFGS needs about 200 iterations, so
    # a fit cut after its first chunk has visibly smaller coefficients than a complete one.
    rng = np.random.default_rng(1)
    z = rng.normal(size=(600, 60))
    x = z @ (rng.normal(size=(60, 60)) * np.logspace(0, -4, 60)[:, None])
    y = (z[:, 0] + 0.3 * rng.normal(size=600) > 0).astype(int)
    family = learner("linear")
    params = {"C": 100.0, "balanced": False}
    empty = (x[:0], y[:0])
    full = family.fit(params, FitJob(Task.binary, 2, (x, y), empty, seed=0, nthread=1))
    job = FitJob(Task.binary, 2, (x, y), empty, seed=0, nthread=1, deadline=time.monotonic() - 1)
    cut = family.fit(params, job)
    assert np.abs(cut.coef).sum() < np.abs(full.coef).sum()  # type: ignore[attr-defined]
    pred = cut.predict(x)
    assert np.all(np.isfinite(pred)) and ((pred >= 0.5) == y).mean() > 0.7


def test_a_distant_deadline_changes_no_logistic_fit() -> None:
    x, y = _binary(300)
    family = learner("linear")
    params = {"C": 1.0, "balanced": False}
    empty = (x[:0], y[:0])
    free = family.fit(params, FitJob(Task.binary, 2, (x, y), empty, seed=0, nthread=1))
    late = FitJob(Task.binary, 2, (x, y), empty, seed=0, nthread=1, deadline=time.monotonic() + 60)
    bounded = family.fit(params, late)
    # The same optimum, up to L-BFGS's tolerance (chunks restart its curvature memory).
    np.testing.assert_allclose(bounded.predict(x), free.predict(x), atol=5e-3)


def test_a_required_refit_leaves_room_in_each_trial() -> None:
    x, y = _binary(200)
    rows = SearchRowSet.of(
        Task.binary, (x[:160], y[:160]), (x[160:], y[160:]), max_train_rows=10**6,
        max_valid_rows=10**6, seed=0,
    )  # fmt: skip
    cost = RefitCost.of(rows, budget_s=10, sampled_share=0.3)
    assert rows.use_cv and cost.required
    # A trial of d seconds whose refit costs share * d: both must end by the deadline.
    end = cost.trial_deadline(now=0.0, deadline=10.0, reserve=0.0)
    assert end * (1 + cost.share) == pytest.approx(10.0)
    # Another candidate's reserve comes first; a deadline already passed gives no time.
    assert cost.trial_deadline(now=0.0, deadline=10.0, reserve=9.0) == pytest.approx(1.0)
    assert cost.trial_deadline(now=11.0, deadline=10.0, reserve=0.0) == 11.0


def test_a_sampled_search_keeps_its_share_of_the_budget_for_the_refit() -> None:
    x, y = _binary(3000)
    rows = SearchRowSet.of(
        Task.binary, (x[:2400], y[:2400]), (x[2400:], y[2400:]), max_train_rows=500,
        max_valid_rows=200, seed=0,
    )  # fmt: skip
    cost = RefitCost.of(rows, budget_s=10, sampled_share=0.3)
    assert rows.sampled and cost.reserve([]) == pytest.approx(3.0)
    assert cost.trial_deadline(now=0.0, deadline=10.0, reserve=3.0) == pytest.approx(7.0)


def test_a_spent_budget_still_gives_a_model_and_counts_the_trial_as_cut() -> None:
    # Holdout (over SMALL_DATA_ROWS rows): the trial is fitted until its deadline, long past.
    x, y = _binary(12_000, seed=3)
    result = Tuner(
        Task.binary,
        2,
        budget_s=0.001,
        seed=0,
        nthread=1,
        learners=("lightgbm",),
        ensemble=False,
    ).fit((x[:10_000], y[:10_000]), (x[10_000:], y[10_000:]))
    [trial] = result.trials_
    assert trial.cut and trial.state == "complete"
    assert trial.rounds is not None and trial.rounds <= 2
    assert result.heldout_pred_.shape == (2_000,) and np.all(np.isfinite(result.heldout_pred_))
    assert result.best_model_.predict(x[:5]).shape == (5,)


def test_on_small_data_the_first_trial_and_the_refit_run_whole_whatever_the_clock() -> None:
    """Cross-validation (small data): what is served must not depend on the machine's speed,
    so the first trial and the required refit are never cut, even with the budget spent."""
    x, y = _binary(1500, seed=3)

    def tuned(budget_s: float) -> Any:
        return Tuner(  # one trial: the first one is what the clock could have cut
            Task.binary,
            2,
            budget_s=budget_s,
            seed=0,
            nthread=1,
            learners=("lightgbm",),
            ensemble=False,
            max_trials=1,
        ).fit((x[:1200], y[:1200]), (x[1200:], y[1200:]))

    spent = tuned(0.001)
    [trial] = spent.trials_
    assert not trial.cut and trial.state == "complete" and (trial.rounds or 0) > 2
    # The same first trial as with time to spare: same rounds, same predictions.
    roomy = tuned(30.0)
    assert roomy.trials_[0].rounds == trial.rounds
    np.testing.assert_allclose(roomy.trials_[0].score, trial.score)
