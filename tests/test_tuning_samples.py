"""Big data sets are tuned on samples and the chosen model is refitted on every row."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from automlops.config import Task
from automlops.ml.splits import sample_indices, split_indices
from automlops.ml.tuning.outcome import Refit, RefitStatus, SearchRows, SelectionData
from automlops.ml.tuning.rows import search_sample
from automlops.ml.tuning.search import Tuner


def test_sample_indices_keep_class_shares_and_are_seeded() -> None:
    strata = np.r_[np.zeros(9000, dtype=int), np.ones(1000, dtype=int)]
    rows = sample_indices(10_000, 2000, seed=1, strata=strata)
    assert len(rows) == 2000 and len(np.unique(rows)) == 2000
    assert np.all(np.diff(rows) > 0)
    assert int(strata[rows].sum()) == 200  # the 10 % class keeps its 10 %
    assert np.array_equal(rows, sample_indices(10_000, 2000, seed=1, strata=strata))
    assert np.array_equal(sample_indices(50, 2000, seed=1), np.arange(50))  # small: all rows


def test_split_indices_are_unchanged_by_the_compact_index_type() -> None:
    strata = np.random.default_rng(0).integers(0, 3, 1000)
    parts = split_indices(1000, (0.7, 0.2, 0.1), seed=5, strata=strata)
    assert sorted(np.concatenate(parts).tolist()) == list(range(1000))
    # The same seeded split as with 64-bit row numbers (what earlier versions drew).
    rng = np.random.default_rng(5)
    expected_train = np.sort(
        np.concatenate(
            [
                rng.permutation(np.flatnonzero(strata == s))[: round((strata == s).sum() * 0.7)]
                for s in range(3)
            ]
        )
    )
    assert np.array_equal(parts[0], expected_train)


def test_search_sample_leaves_small_data_alone() -> None:
    x, y = np.zeros((100, 2)), np.zeros(100)
    assert search_sample(Task.binary, (x, y), 1000, seed=0)[0] is x


def test_a_big_training_set_is_tuned_on_a_sample_and_refitted_on_all_rows() -> None:
    rng = np.random.default_rng(2)
    n = 14_000  # above CV_MAX_ROWS: selection on the validation split
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] + rng.normal(0, 0.7, n) > 0.8).astype(int)
    result = Tuner(
        Task.binary,
        2,
        budget_s=4,
        seed=3,
        nthread=1,
        learners=("xgboost",),
        max_train_rows=3000,
        max_valid_rows=1000,
        # Half the budget kept for the refit: ample for 14,000 rows (the refit is sized to
        # what is left, so a tighter reserve would refit on a sample of them).
        refit_budget_share=0.5,
    ).fit((x[:10_000], y[:10_000]), (x[10_000:], y[10_000:]))
    selection = result.selection_
    assert selection.search_rows == SearchRows(train=3000, validation=1000)
    assert selection.data is SelectionData.validation_split and selection.sampled
    assert result.refit_ == Refit(status=RefitStatus.all_rows, rows=n)
    assert len(result.heldout_y_) == 1000  # the validation sample the threshold is tuned on
    # Not the sampled trial's model (early-stopped): a refit for the scaled round count.
    assert result.best_model_.rounds == result.best_params_["rounds"]
    assert result.best_score_ > 0.8


def test_a_refit_past_its_time_limit_stops_adding_rounds() -> None:
    import time

    from automlops.ml.learners.catalog import learner
    from automlops.ml.tuning.candidates import Candidate
    from automlops.ml.tuning.refit import RefitCost, Refitter
    from automlops.ml.tuning.rows import SearchRowSet

    rng = np.random.default_rng(5)
    x = rng.normal(size=(12_000, 6)).astype(np.float32)
    y = (x.sum(axis=1) + rng.normal(0, 0.5, 12_000) > 0).astype(int)
    rows = SearchRowSet.of(
        Task.binary,
        (x[:9000], y[:9000]),
        (x[9000:], y[9000:]),
        max_train_rows=3000,
        max_valid_rows=1000,
        seed=1,
    )
    family = learner("xgboost")
    defaults = family.portfolio(Task.binary, 12_000)[0]
    params = {k.split(".", 1)[1]: v for k, v in defaults.items() if "." in k}
    chosen = Candidate(0, 0.9, "xgboost", params, 90, np.zeros(1000), None, duration_s=1.0)
    refitter = Refitter(
        Task.binary,
        2,
        {"xgboost": family},
        rows,
        RefitCost.of(rows, budget_s=2, sampled_share=0.3),
        seed=1,
        nthread=1,
        deadline=time.monotonic() - 1,  # the refit is due at once
        grace_s=0.0,
    )
    final = refitter.single(chosen)
    refit = final.refit
    assert refit is not None and refit.status is RefitStatus.time_limit
    wanted = final.params["rounds"]
    assert (refit.rounds, refit.wanted_rounds) == (final.model.rounds, wanted) and wanted > 1
    # No time for all rows: as many as the trial itself saw, out of all of them.
    assert (refit.rows, refit.of_rows) == (3000, 12_000)
    # The threshold is then tuned on the shorter model's own predictions of the validation
    # sample rather than on the trial's.
    np.testing.assert_allclose(final.heldout_pred, final.model.predict(rows.validation[0]))


@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
def test_boosting_stops_at_its_deadline(name: str) -> None:
    import time

    from automlops.ml.learners.base import FitJob
    from automlops.ml.learners.catalog import learner

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    family = learner(name)
    defaults = family.portfolio(Task.binary, 1_000_000)[0]
    params = {k.split(".", 1)[1]: v for k, v in defaults.items() if "." in k}
    params["rounds"] = 200
    empty = (x[:0], y[:0])
    job = FitJob(Task.binary, 2, (x, y), empty, seed=0, nthread=1, deadline=time.monotonic() - 1)
    model = family.fit(params, job)
    assert model.rounds == 1


def test_a_refit_that_ends_early_by_itself_keeps_the_out_of_fold_predictions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # LightGBM stops adding rounds once no leaf can be split (on small multiclass data it
    # does, e.g. wine); the refit is then shorter than asked for, with no time limit involved.
    from automlops.ml.learners.base import FitJob
    from automlops.ml.learners.lightgbm_model import LightGBMLearner, LightGBMModel

    fit = LightGBMLearner.fit

    def stops_early(self: LightGBMLearner, params: dict[str, Any], job: FitJob) -> LightGBMModel:
        if not job.has_validation:  # the refit on all rows
            params = {**params, "rounds": max(1, params["rounds"] // 2)}
        return fit(self, params, job)

    monkeypatch.setattr(LightGBMLearner, "fit", stops_early)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 4))
    y = np.digitize(x[:, 0], [-0.5, 0.5])
    result = Tuner(
        Task.multiclass,
        3,
        budget_s=2,
        seed=0,
        nthread=1,
        learners=("lightgbm",),
        ensemble=False,
    ).fit((x[:120], y[:120]), (x[120:], y[120:]))
    # Cross-validation: the held-out predictions are every row's out-of-fold prediction.
    assert result.heldout_pred_.shape == (160, 3)
    assert len(result.heldout_y_) == 160
    refit = result.refit_
    assert refit is not None and refit.status is RefitStatus.no_further_split
    assert refit.rows == 160
