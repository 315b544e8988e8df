"""Baseline: the bikes training job written by hand, the plain MLflow way (no Trainyard).

    python benchmarks/baseline_mlflow_defaults.py --data ../shared/data/bikes/hour.csv [--pinned]

Same work as benchmarks/bikes-training.yaml: read, log both datasets, time-ordered split (last 20 % of
rows held out), one-hot for season and weathersit, HistGradientBoostingRegressor(max_iter=300,
random_state=0), r2/rmse/mae, inferred signature, model logged with a 5-row input example, registered
with an alias. The store is ``sqlite:///mlflow.db`` in the working folder.

Without ``--pinned`` the model is logged with MLflow's defaults (requirements inferred, which loads the
model in a subprocess); with ``--pinned`` the requirements are given as ``pip_requirements``. Each step
prints ``✓ step (seconds)`` to stderr, the way Trainyard logs its steps, so the two can be compared.
MLflow's default serialization (skops) refuses this pipeline (HistGradientBoosting's ``TreePredictor``
is not a trusted type), so the model is saved with cloudpickle, as Trainyard does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # never phone home from a benchmark

INPUTS = ["season", "yr", "mnth", "hr", "holiday", "weekday", "workingday", "weathersit"]
INPUTS += ["temp", "atemp", "hum", "windspeed"]
CATEGORICAL = ["season", "weathersit"]
TARGET = "cnt"
PARAMS = {"max_iter": 300, "random_state": 0}
TEST_SIZE = 0.2


@contextmanager
def step(title: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    print(f"✓ {title} ({time.perf_counter() - start:.2f} s)", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/bikes/hour.csv")
    parser.add_argument("--pinned", action="store_true", help="give pip_requirements instead of inferring")
    args = parser.parse_args()

    with step("import"):
        import mlflow
        import mlflow.sklearn
        import pandas as pd
        from mlflow.data.pandas_dataset import from_pandas
        from mlflow.models import infer_signature
        from sklearn.compose import ColumnTransformer
        from sklearn.ensemble import HistGradientBoostingRegressor
        from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder

    with step("open store"):
        mlflow.set_tracking_uri("sqlite:///mlflow.db")
        mlflow.set_experiment("bikes")
    with mlflow.start_run():
        with step("read inputs and targets"):
            data = pd.read_csv(args.data, usecols=[*INPUTS, TARGET])
            inputs, targets = data[INPUTS], data[[TARGET]]
        with step("log lineage"):
            source = os.path.abspath(args.data)
            mlflow.log_input(from_pandas(inputs, source=source, name="inputs"), context="inputs")
            mlflow.log_input(from_pandas(targets, source=source, name="targets"), context="targets")
        with step("split"):
            cut = len(data) - round(len(data) * TEST_SIZE)
            x_train, x_test = inputs.iloc[:cut], inputs.iloc[cut:]
            y_train, y_test = targets[TARGET].iloc[:cut], targets[TARGET].iloc[cut:]
            mlflow.log_params({**PARAMS, "categorical": CATEGORICAL, "test_size": TEST_SIZE})
        with step("fit"):
            encode = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
            preprocess = ColumnTransformer([("categorical", encode, CATEGORICAL)], remainder="passthrough")
            model = Pipeline(
                [("preprocess", preprocess), ("estimator", HistGradientBoostingRegressor(**PARAMS))]
            )
            model.fit(x_train, y_train)
        with step("predict"):
            predictions = model.predict(x_test)
        with step("score"):
            mlflow.log_metrics(
                {
                    "r2": r2_score(y_test, predictions),
                    "rmse": root_mean_squared_error(y_test, predictions),
                    "mae": mean_absolute_error(y_test, predictions),
                }
            )
        with step("sign"):
            signature = infer_signature(x_train, predictions)
        with step("save"):
            requirements = None
            if args.pinned:
                from importlib.metadata import version

                names = ["scikit-learn", "numpy", "pandas", "scipy", "cloudpickle"]
                requirements = [f"{name}=={version(name)}" for name in names]
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                input_example=x_train.head(5),
                pip_requirements=requirements,
                serialization_format="cloudpickle",  # skops (the default) refuses TreePredictor
            )
        with step("register"):
            version_ = mlflow.register_model(info.model_uri, "bikes")
            mlflow.MlflowClient().set_registered_model_alias("bikes", "challenger", version_.version)


if __name__ == "__main__":
    main()
