"""Hyperparameter search within a time budget (see `search.Tuner`).

Modules: `outcome` (the typed results: trials, selection, refit; light, so model metadata and
reports can import it without the search's libraries), `rows` (which rows trials fit and are
scored on), `candidates` (the kept trials and the single-or-ensemble choice), `refit` (the
final model on all rows) and `search` (the `Tuner` estimator running Optuna's study).
"""
