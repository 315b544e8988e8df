"""Benchmark: native threads of the trials, as a user's machine has them (OMP_NUM_THREADS unset).

    .venv/bin/python benchmarks/threads.py [--trials 12] [--repeats 2]

benchmarks/tuning-hgb.yaml (random-search trials of a HistGradientBoostingRegressor, whose fits start
OpenMP threads) is run three ways, each in a fresh folder holding the first 5,000 rows of
../shared/data/bikes/hour.csv: one ``trainyard run`` process; two processes started together on the
same study (the README's "start it in two terminals"; n_trials is the total); one process with
``job.searcher.n_jobs=2``. Each way runs twice:
  before  job.threads=<usable cores>: every fit starts one thread per core, what the libraries do by
          default and what Trainyard did before it set the pools
  after   job.threads=auto (the default): the cores divided among the trials running at once on this host
OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS and BLIS_NUM_THREADS are removed from the
environment of every measured process. Rounds are interleaved (each variant once per round); figures
are medians of whole-process wall times. Prints a markdown table, writes benchmarks/results/threads.json.
See docs/benchmarks-threads.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

from _machine import describe  # benchmarks/ is on sys.path when a script here runs
from tuning import DATA, RESULTS, ROWS, environment, run_trainyard

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "tuning-hgb.yaml"
POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
WAYS = {"1 process": (1, 1), "2 processes": (2, 1), "1 process, n_jobs: 2": (1, 2)}  # workers, n_jobs


def user_environment() -> dict[str, str]:
    """The benchmarks' environment (no network, own caches) without any variable that sizes a pool."""
    env = environment(1)
    for name in POOL_VARIABLES:
        env.pop(name, None)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12, help="trials of the study (in total)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds")
    parser.add_argument("--out", type=Path, default=RESULTS / "threads.json")
    args = parser.parse_args()
    load = os.getloadavg()
    with DATA.open() as source:
        data_lines = [line for _, line in zip(range(ROWS + 1), source, strict=False)]
    env = user_environment()
    from trainyard.runtime.processes import usable_cores

    cores = usable_cores()
    variants = {
        (way, when): (
            workers,
            [
                f"job.searcher.n_trials={args.trials}",
                f"job.searcher.n_jobs={n_jobs}",
                f"job.threads={cores if when == 'before' else 'auto'}",
            ],
        )
        for way, (workers, n_jobs) in WAYS.items()
        for when in ("before", "after")
    }
    run_trainyard(data_lines, env, CONFIG, ["job.searcher.n_trials=2"])  # warm-up: caches, store template
    walls: dict[tuple[str, str], list[float]] = {key: [] for key in variants}
    finished: dict[tuple[str, str], list[int]] = {key: [] for key in variants}
    for repeat in range(args.repeats):
        for key, (workers, overrides) in variants.items():
            record = run_trainyard(data_lines, env, CONFIG, overrides, workers=workers)
            walls[key].append(record["wall_s"])
            finished[key].append(record["trials"]["finished"] if record["trials"] else 0)
            print(
                f"  round {repeat + 1}/{args.repeats} {key[0]}, {key[1]}: {record['wall_s']:.2f} s",
                flush=True,
            )
    median = {key: statistics.median(values) for key, values in walls.items()}
    lines = [
        f"{args.trials} trials, {cores} usable cores, medians of {args.repeats} rounds (whole-process wall, s)",
        "",
        "| | before (one thread per core per fit) | after (auto) | before / after |",
        "|---|---|---|---|",
    ]
    for way in WAYS:
        before, after = median[(way, "before")], median[(way, "after")]
        lines.append(f"| {way} | {before:.1f} | {after:.1f} | {before / after:.2f} |")
    one = median[("1 process", "after")]
    lines += [
        "",
        "After: " + ", ".join(f"{way} / 1 process = {median[(way, 'after')] / one:.2f}" for way in WAYS),
    ]
    print("\n".join(lines))
    results: dict[str, Any] = {
        **describe(load, ("trainyard", "scikit-learn", "threadpoolctl", "optuna", "mlflow")),
        "settings": {"trials": args.trials, "repeats": args.repeats, "cores": cores, "config": CONFIG.name},
        "wall_s": {f"{way}, {when}": walls[(way, when)] for way, when in variants},
        "finished_trials": {f"{way}, {when}": finished[(way, when)] for way, when in variants},
        "table": lines,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
