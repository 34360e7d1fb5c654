"""Each family's portfolio of proven configurations runs before the search, within the
search space, and small data is fitted with one thread."""

from __future__ import annotations

import warnings

import numpy as np
import optuna
import pytest

from automlops.config import Task
from automlops.ml.learners.catalog import LEARNER_NAMES, learner
from automlops.ml.learners.lightgbm_model import LightGBMModel
from automlops.ml.tuning.search import SMALL_DATA_THREADS, Tuner


@pytest.mark.parametrize("task", list(Task))
@pytest.mark.parametrize("name", LEARNER_NAMES)
@pytest.mark.parametrize("rows", [500, 50_000])
def test_portfolio_configurations_lie_in_the_search_space(name: str, task: Task, rows: int) -> None:
    # The sampler learns from the enqueued trials only if their values are ones it could
    # have drawn: Optuna warns about a fixed value outside a distribution.
    family = learner(name)
    portfolio = family.portfolio(task, rows)
    assert portfolio and all(p["learner"] == name for p in portfolio)
    assert len({tuple(sorted(p.items())) for p in portfolio}) == len(portfolio)  # distinct
    for config in portfolio:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            suggested = family.suggest(optuna.trial.FixedTrial(config), task, rows)
        prefix = f"{name}."
        expected = {k.removeprefix(prefix): v for k, v in config.items() if k.startswith(prefix)}
        if task is not Task.binary:  # class balancing is not searched there
            expected.pop("balanced", None)
        assert {k: suggested[k] for k in expected} == expected


def test_the_portfolios_run_first_round_by_round_on_one_thread_for_small_data() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 4))
    y = x[:, 0] * 3 + x[:, 1] ** 2 + rng.normal(0, 0.3, 300)
    families = ("lightgbm", "linear", "xgboost")
    portfolios = [learner(n).portfolio(Task.regression, 300) for n in ("linear", *families[::2])]
    expected = [p[i] for i in range(max(map(len, portfolios))) for p in portfolios if i < len(p)]
    # A budget the few fits of 300 rows cannot exhaust: every enqueued trial completes.
    tuner = Tuner(
        Task.regression, 0, budget_s=60, seed=1, learners=families, max_trials=len(expected)
    ).fit((x[:240], y[:240]), (x[240:], y[240:]))
    ran = [
        {"learner": t.learner, **{f"{t.learner}.{k}": v for k, v in t.params.items()}}
        for t in tuner.trials_
    ]
    assert ran == expected
    assert tuner.selection_.folds  # small data: cross-validation


def test_small_data_is_fitted_with_one_thread() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 3))
    y = x[:, 0] + rng.normal(0, 0.1, 300)
    tuner = Tuner(
        Task.regression, 0, budget_s=60, seed=1, learners=("lightgbm",), max_trials=1
    ).fit((x[:240], y[:240]), (x[240:], y[240:]))
    model = tuner.best_model_
    assert isinstance(model, LightGBMModel) and model.nthread == SMALL_DATA_THREADS


@pytest.mark.parametrize(("load", "threads"), [(0.1, 2), (0.8, 1), (1.4, 1), (9.0, 1)])
def test_bigger_data_gets_the_idle_cores_of_the_machine(
    monkeypatch: pytest.MonkeyPatch, load: float, threads: int
) -> None:
    from automlops.ml.tuning import search

    monkeypatch.setattr(search.os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    monkeypatch.setattr(search.os, "getloadavg", lambda: (load, load, load))
    assert search.fit_threads() == threads
