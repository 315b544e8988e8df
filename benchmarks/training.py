"""Benchmark: `trainyard run` against the same training job written by hand with MLflow.

    .venv/bin/python benchmarks/training.py [--repeats 5] [--data ../shared/data/bikes/hour.csv]

Contenders, run interleaved (A, B, C, A, B, C, ...), each as a fresh process in a fresh temporary
folder that gets a new SQLite MLflow store:
  trainyard          trainyard run benchmarks/bikes-training.yaml (data paths given as overrides)
  mlflow_defaults    benchmarks/baseline_mlflow_defaults.py (requirements inferred by MLflow)
  mlflow_pinned      benchmarks/baseline_mlflow_defaults.py --pinned (explicit pip_requirements)
Then `trainyard --help`, import times and MLflow store set-up, each in fresh processes.
Prints markdown tables and writes benchmarks/results/training.json. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
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
BIN = Path(sys.executable).parent  # the venv's bin (not resolved: that would leave the venv)
CONFIG = HERE / "bikes-training.yaml"
BASELINE = HERE / "baseline_mlflow_defaults.py"
RESULTS = HERE / "results" / "training.json"
STEP_LINE = re.compile(r"✓ (.+?) \((\d+(?:\.\d+)?) s\)")
GOALS = {"trainyard / mlflow_defaults": 0.6, "trainyard / mlflow_pinned": 1.0, "trainyard --help": 0.3}
STORE = "mlflow.set_tracking_uri('sqlite:///mlflow.db'); mlflow.set_experiment('bikes')"
COLD = "import mlflow + sklearn.ensemble, no .pyc (compiled from source)"
# Statements timed in fresh interpreters (name: setup, statement), in order, all in one temporary folder.
PROBES = {
    "import pandas": ("", "import pandas"),
    "import sklearn.ensemble": ("", "import sklearn.ensemble"),
    "import mlflow": ("", "import mlflow"),
    "import pandera.pandas": ("", "import pandera.pandas"),
    "import trainyard.cli (what --help needs)": ("", "import trainyard.cli"),
    "load + validate the bikes config": (
        "from trainyard.config import load_settings",
        "load_settings({arguments})",
    ),
    "create a sqlite store + experiment": ("import mlflow", STORE),
    "open that store again (next process)": ("import mlflow", STORE),  # the previous probe created it
    "import mlflow + sklearn.ensemble": ("", "import mlflow, sklearn.ensemble"),
    "the same with the garbage collector off": ("import gc; gc.disable()", "import mlflow, sklearn.ensemble"),
    COLD: ("", "import mlflow, sklearn.ensemble"),
}
# Whole processes timed (wall): what tearing down the interpreter costs after the heavy imports.
EXITS = {
    "wall: `python -c 'import mlflow, sklearn.ensemble'`": "import mlflow, sklearn.ensemble",
    "wall: the same + `gc.freeze()` before exiting": "import mlflow, sklearn.ensemble, gc; gc.freeze()",
}


def environment(args: argparse.Namespace) -> dict[str, str]:
    """The subprocesses' environment: no telemetry, no network but 127.0.0.1, fixed threads, .pyc cache."""
    env = dict(os.environ)
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", COLUMNS="200")
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[proxy] = "http://127.0.0.1:9"  # anything that tries the network fails here, locally
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    if args.source:  # Trainyard as committed at --ref, ahead of the editable install of the working tree
        env["PYTHONPATH"] = os.pathsep.join([str(args.source), *filter(None, [env.get("PYTHONPATH")])])
    if args.bytecode_cache:  # cache compiled modules (as any normal install does), even if disabled here
        env["PYTHONPYCACHEPREFIX"] = str(RESULTS.parent / "pycache")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def extract(ref: str, folder: str) -> Path:
    """Trainyard's ``src`` as committed at ``ref``, extracted into ``folder``."""
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
    return Path(folder) / "src"


def fingerprint(source: Path) -> str:
    """A digest of every Python file under ``source``: shows whether the code changed during the run."""
    digest = hashlib.sha256()
    for path in sorted(source.rglob("*.py")):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def git(*arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str, str]:
    """Wall time, stdout and stderr of ``command``; exits with its output if it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout, done.stderr


def contenders(data: Path) -> dict[str, list[str]]:
    python = str(BIN / "python")
    paths = [f"job.inputs.path={data}", f"job.targets.path={data}"]
    jobs = {
        "trainyard": [str(BIN / "trainyard"), "run", str(CONFIG), *paths],
        "mlflow_defaults": [python, str(BASELINE), "--data", str(data)],
        "mlflow_pinned": [python, str(BASELINE), "--data", str(data), "--pinned"],
    }
    return jobs


def run_job(command: list[str], env: dict[str, str]) -> tuple[float, float, dict[str, float]]:
    """One run in a fresh folder (new MLflow store): wall and CPU seconds, where they went (its steps)."""
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-") as folder:
        cpu_before = cpu_of_children()
        start = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        assert process.stderr is not None
        lines = [(time.perf_counter() - start, line) for line in process.stderr]
        process.wait()
        seconds = time.perf_counter() - start
        cpu = cpu_of_children() - cpu_before
        output = "".join(line for _, line in lines)
        if process.returncode != 0 or not (Path(folder) / "mlflow.db").is_file():
            sys.exit(f"{' '.join(command)} failed ({process.returncode}):\n{output}")
    stamped = [(at, match) for at, line in lines if (match := STEP_LINE.search(line))]
    steps = {match[1]: float(match[2]) for _, match in stamped}
    if "register" not in steps:
        sys.exit(f"{' '.join(command)} did not report its register step:\n{output}")
    first_at, first = stamped[0]
    startup = first_at - float(first[2])
    exit_ = seconds - lines[-1][0]
    return (
        seconds,
        cpu,
        {
            "start-up (before the first step)": startup,
            **steps,
            "between the steps": seconds - startup - exit_ - sum(steps.values()),
            "exit (after the last output)": exit_,
        },
    )


def cpu_of_children() -> float:
    """User + system CPU seconds of every finished child process (and theirs): less noisy than wall."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def probe(setup: str, statement: str, folder: Path, env: dict[str, str]) -> float:
    """Seconds that ``statement`` takes in a fresh interpreter, after ``setup``."""
    code = (
        f"import time\n{setup}\nstart = time.perf_counter()\n{statement}\nprint(time.perf_counter() - start)"
    )
    _, stdout, _ = timed([str(BIN / "python"), "-c", code], folder, env)
    return float(stdout.strip().splitlines()[-1])


def summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.data).resolve()
    load_at_start = os.getloadavg()
    source = args.source or ROOT / "src"
    code_at_start = fingerprint(source)
    env = environment(args)
    jobs = contenders(data)
    print("warm-up: one untimed run of each contender (fills the .pyc and file caches)", flush=True)
    for command in jobs.values():
        run_job(command, env)
    times: dict[str, list[float]] = {name: [] for name in jobs}
    cpus: dict[str, list[float]] = {name: [] for name in jobs}
    steps: dict[str, dict[str, list[float]]] = {name: {} for name in jobs}
    for repeat in range(args.repeats):
        for name, command in jobs.items():
            seconds, cpu, logged = run_job(command, env)
            times[name].append(seconds)
            cpus[name].append(cpu)
            for title, value in logged.items():
                steps[name].setdefault(title, []).append(value)
            print(f"  {repeat + 1}/{args.repeats} {name}: {seconds:.2f} s (CPU {cpu:.2f} s)", flush=True)
    help_times = [timed([str(BIN / "trainyard"), "--help"], ROOT, env)[0] for _ in range(args.help_repeats)]
    bare_times = [timed([str(BIN / "python"), "-c", "pass"], ROOT, env)[0] for _ in range(args.help_repeats)]
    arguments = [str(CONFIG)], [f"job.inputs.path={data}", f"job.targets.path={data}"]
    probes: dict[str, list[float]] = {name: [] for name in [*PROBES, *EXITS]}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="trainyard-bench-") as folder:
            # An empty cache folder that is never written: every module is compiled from source.
            cold = {**env, "PYTHONPYCACHEPREFIX": f"{folder}/no-pyc", "PYTHONDONTWRITEBYTECODE": "1"}
            for name, (setup, statement) in PROBES.items():
                code = statement.format(arguments=", ".join(map(repr, arguments)))
                probes[name].append(probe(setup, code, Path(folder), cold if name == COLD else env))
            for name, code in EXITS.items():
                probes[name].append(timed([str(BIN / "python"), "-c", code], Path(folder), env)[0])
    medians = {name: statistics.median(values) for name, values in times.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpus.items()}
    help_median = statistics.median(help_times)
    pairs = [
        (ours, theirs)
        for ours in medians
        if ours.startswith("trainyard")
        for theirs in ("mlflow_defaults", "mlflow_pinned")
    ]
    ratios = {f"{ours} / {theirs}": medians[ours] / medians[theirs] for ours, theirs in pairs}
    measured = {**ratios, "trainyard --help": help_median}
    if fingerprint(source) != code_at_start:
        print(f"WARNING: {source} changed during the run: the results mix two versions", file=sys.stderr)
    return {
        **describe(load_at_start, ("mlflow", "scikit-learn", "pandas", "trainyard")),
        "settings": {
            "repeats": args.repeats,
            "data": str(data),
            "omp_num_threads": args.threads or "library default",
            "bytecode_cache": args.bytecode_cache,
        },
        "trainyard_source": {
            "ref": args.ref or "working tree",
            "commit": git("rev-parse", args.ref or "HEAD"),
            "uncommitted_changes_in_src": bool(not args.ref and git("status", "--porcelain", "src")),
            "fingerprint_at_start": code_at_start,
            "fingerprint_at_end": fingerprint(source),
        },
        "commands": jobs,
        "contenders": {
            name: {**summary(times[name]), "cpu": summary(cpus[name]), "steps": steps[name]} for name in jobs
        },
        "ratios_of_medians": ratios,
        "ratios_of_cpu_medians": {f"{a} / {b}": cpu_medians[a] / cpu_medians[b] for a, b in pairs},
        "trainyard_help": summary(help_times),
        "python_startup": summary(bare_times),
        "probes": {name: summary(values) for name, values in probes.items()},
        "goals": {
            name: {"goal": f"<= {limit}", "measured": measured[name], "met": measured[name] <= limit}
            for name, limit in GOALS.items()
        },
    }


def report(results: dict[str, Any]) -> str:
    """The results as markdown tables."""
    runs = results["contenders"]
    lines = [
        f"{results['date']}, {results['machine']['cores']} cores, repeats {results['settings']['repeats']}, "
        f"trainyard {results['trainyard_source']['ref']} ({results['trainyard_source']['commit'][:7]}), "
        f"OMP_NUM_THREADS={results['settings']['omp_num_threads']}, "
        f"bytecode cache {'on' if results['settings']['bytecode_cache'] else 'off'}",
        "",
        "| contender | median (s) | min (s) | max (s) | CPU median (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, run in runs.items():
        cpu = run["cpu"]["median"]
        lines.append(f"| {name} | {run['median']:.2f} | {run['min']:.2f} | {run['max']:.2f} | {cpu:.2f} |")
    lines += ["", "| ratio of medians (same run) | wall | CPU |", "|---|---:|---:|"]
    for name, ratio in results["ratios_of_medians"].items():
        lines.append(f"| {name} | {ratio:.2f} | {results['ratios_of_cpu_medians'][name]:.2f} |")
    titles = list(dict.fromkeys(title for run in runs.values() for title in run["steps"]))
    for last in ("between the steps", "exit (after the last output)"):
        titles.append(titles.pop(titles.index(last)))
    lines += ["", f"| step (median s) | {' | '.join(runs)} |", "|---|" + "---:|" * len(runs)]
    for title in titles:
        cells = [
            f"{statistics.median(run['steps'][title]):.2f}" if title in run["steps"] else "—"
            for run in runs.values()
        ]
        lines.append(f"| {title} | {' | '.join(cells)} |")
    lines += ["", "| in a fresh process (trainyard's venv) | median (s) | min (s) |", "|---|---:|---:|"]
    for name, key in (("`trainyard --help`", "trainyard_help"), ("`python -c pass`", "python_startup")):
        wall = results[key]
        lines.append(f"| {name} (wall, {len(wall['all'])} runs) | {wall['median']:.3f} | {wall['min']:.3f} |")
    for name, values in results["probes"].items():
        lines.append(f"| {name} | {values['median']:.3f} | {values['min']:.3f} |")
    lines += ["", "| goal | target | measured | met |", "|---|---:|---:|---|"]
    for name, goal in results["goals"].items():
        unit, met = (" s" if name.endswith("--help") else "x"), "yes" if goal["met"] else "**no**"
        lines.append(f"| {name} | {goal['goal']}{unit} | {goal['measured']:.2f}{unit} | {met} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each contender (default 5)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/bikes/hour.csv"), help="hour.csv")
    parser.add_argument("--help-repeats", type=int, default=20, help="runs of `trainyard --help`")
    parser.add_argument(
        "--threads", type=int, default=1, help="OMP_NUM_THREADS of the contenders (0: library default)"
    )
    parser.add_argument(
        "--no-bytecode-cache",
        dest="bytecode_cache",
        action="store_false",
        help="keep the environment's .pyc behaviour (default: cache compiled modules in results/pycache)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results (default: {RESULTS})")
    parser.add_argument(
        "--ref", help="measure Trainyard as committed at this git ref (default: working tree)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-src-") as folder:
        args.source = extract(args.ref, folder) if args.ref else None
        results = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
