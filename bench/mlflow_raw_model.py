"""MLflow's model on raw bank rows: the code of a `pyfunc` model, saved by bench/mlflow_model.py.

MLflow's "models from code": this file is copied into the model directory and run when the
model is loaded, so nothing of the model is pickled. The booster is an artifact in XGBoost's
own JSON format; `predict` takes the bank file's raw columns (as `mlflow models predict -t csv`
parses them), applies the reference recipe's feature engineering (`reference_recipe.engineer`:
its flags and pandas one-hot encoding, shipped beside this file through `code_paths`), aligns
the result to the booster's feature names (a category absent from the rows scored is a column
of zeros) and returns P(y = yes) per row.
"""

from __future__ import annotations

from typing import Any

import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd
import xgboost as xgb

import reference_recipe

BOOSTER = "booster"  # the artifact's name in the model's MLmodel file


class RawBankModel(mlflow.pyfunc.PythonModel):
    """The reference recipe's encoding and XGBoost booster, applied to raw rows."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the booster from its JSON artifact."""
        self.booster = xgb.Booster()
        self.booster.load_model(context.artifacts[BOOSTER])
        names = self.booster.feature_names
        if not names:
            raise ValueError("the booster has no feature names to align the encoded rows to")
        self.names = list(names)

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """P(y = yes) for each raw row."""
        encoded = reference_recipe.engineer(model_input)
        features = encoded.reindex(columns=self.names, fill_value=0.0).astype("float64")
        return self.booster.inplace_predict(features)  # checks the feature names


mlflow.models.set_model(RawBankModel())
