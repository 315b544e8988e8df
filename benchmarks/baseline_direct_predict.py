"""Baseline for benchmarks/inference.py: the fitted pipeline's own predict, by hand, in one process.

    .venv/bin/python benchmarks/baseline_direct_predict.py --data FILE.csv --model models:/bikes/1

Loads the scikit-learn pipeline (mlflow.sklearn.load_model, from the store in MLFLOW_TRACKING_URI),
reads the CSV whole (the model's input columns), predicts, writes the predictions as CSV; prints
`work <seconds>`: reading, predicting and writing, the part the inference job's predict step does.
"""

from __future__ import annotations

import argparse
import time

import mlflow.sklearn
import pandas as pd

COLUMNS = ["season", "yr", "mnth", "hr", "holiday", "weekday", "workingday", "weathersit"]
COLUMNS += ["temp", "atemp", "hum", "windspeed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--output", default="direct-predictions.csv")
    args = parser.parse_args()
    model = mlflow.sklearn.load_model(args.model)
    start = time.perf_counter()
    inputs = pd.read_csv(args.data, usecols=COLUMNS)[COLUMNS]
    pd.DataFrame({"prediction": model.predict(inputs)}).to_csv(args.output, index=False)
    print(f"work {time.perf_counter() - start:.4f}")


if __name__ == "__main__":
    main()
