"""Benchmark: how long a resumed training takes to reach its first new epoch, against a fresh run.

    .venv/bin/python benchmarks/iterative_resume.py [--repeats 3]

Set-up (untimed): the data of benchmarks/iterative.py (44 200 rows, an MLPRegressor (64, 64)), and
each repeat a run of 10 epochs with a checkpoint every 5 (experiment resume-N). Then, in fresh
processes `trainyard run`, alternating which goes first:
  fresh    the same config, 2 epochs, in a new experiment (fresh-N)
  resumed  job.resume=true job.epochs.count=12 on resume-N: it finds the run, reopens it, loads the
           checkpoint of epoch 10 and trains epochs 11 and 12
Both train 2 epochs and save the same final model, so the difference is what resuming costs. Each
is timed from just before the process starts to the start of its first epoch (the wall-clock
timestamp of that epoch's epoch_time point less its value), and by the process's CPU time (wait4).
Prints the medians and the medians of the paired differences; writes
benchmarks/results/iterative_resume.json. See docs/iterative.md.
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


def run(folder: Path, path: Path, *overrides: str) -> tuple[float, float]:
    """Run ``trainyard run`` to its end: the wall-clock time it was started at, and its CPU seconds."""
    started = time.time()
    process = subprocess.Popen(
        [str(BIN / "trainyard"), "run", str(path), *overrides],
        cwd=folder,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"{path.name} {overrides} failed"
    return started, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load = os.getloadavg()
    seconds: dict[str, list[float]] = {"fresh": [], "resumed": []}
    cpu: dict[str, list[float]] = {"fresh": [], "resumed": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_data(folder)
        for repeat in range(args.repeats):
            path = folder / f"resume-{repeat}.yaml"
            path.write_text(CONFIG.format(experiment=f"resume-{repeat}", epochs=EPOCHS))
            run(folder, path)  # the run to resume
            fresh = folder / f"fresh-{repeat}.yaml"
            fresh.write_text(CONFIG.format(experiment=f"fresh-{repeat}", epochs=EPOCHS))
            order = ["fresh", "resumed"] if repeat % 2 == 0 else ["resumed", "fresh"]
            for name in order:
                if name == "fresh":
                    started, used = run(folder, fresh, "job.epochs.count=2")
                    seconds[name].append(first_epoch_start(folder, f"fresh-{repeat}", 1) - started)
                else:
                    started, used = run(folder, path, "job.resume=true", "job.epochs.count=12")
                    seconds[name].append(first_epoch_start(folder, f"resume-{repeat}", 11) - started)
                cpu[name].append(used)
            print(
                f"repeat {repeat}: to the first epoch fresh {seconds['fresh'][-1]:.2f} s, resumed "
                f"{seconds['resumed'][-1]:.2f} s; CPU {cpu['fresh'][-1]:.2f} s, {cpu['resumed'][-1]:.2f} s",
                flush=True,
            )
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    extra = statistics.median(r - f for r, f in zip(seconds["resumed"], seconds["fresh"], strict=True))
    extra_cpu = statistics.median(r - f for r, f in zip(cpu["resumed"], cpu["fresh"], strict=True))
    results: dict[str, Any] = {
        "repeats": args.repeats,
        "seconds_to_first_epoch": seconds,
        "medians": medians,
        "resume_extra_seconds": extra,
        "cpu_seconds": cpu,
        "resume_extra_cpu_seconds": extra_cpu,
        **describe(load, ("mlflow", "scikit-learn", "pandas")),
    }
    print(f"to the first epoch: fresh {medians['fresh']:.2f} s, resumed {medians['resumed']:.2f} s")
    print(
        f"a resume adds {extra:.2f} s to the first epoch, {extra_cpu:.2f} s CPU (medians of paired differences)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
