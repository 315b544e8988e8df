"""Benchmark: the evaluation job on N candidates against loading and predicting them by hand.

    .venv/bin/python benchmarks/evaluation.py [--candidates 10] [--repeats 5]

Set-up (untimed), in a temporary folder with the example data, prepared: N training runs of
confs/lifecycle/training.yaml (a test hold-out; different max_depth each). Then, interleaved
(A, B, C, A, B, C, ...), each a fresh process:
  evaluation        trainyard run evaluation.yaml job.rescore=true job.plots=false
  evaluation+plots  the same with the figures (into each candidate's run and the evaluation's)
  by_hand           a script that, for each run, loads its model with mlflow.sklearn.load_model,
                    reads the table, recomputes the test rows with scikit-learn and predicts them
Prints the medians and the per-round ratios' medians; writes benchmarks/results/evaluation.json.
See docs/benchmarks-evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import describe  # benchmarks/ is on sys.path when a script here runs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
RESULTS = HERE / "results" / "evaluation.json"
TRAINING = ROOT / "confs" / "lifecycle" / "training.yaml"
EVALUATION = """job:
  KIND: evaluation
  mlflow: {experiment: lifecycle}
  candidates: {KIND: runs}
"""
BY_HAND = """
import sys
import mlflow, numpy as np, pandas as pd
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
from sklearn.model_selection import train_test_split

client = mlflow.MlflowClient("sqlite:///mlflow.db")
experiment = client.get_experiment_by_name("lifecycle")
runs = client.search_runs([experiment.experiment_id], "tags.`trainyard.kind` = 'training'")
data = pd.read_parquet("data/diabetes_prepared.parquet")
_, test = train_test_split(np.arange(len(data)), test_size=round(len(data) * 0.2), random_state=42)
rows = data.iloc[np.sort(test)]
inputs, truth = rows.drop(columns=["patient_id", "visit_date", "target"]), rows["target"]
for run in runs:
    (model,) = client.search_logged_models([experiment.experiment_id], f"source_run_id = '{run.info.run_id}'")
    predicted = mlflow.sklearn.load_model(f"models:/{model.model_id}").predict(inputs)
    print(r2_score(truth, predicted), root_mean_squared_error(truth, predicted), mean_absolute_error(truth, predicted))
"""


def run(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=10, help="training runs to evaluate (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load = os.getloadavg()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    trainyard = str(BIN / "trainyard")
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-evaluation-") as name:
        folder = Path(name)
        run([trainyard, "example-data"], folder, env)
        run([trainyard, "run", str(ROOT / "confs" / "preparation.yaml")], folder, env)
        for depth in range(args.candidates):
            run([trainyard, "run", str(TRAINING), f"job.model.params.max_depth={depth % 6 + 2}",
                 f"job.model.params.max_iter={100 + 10 * depth}"], folder, env)  # fmt: skip
        (folder / "evaluation.yaml").write_text(EVALUATION)
        (folder / "by_hand.py").write_text(BY_HAND)
        contenders = {
            "evaluation": [trainyard, "run", "evaluation.yaml", "job.rescore=true", "job.plots=false"],
            "evaluation+plots": [trainyard, "run", "evaluation.yaml", "job.rescore=true"],
            "by_hand": [str(BIN / "python"), "by_hand.py"],
        }
        for command in contenders.values():  # warm-up: caches, .pyc files
            run(command, folder, env)
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.repeats):
            for label, command in contenders.items():
                times[label].append(run(command, folder, env))
    ratios = {
        f"{label} / by_hand": statistics.median(
            a / b for a, b in zip(times[label], times["by_hand"], strict=True)
        )
        for label in ("evaluation", "evaluation+plots")
    }
    results: dict[str, Any] = {
        **describe(load, ("mlflow", "scikit-learn", "pandas")),
        "candidates": args.candidates,
        "repeats": args.repeats,
        "wall_s": times,
        "median_s": {label: statistics.median(values) for label, values in times.items()},
        "ratios_median_of_rounds": ratios,
        "goal": {"evaluation / by_hand": 1.2},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("| contender | median wall s |\n|---|---|")
    for label, value in results["median_s"].items():
        print(f"| {label} | {value:.2f} |")
    for label, value in ratios.items():
        print(f"{label}: {value:.2f} (goal for evaluation / by_hand: at most 1.2)")
    print(f"load average {load} -> {os.getloadavg()}; written: {args.out}")


if __name__ == "__main__":
    main()
