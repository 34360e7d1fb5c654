"""Which rows the trials fit and are scored on, and the score they are ranked by.

Selection data depends on size: small data sets are scored by k-fold cross-validation over
the training and validation rows (a 20 % validation split of a few hundred rows is too noisy
to choose by); larger ones by the validation split. Big ones are tuned on samples: trials fit
on a stratified sample of at most `max_train_rows` training rows and are scored on at most
`max_valid_rows` validation rows (a trial on millions of rows would leave one or two trials
in the budget; beyond a few hundred thousand rows more rows barely change which settings
win).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold

from automlops.config import Task
from automlops.ml.evaluation.metrics import TASK_METRICS
from automlops.ml.learners.base import SMALL_DATA_ROWS, Data
from automlops.ml.splits import sample_indices
from automlops.ml.tuning.outcome import SearchRows, SelectionData

CV_MAX_ROWS = SMALL_DATA_ROWS  # below this many rows, select by cross-validation
CV_FOLDS = 5

Folds = list[tuple[np.ndarray, np.ndarray]]


def _roc_auc(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    return float(roc_auc_score(y, pred)) if len(np.unique(y)) == 2 else 0.0


def _log_loss(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    proba = np.clip(pred.reshape(len(y), n_classes), 1e-15, 1.0)
    proba = proba / proba.sum(axis=1, keepdims=True)
    return float(log_loss(y, proba, labels=list(range(n_classes))))


def _rmse(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    return float(np.sqrt(np.mean((y - pred) ** 2)))


# Implementations of the search metrics TASK_METRICS names (over raw predictions).
_SEARCH_SCORES: dict[str, Callable[[np.ndarray, np.ndarray, int], float]] = {
    "roc_auc": _roc_auc,
    "log_loss": _log_loss,
    "rmse": _rmse,
}


def objective_name(task: Task) -> str:
    """The search metric as the search maximises it: "-log_loss" for a loss."""
    spec = TASK_METRICS[task]
    return spec.search if spec.search_higher_is_better else f"-{spec.search}"


def validation_score(task: Task, y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """The task's search metric, higher is better (losses negated): ROC AUC, negative log
    loss, or negative RMSE."""
    spec = TASK_METRICS[task]
    value = _SEARCH_SCORES[spec.search](y, pred, n_classes)
    return value if spec.search_higher_is_better else -value


def search_sample(task: Task, data: Data, limit: int, seed: int) -> Data:
    """`data` itself when it has at most `limit` rows, else a seeded sample of that many
    (stratified by class for classification)."""
    y = data[1]
    if len(y) <= limit:
        return data
    strata = None if task is Task.regression else y
    rows = sample_indices(len(y), limit, seed=seed, strata=strata)
    return data[0][rows], y[rows]


def cv_folds(task: Task, y: np.ndarray, seed: int) -> Folds:
    """CV_FOLDS shuffled folds, stratified when every class has enough rows."""
    if task is Task.regression:
        splitter: Any = KFold(CV_FOLDS, shuffle=True, random_state=seed)
    else:
        smallest = int(np.bincount(y.astype(int)).min(initial=0)) if len(y) else 0
        if smallest < CV_FOLDS:
            splitter = KFold(CV_FOLDS, shuffle=True, random_state=seed)
        else:
            splitter = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


@dataclass(frozen=True)
class SearchRowSet:
    """The rows of one search: the (possibly sampled) splits the trials use, all rows for
    the refit, and the folds when selecting by cross-validation."""

    train: Data  # what holdout trials fit on (a sample of a big training split)
    validation: Data  # what holdout trials are scored on
    all_x: np.ndarray  # every training and validation row: the refit's data
    all_y: np.ndarray
    full_train_rows: int
    sampled: bool
    folds: Folds  # empty unless selecting by cross-validation

    @classmethod
    def of(
        cls,
        task: Task,
        train: Data,
        validation: Data,
        *,
        max_train_rows: int,
        max_valid_rows: int,
        seed: int,
    ) -> SearchRowSet:
        """Samples big splits, joins all rows, and draws folds for small data."""
        search_train = search_sample(task, train, max_train_rows, seed)
        search_valid = search_sample(task, validation, max_valid_rows, seed + 1)
        sampled = len(search_train[1]) < len(train[1]) or len(search_valid[1]) < len(validation[1])
        all_y = np.concatenate([train[1], validation[1]])
        folds = cv_folds(task, all_y, seed) if len(all_y) < CV_MAX_ROWS else []
        return cls(
            train=search_train,
            validation=search_valid,
            all_x=np.concatenate([train[0], validation[0]]),
            all_y=all_y,
            full_train_rows=len(train[1]),
            sampled=sampled,
            folds=folds,
        )

    @property
    def use_cv(self) -> bool:
        return bool(self.folds)

    @property
    def held_y(self) -> np.ndarray:
        """Labels of the held-out predictions: every row (out-of-fold) or the validation."""
        return self.all_y if self.use_cv else self.validation[1]

    @property
    def selection_data(self) -> SelectionData:
        return SelectionData.cross_validation if self.use_cv else SelectionData.validation_split

    @property
    def search_rows(self) -> SearchRows:
        return SearchRows(train=len(self.train[1]), validation=len(self.validation[1]))
