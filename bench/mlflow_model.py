"""The MLflow side of the serving benchmark (runs in its own virtualenv, `.venv-mlflow`).

Usage: mlflow_model.py DATA.csv ROWS.json OUT_DIR

Trains the reference recipe's XGBoost model (its one-hot features, its fixed settings, 100
rounds) on every row of DATA.csv except the benchmark's request rows, saves it as an MLflow
model in OUT_DIR/model (the `xgboost` flavour, with a signature) and writes the request
bodies MLflow's server takes for the same rows: OUT_DIR/mlflow-one.json (the first row) and
OUT_DIR/mlflow-batch.json (all of them), in the `dataframe_split` layout. ROWS.json holds
the 0-based row numbers of the request rows, as `[n, ...]`.

MLflow's model is given features already encoded, so its server does less per row than ours,
which takes raw rows and applies the fitted preprocessing itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlflow.xgboost
import pandas as pd
import xgboost as xgb
from mlflow.models import infer_signature

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reference_recipe


def body(features: pd.DataFrame) -> bytes:
    """An MLflow scoring request for these rows (`dataframe_split`: columns and rows)."""
    split = {"columns": list(features.columns), "data": features.to_numpy().tolist()}
    return json.dumps({"dataframe_split": split}).encode()


def main() -> None:
    """Train, save the MLflow model and write the request bodies."""
    data_path, rows_path, out = sys.argv[1:4]
    out_dir = Path(out)
    frame = reference_recipe.engineer(pd.read_csv(data_path, sep=";"))
    label = frame["y_yes"].to_numpy()
    features = frame.drop(columns=["y_no", "y_yes"]).astype("float64")
    requested = json.loads(Path(rows_path).read_text())
    training = features.index.difference(requested)
    booster = xgb.train(
        reference_recipe.PARAMS,
        xgb.DMatrix(features.loc[training].to_numpy(), label=label[training]),
        num_boost_round=reference_recipe.ROUNDS,
    )
    sample = features.iloc[:5]
    signature = infer_signature(sample, booster.inplace_predict(sample.to_numpy()))
    mlflow.xgboost.save_model(booster, str(out_dir / "model"), signature=signature)
    rows = features.iloc[requested]
    (out_dir / "mlflow-one.json").write_bytes(body(rows.iloc[:1]))
    (out_dir / "mlflow-batch.json").write_bytes(body(rows))
    print(json.dumps({"mlflow": mlflow.__version__, "features": features.shape[1]}))


if __name__ == "__main__":
    main()
