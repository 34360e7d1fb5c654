"""How a model was chosen and fitted, in words: the prose for a report's typed `selection`
and `refit` (automlops.ml.tuning.outcome). Artifacts written before those were typed carry
the prose itself, which is passed through."""

from __future__ import annotations

from automlops.ml.tuning.outcome import (
    EnsembleMember,
    Refit,
    RefitStatus,
    Selection,
    SelectionData,
)


def chosen_by(selection: Selection | str | None) -> str | None:
    """E.g. "5-fold cross-validation; ensemble of linear #0 0.60, lightgbm #3 0.40 (...)"."""
    if selection is None or isinstance(selection, str):
        return selection
    rows = selection.search_rows
    if selection.data is SelectionData.cross_validation:
        text = f"{selection.folds}-fold cross-validation"
    elif selection.sampled:
        text = (
            f"validation split (trials on a sample: {rows.train} training, "
            f"{rows.validation} validation rows)"
        )
    else:
        text = "validation split"
    if selection.members:
        described = ", ".join(f"{m.learner} #{m.trial} {m.weight:.2f}" for m in selection.members)
        text += f"; ensemble of {described} (weights chosen on the same held-out predictions)"
    return text


def fitted_on(selection: Selection | str | None, refit: Refit | str | None) -> str | None:
    """What the final model (or each ensemble member) was fitted on."""
    if isinstance(refit, str):
        return refit
    if refit is not None:
        return _single(refit)
    if isinstance(selection, Selection) and selection.members:
        return _members(selection)
    return None


def _single(refit: Refit) -> str:
    if refit.status is RefitStatus.no_time:
        return f"the {refit.rows} training rows only (no time left to refit on all rows)"
    text = f"all {refit.rows} training and validation rows"
    if refit.of_rows is not None:
        text = (
            f"a sample of {refit.rows} of the {refit.of_rows} training and validation rows "
            "(as many as the time budget allowed)"
        )
    if refit.status is RefitStatus.no_further_split:
        text += f"; {refit.rounds} of {refit.wanted_rounds} rounds (no further split possible)"
    elif refit.status is RefitStatus.time_limit:
        text += f"; stopped at {refit.rounds} of {refit.wanted_rounds} rounds (refit time limit)"
    return text


def _members(selection: Selection) -> str:
    # An ensemble's search is never sampled: all rows are its training and validation rows.
    rows = selection.search_rows.train + selection.search_rows.validation
    text = f"each member on all {rows} training and validation rows"
    # ...of those the train stage loaded, which may be a sample of the file's.
    of_rows = [m.refit.of_rows for m in selection.members if m.refit.of_rows is not None]
    if of_rows:
        text = (
            f"each member on a sample of {rows} of the {max(of_rows)} training and validation "
            "rows (as many as the time budget allowed)"
        )
    kept: list[EnsembleMember] = [
        m for m in selection.members if m.refit.status is RefitStatus.no_time
    ]
    if kept:
        notes = "; ".join(f"{m.learner} #{m.trial} on the training rows only" for m in kept)
        text += f" except {notes} (no time left to refit)"
    return text
