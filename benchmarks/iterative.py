"""Benchmark: the overhead of a checkpoint every epoch on a 50-epoch training.

    .venv/bin/python benchmarks/iterative.py [--epochs 50] [--repeats 3] [--copies 100]

Set-up (untimed), in a temporary folder: the diabetes example rows repeated 100 times (``--copies``)
with a little noise (44 200 rows), so that an epoch of an MLPRegressor (64, 64) takes 0.1 to 0.3 s. Then,
interleaved (A, B, A, B, ...), each a fresh process `trainyard run`:
  plain        job.epochs: {count: 50}
  checkpoints  job.epochs: {count: 50, checkpoint: {every: 1, keep_last: 2}} (50 logged models, 48
               deleted), written by the writer process (a thread on a one-core machine)
  inline       the same with checkpoint.background: false (written in the training thread)
Each is timed as its "fit in epochs" phase (the MLflow run's time from its first to its last
epoch_time point, plus the first epoch), as the whole process, and by the process's CPU time
(wait4). Prints the medians, the overhead and the medians of the paired ratios; writes benchmarks/results/iterative.json. See docs/iterative.md.
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
BIN = Path(sys.executable).parent
RESULTS = HERE / "results" / "iterative.json"
CONFIG = """job:
  KIND: training
  mlflow: {{experiment: {experiment}}}
  inputs: {{KIND: csv, path: data/large.csv, drop: [target]}}
  targets: {{KIND: csv, path: data/large.csv, columns: [target]}}
  splitter: {{KIND: train_test, test_size: 0.25, seed: 7}}
  model:
    KIND: sklearn
    estimator: MLPRegressor
    params: {{hidden_layer_sizes: [64, 64], learning_rate_init: 0.001, random_state: 0}}
    scale: true
  metrics: [rmse]
  threads: 1
  epochs: {epochs}
"""


def write_data(folder: Path, copies: int = 100) -> None:
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    rng = np.random.default_rng(0)
    large = pd.concat([frame] * copies, ignore_index=True)
    large.iloc[:, :-1] += rng.normal(0, 0.005, size=(len(large), frame.shape[1] - 1))
    (folder / "data").mkdir()
    large.to_csv(folder / "data" / "large.csv", index=False)


def training_seconds(folder: Path, experiment: str) -> float:
    """From the start of the first epoch to the end of the last, as the run logged them."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    history = sorted(client.get_metric_history(run.info.run_id, "epoch_time"), key=lambda m: m.step)
    return (history[-1].timestamp - history[0].timestamp) / 1000 + history[0].value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=100, help="copies of the diabetes rows")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load = os.getloadavg()
    variants = {
        "plain": f"{{count: {args.epochs}}}",
        "checkpoints": f"{{count: {args.epochs}, checkpoint: {{every: 1, keep_last: 2}}}}",
        "inline": f"{{count: {args.epochs}, checkpoint: {{every: 1, keep_last: 2, background: false}}}}",
    }
    times: dict[str, dict[str, list[float]]] = {
        name: {"training": [], "process": [], "cpu": []} for name in variants
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_data(folder, args.copies)
        env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
        for repeat in range(args.repeats):
            for name, epochs in variants.items():
                experiment = f"{name}-{repeat}"
                path = folder / f"{experiment}.yaml"
                path.write_text(CONFIG.format(experiment=experiment, epochs=epochs))
                start = time.perf_counter()
                process = subprocess.Popen(
                    [str(BIN / "trainyard"), "run", str(path)],
                    cwd=folder,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                _, status, usage = os.wait4(process.pid, 0)
                assert os.waitstatus_to_exitcode(status) == 0, f"{experiment} failed"
                times[name]["process"].append(time.perf_counter() - start)
                times[name]["cpu"].append(usage.ru_utime + usage.ru_stime)
                times[name]["training"].append(training_seconds(folder, experiment))
                print(f"{experiment}: training {times[name]['training'][-1]:.2f} s", flush=True)
    medians = {name: {k: statistics.median(v) for k, v in values.items()} for name, values in times.items()}
    overhead = medians["checkpoints"]["training"] / medians["plain"]["training"] - 1
    ratios = {  # paired: each repeat's checkpointed run against the plain run next to it
        name: statistics.median(
            run / plain
            for run, plain in zip(times[name]["training"], times["plain"]["training"], strict=True)
        )
        for name in variants
        if name != "plain"
    }
    per_epoch = medians["plain"]["training"] / args.epochs
    results: dict[str, Any] = {
        "epochs": args.epochs,
        "rows": 442 * args.copies,
        "repeats": args.repeats,
        "seconds": times,
        "medians": medians,
        "plain_epoch_seconds": per_epoch,
        "checkpoint_overhead": overhead,
        "paired_ratios": ratios,
        **describe(load, ("mlflow", "scikit-learn", "pandas")),
    }
    for name, values in medians.items():
        print(
            f"{name:12} training {values['training']:.2f} s, process {values['process']:.2f} s, "
            f"CPU {values['cpu']:.2f} s"
        )
    print(f"an epoch takes {per_epoch:.3f} s; a checkpoint every epoch adds {overhead:.1%} (medians)")
    for name, ratio in ratios.items():
        print(f"{name}: median of paired ratios to plain {ratio:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
