"""Benchmark: the inference job's rows per second and peak memory, against the pipeline's own predict
and against `mlflow models predict`.

    .venv/bin/python benchmarks/inference.py [--repeats 3] [--rows 1000000] [--threads N]
        [--parts speed,memory,levers]

In a temporary folder: train and register the bikes model (benchmarks/bikes-training.yaml on
../shared/data/bikes/hour.csv, 17,379 rows), and write that file repeated to --rows rows. Then, on
each file, the contenders run interleaved (A, B, C, A, B, C, ...), each as a fresh process:
  trainyard        trainyard run benchmarks/bikes-inference.yaml (chunk_size 100,000, the default)
  direct           benchmarks/baseline_direct_predict.py: load the pipeline, read whole, predict, write
  mlflow_predict   mlflow models predict --env-manager local -m models:/bikes/1 -i FILE -t csv
On the large file (part "memory"), trainyard also runs with chunk_size --small-chunk and with one
chunk (the whole file) for peak memory; part "levers" times chunk sizes from 10,000 to 1,000,000.
Per run: wall and CPU seconds and peak RSS of the process (wait4's ru_maxrss), and the seconds of the
work itself where the process reports them: the job's own rows/s (from reading its first chunk to
writing its last: read, check, predict, write) and the baseline's read + predict + write. Prints markdown tables and writes
benchmarks/results/inference.json. See docs/benchmarks-inference.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _machine import describe  # benchmarks/ is on sys.path when a script here runs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent  # the venv's bin (not resolved: that would leave the venv)
TRAINING = HERE / "bikes-training.yaml"
INFERENCE = HERE / "bikes-inference.yaml"
DIRECT = HERE / "baseline_direct_predict.py"
RESULTS = HERE / "results" / "inference.json"
MODEL = "models:/bikes/1"
# the job's own rate: from reading its first chunk to writing its last (check inputs, predict steps)
JOB_RATE = re.compile(r"✓ predict .* — ([\d,]+) rows in \d+ chunk\(s\), ([\d,]+) rows/s")
WORK_LINE = re.compile(r"^work (\d+(?:\.\d+)?)$", re.MULTILINE)
GOAL = 0.9  # trainyard's rows/s over the direct predict's, at least


@dataclass
class Sample:
    """One process: wall and CPU seconds, peak resident memory, and the seconds of its work."""

    wall: float
    cpu: float
    peak_mb: float
    work: float | None


def environment(args: argparse.Namespace, store: Path) -> dict[str, str]:
    """No telemetry, no network but 127.0.0.1, the store, and the native threads if given."""
    env = dict(os.environ)
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", COLUMNS="200")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[proxy] = "http://127.0.0.1:9"  # anything that tries the network fails here, locally
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    return env


def run(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[Sample, str]:
    """Run ``command`` to its end; its sample and output (exits with the output if it fails)."""
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage: its peak memory
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read()
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({process.returncode}):\n{output}")
    job, found = JOB_RATE.search(output), WORK_LINE.search(output)
    rate = float(job[2].replace(",", "")) if job else None
    work = int(job[1].replace(",", "")) / rate if job and rate else float(found[1]) if found else None
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, work), output


def prepare(folder: Path, data: Path, rows: int, env: dict[str, str]) -> dict[str, tuple[Path, int]]:
    """Train and register the model in ``folder``; the data files by label: (path, rows)."""
    import pandas as pd

    print("training and registering the bikes model (benchmarks/bikes-training.yaml)", flush=True)
    paths = [f"job.inputs.path={data}", f"job.targets.path={data}"]
    sample, _ = run([str(BIN / "trainyard"), "run", str(TRAINING), *paths], folder, env)
    print(f"  trained in {sample.wall:.1f} s", flush=True)
    table = pd.read_csv(data)
    repeated = pd.concat([table] * (rows // len(table) + 1), ignore_index=True).iloc[:rows]
    big = folder / f"bikes-{rows}.csv"
    repeated.to_csv(big, index=False)
    return {f"{len(table):,} rows": (data, len(table)), f"{rows:,} rows": (big, rows)}


def trainyard(file: Path, chunk_size: int, output: str = "predictions.csv") -> list[str]:
    overrides = [f"job.inputs.path={file}", f"job.chunk_size={chunk_size}", f"job.outputs.path={output}"]
    return [str(BIN / "trainyard"), "run", str(INFERENCE), *overrides]


def contenders(file: Path) -> dict[str, list[str]]:
    return {
        "trainyard": trainyard(file, 100_000),
        "direct": [str(BIN / "python"), str(DIRECT), "--data", str(file), "--model", MODEL],
        "mlflow_predict": [
            str(BIN / "mlflow"), "models", "predict", "--env-manager", "local",
            "-m", MODEL, "-i", str(file), "-t", "csv", "-o", "mlflow-predictions.json",
        ],
    }  # fmt: skip


def check_same_predictions(folder: Path, file: Path, env: dict[str, str]) -> None:
    """The job's predictions are the pipeline's own, to the last digit."""
    import pandas as pd

    run(trainyard(file, 1_000, "check.csv"), folder, env)
    run(
        [
            str(BIN / "python"),
            str(DIRECT),
            "--data",
            str(file),
            "--model",
            MODEL,
            "--output",
            "check-direct.csv",
        ],
        folder,
        env,
    )
    job, direct = pd.read_csv(folder / "check.csv"), pd.read_csv(folder / "check-direct.csv")
    if not job["prediction"].equals(direct["prediction"]):
        sys.exit("the inference job's predictions differ from the pipeline's own")


def interleaved(
    jobs: dict[str, list[str]], repeats: int, folder: Path, env: dict[str, str], label: str
) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {name: [] for name in jobs}
    for repeat in range(repeats):
        for name, command in jobs.items():
            sample, _ = run(command, folder, env)
            samples[name].append(sample)
            work = f", work {sample.work:.2f} s" if sample.work is not None else ""
            print(
                f"  {label} {repeat + 1}/{repeats} {name}: {sample.wall:.2f} s (CPU {sample.cpu:.2f} s"
                f"{work}, peak {sample.peak_mb:.0f} MB)",
                flush=True,
            )
    return samples


def median(samples: list[Sample], key: str) -> float | None:
    values = [getattr(sample, key) for sample in samples if getattr(sample, key) is not None]
    return statistics.median(values) if values else None


def tables(results: dict[str, Any]) -> str:
    """The figures as markdown: medians of the interleaved runs, and the best (least disturbed) work."""
    lines = []
    for label, entry in results["speed"].items():
        rows = entry["rows"]
        lines += [
            f"\n### {label}\n",
            "| contender | wall s | CPU s | work s | best work s | rows/s (wall) | rows/s (work) "
            "| rows per CPU s | peak MB |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, samples in entry["samples"].items():
            wall, cpu = median(samples, "wall"), median(samples, "cpu")
            work, peak = median(samples, "work"), median(samples, "peak_mb")
            assert wall is not None and cpu is not None and peak is not None
            best = min((sample.work for sample in samples if sample.work is not None), default=None)
            shown_work = f"{work:.2f} | {best:.2f}" if work and best else "— | —"
            work_rate = f"{rows / work:,.0f}" if work else "—"
            lines.append(
                f"| {name} | {wall:.2f} | {cpu:.2f} | {shown_work} | {rows / wall:,.0f} | {work_rate} "
                f"| {rows / cpu:,.0f} | {peak:.0f} |"
            )
        lines.append("")
        for ratio, value in entry["ratios"].items():
            lines.append(f"- {ratio}: **{value:.2f}x**")
    if results["memory"]:
        lines += [
            "\n### Peak memory on the large file\n",
            "| chunk_size | peak MB (median) | wall s | CPU s |",
            "| --- | --- | --- | --- |",
        ]
    for chunk, samples in results["memory"].items():
        peak, wall, cpu = (median(samples, key) or 0.0 for key in ("peak_mb", "wall", "cpu"))
        lines.append(f"| {chunk} | {peak:.0f} | {wall:.2f} | {cpu:.2f} |")
    if results["levers"]:
        lines += [
            "\n### Chunk size on the large file\n",
            "| chunk_size | work s | rows/s (work) | CPU s | rows per CPU s | peak MB |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
    rows = results["large_rows"]
    for chunk, samples in results["levers"].items():
        work, cpu, peak = (median(samples, key) or 0.0 for key in ("work", "cpu", "peak_mb"))
        lines.append(
            f"| {chunk} | {work:.2f} | {rows / work:,.0f} | {cpu:.2f} | {rows / cpu:,.0f} | {peak:.0f} |"
        )
    return "\n".join(lines)


def ratios(samples: dict[str, list[Sample]], rows: int) -> dict[str, float]:
    rate = {
        name: {key: rows / value for key in ("wall", "work", "cpu") if (value := median(s, key))}
        for name, s in samples.items()
    }
    found = {
        "trainyard / direct, rows/s of the work (read, predict, write)": rate["trainyard"]["work"] / rate["direct"]["work"],
        "trainyard / direct, rows/s of the whole process": rate["trainyard"]["wall"] / rate["direct"]["wall"],
        "trainyard / direct, rows per CPU second of the whole process": rate["trainyard"]["cpu"] / rate["direct"]["cpu"],
        "trainyard / mlflow models predict, rows/s of the whole process": rate["trainyard"]["wall"] / rate["mlflow_predict"]["wall"],
        "trainyard / mlflow models predict, rows per CPU second": rate["trainyard"]["cpu"] / rate["mlflow_predict"]["cpu"],
    }  # fmt: skip
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "bikes" / "hour.csv"))
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the large file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small-chunk", type=int, default=50_000, help="chunk_size of the memory run")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of every process (unset: the default)")
    parser.add_argument("--parts", default="speed,memory", help="of speed, memory, levers (chunk sizes)")
    args = parser.parse_args()
    data = Path(args.data).resolve()
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="trainyard-infer-bench-") as name:
        folder = Path(name)
        env = environment(args, folder / "mlflow.db")
        files = prepare(folder, data, args.rows, env)
        (small, _), (large, large_rows) = files.values()
        check_same_predictions(folder, small, env)
        print("warm-up: one untimed run of each contender (fills the .pyc and file caches)", flush=True)
        for command in contenders(small).values():
            run(command, folder, env)
        parts = set(args.parts.split(","))
        speed: dict[str, Any] = {}
        memory: dict[str, list[Sample]] = {}
        levers: dict[str, list[Sample]] = {}
        for label, (file, rows) in files.items() if "speed" in parts else ():
            samples = interleaved(contenders(file), args.repeats, folder, env, label)
            speed[label] = {
                "file": str(file),
                "rows": rows,
                "samples": samples,
                "ratios": ratios(samples, rows),
            }
        memory_jobs = {
            f"{args.small_chunk:,}": trainyard(large, args.small_chunk),
            f"{large_rows:,} (the whole file)": trainyard(large, large_rows),
        }
        if "memory" in parts:
            memory = interleaved(memory_jobs, args.repeats, folder, env, "memory")
        if "levers" in parts:
            sizes = [10_000, 50_000, 250_000, 1_000_000]
            lever_jobs = {f"{size:,}": trainyard(large, size) for size in sizes}
            levers = interleaved(lever_jobs, args.repeats, folder, env, "chunk size")
    results: dict[str, Any] = {
        **describe(load_at_start, ("trainyard", "mlflow", "scikit-learn", "pandas", "pyarrow")),
        "command": " ".join(sys.argv),
        "threads": args.threads,
        "speed": speed,
        "memory": memory,
        "levers": levers,
        "large_rows": large_rows,
    }
    print(tables(results))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=asdict) + "\n")
    print(f"\nwritten: {RESULTS}")
    if speed:
        work_ratio = next(iter(speed[f"{large_rows:,} rows"]["ratios"].values()))
        goal = f"goal: trainyard at least {GOAL}x the direct predict's rows/s of the work on the large file"
        print(f"{goal}: {work_ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
