"""Benchmark: how long a resumed training takes to reach its first new epoch, against a fresh run.

    .venv/bin/python benchmarks/iterative_resume.py [--repeats 3]

Set-up (untimed): the data of benchmarks/iterative.py (44 200 rows, an MLPRegressor (64, 64)). Each
repeat, in fresh processes `trainyard run`, one after the other:
  fresh    job.epochs: {count: 10, checkpoint: {every: 5, keep_last: 1}} in a new experiment
  resumed  the same config with job.resume=true job.epochs.count=12: it reopens that run, loads the
           checkpoint of epoch 10 and trains epochs 11 and 12
Each is timed from just before the process starts to the start of its first epoch (the wall-clock
timestamp of that epoch's epoch_time point less its value): the start-up a fresh run pays, and the
same plus finding the run and loading the checkpoint for a resumed one. Prints the medians and the
median of the paired differences; writes benchmarks/results/iterative_resume.json. See
docs/iterative.md.
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
from iterative import BIN, CONFIG, HERE, write_data

RESULTS = HERE / "results" / "iterative_resume.json"
EPOCHS = "{count: 10, checkpoint: {every: 5, keep_last: 1}}"


def first_epoch_start(folder: Path, experiment: str, epoch: int) -> float:
    """The wall-clock time (s) epoch ``epoch`` of the experiment's one run started."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    (point,) = [m for m in client.get_metric_history(run.info.run_id, "epoch_time") if m.step == epoch]
    return point.timestamp / 1000 - point.value


def run(folder: Path, path: Path, *overrides: str) -> float:
    """Start ``trainyard run`` and wait for it; the wall-clock time it was started at."""
    started = time.time()
    subprocess.run(
        [str(BIN / "trainyard"), "run", str(path), *overrides],
        cwd=folder,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
        check=True,
        capture_output=True,
    )
    return started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load = os.getloadavg()
    seconds: dict[str, list[float]] = {"fresh": [], "resumed": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_data(folder)
        for repeat in range(args.repeats):
            experiment = f"resume-{repeat}"
            path = folder / f"{experiment}.yaml"
            path.write_text(CONFIG.format(experiment=experiment, epochs=EPOCHS))
            started = run(folder, path)
            seconds["fresh"].append(first_epoch_start(folder, experiment, 1) - started)
            started = run(folder, path, "job.resume=true", "job.epochs.count=12")
            seconds["resumed"].append(first_epoch_start(folder, experiment, 11) - started)
            print(
                f"repeat {repeat}: fresh {seconds['fresh'][-1]:.2f} s, resumed {seconds['resumed'][-1]:.2f} s",
                flush=True,
            )
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    extra = statistics.median(r - f for r, f in zip(seconds["resumed"], seconds["fresh"], strict=True))
    results: dict[str, Any] = {
        "repeats": args.repeats,
        "seconds_to_first_epoch": seconds,
        "medians": medians,
        "resume_extra_seconds": extra,
        **describe(load, ("mlflow", "scikit-learn", "pandas")),
    }
    print(f"to the first epoch: fresh {medians['fresh']:.2f} s, resumed {medians['resumed']:.2f} s")
    print(f"a resume adds {extra:.2f} s (median of paired differences)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
