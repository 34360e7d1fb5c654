"""The MLflow side of the serving and scoring benchmarks (runs in its own virtualenv,
`.venv-mlflow`).

Usage: mlflow_model.py DATA.csv ROWS.json OUT_DIR

Trains the reference recipe's XGBoost model (its one-hot features, its fixed settings, 100
rounds) on every row of DATA.csv except the benchmark's request rows and saves the one booster
as two MLflow models:

- OUT_DIR/model: the `xgboost` flavour, with a signature of the encoded features. It is given
  features already encoded, so it does less per row than ours, which takes raw rows and applies
  the fitted preprocessing itself.
- OUT_DIR/model-raw: a `pyfunc` model (bench/mlflow_raw_model.py, saved as code, the booster an
  artifact in XGBoost's JSON format: no pickle) with a signature of the raw columns (all but
  the target): it applies the recipe's feature engineering to raw rows itself, as a user would
  ship the recipe's model to score the file as it comes.

It also writes the request bodies MLflow's server takes for the request rows:
OUT_DIR/mlflow-one.json (the first row) and OUT_DIR/mlflow-batch.json (all of them), in the
`dataframe_split` layout. ROWS.json holds the 0-based row numbers of the request rows, as
`[n, ...]`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlflow.pyfunc
import mlflow.xgboost
import pandas as pd
import xgboost as xgb
from mlflow.models import infer_signature

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reference_recipe

HERE = Path(__file__).resolve().parent
TARGET = "y"


def body(features: pd.DataFrame) -> bytes:
    """An MLflow scoring request for these rows (`dataframe_split`: columns and rows)."""
    split = {"columns": list(features.columns), "data": features.to_numpy().tolist()}
    return json.dumps({"dataframe_split": split}).encode()


def save_raw_model(booster: xgb.Booster, raw: pd.DataFrame, path: Path) -> None:
    """The `pyfunc` model on raw rows: bench/mlflow_raw_model.py as its code, the recipe
    module beside it, the booster as a JSON artifact, a signature of the raw columns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    booster_file = path.parent / "booster.json"
    booster.save_model(booster_file)
    inputs = raw.drop(columns=[TARGET]).iloc[:5]
    encoded = reference_recipe.engineer(inputs)
    features = encoded.reindex(columns=booster.feature_names, fill_value=0.0).astype("float64")
    signature = infer_signature(inputs, booster.inplace_predict(features))
    mlflow.pyfunc.save_model(
        str(path),
        python_model=str(HERE / "mlflow_raw_model.py"),
        artifacts={"booster": str(booster_file)},
        code_paths=[str(HERE / "reference_recipe.py")],
        signature=signature,
        input_example=inputs,  # stored as JSON beside the model
    )
    booster_file.unlink()


def main() -> None:
    """Train, save the two MLflow models and write the request bodies."""
    data_path, rows_path, out = sys.argv[1:4]
    out_dir = Path(out)
    raw = pd.read_csv(data_path, sep=";")
    frame = reference_recipe.engineer(raw)
    label = frame[f"{TARGET}_yes"].to_numpy()
    features = frame.drop(columns=[f"{TARGET}_no", f"{TARGET}_yes"]).astype("float64")
    requested = json.loads(Path(rows_path).read_text())
    training = features.index.difference(requested)
    booster = xgb.train(
        reference_recipe.PARAMS,
        xgb.DMatrix(
            features.loc[training].to_numpy(),
            label=label[training],
            feature_names=list(features.columns),  # the raw model aligns its encoding to them
        ),
        num_boost_round=reference_recipe.ROUNDS,
    )
    sample = features.iloc[:5]
    signature = infer_signature(sample, booster.inplace_predict(sample))
    mlflow.xgboost.save_model(booster, str(out_dir / "model"), signature=signature)
    save_raw_model(booster, raw, out_dir / "model-raw")
    rows = features.iloc[requested]
    (out_dir / "mlflow-one.json").write_bytes(body(rows.iloc[:1]))
    (out_dir / "mlflow-batch.json").write_bytes(body(rows))
    print(json.dumps({"mlflow": mlflow.__version__, "features": features.shape[1]}))


if __name__ == "__main__":
    main()
