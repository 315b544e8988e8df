"""Benchmark: a Trainyard tuning job against the same Optuna study written by hand.

    .venv/bin/python benchmarks/tuning.py [--trials 100] [--repeats 3] [--trials-long N] [--no-what-if]
        [--no-profile]

Overhead (run interleaved: A, B, the other B contenders, A, B, ...; each a fresh process in a fresh
temporary folder that holds the first 5,000 rows of ../shared/data/bikes/hour.csv as bikes-5000.csv):
  A  plain       Optuna + scikit-learn, in memory: TPESampler(seed=s), cross_val_score of a
                 DecisionTreeRegressor over KFold(3, shuffle, 42); prints its import and optimize() times
  B  trainyard   trainyard run benchmarks/tuning-bikes.yaml: the same study, journal storage, a new
                 SQLite MLflow store (copied from the store template). The job process never imports
                 MLflow: the CLI starts the writer process (trainyard.tuning.writer_process) before the config is
                 validated, and it does all MLflow work (opens the store and the parent run with its
                 config and params, logs the lineage of the tables the job sends it, writes a child
                 run per trial id the job sends it, logs the results and plots and ends the parent
                 run at the end, while the job waits). Steps: open study, read inputs and targets,
                 make folds, search, log results; "start-up" is the time before the first (open study)
  B on an existing store: the store and experiment 'bikes-tuning' made beforehand (untimed), as any
                 run after the first one on a store finds them
  B, first store on this machine: XDG_CACHE_HOME is a new empty folder for that run, so the store
                 template is built during the run (MLflow's migrations), as on a machine's first run
  what-ifs       B with one piece changed, to price it: plots off; MLflow written by the job process
                 (the writer command exits at once and the job falls back to doing all of the MLflow
                 work itself: it imports MLflow, opens the store and parent run, logs the lineage,
                 the child runs and the results); one TPESampler instead of the per-trial seeded
                 wrapper; the in-memory study instead of the journal (MLflow in the job process too:
                 the writer cannot read an in-memory study); then all of these at once
  Round r uses the sampler seed s = 55 + r for every contender (B: job.searcher.sampler.seed=s): A's
                 one TPESampler and B's per-trial seeded ones propose different trials, whose fits cost
                 more or less by luck; varying the seed keeps one seed's luck out of the medians
  --trials-long N: A and B again with N trials (interleaved, same repeats), for the overhead of a
                 longer study per trial
Every process runs with XDG_CACHE_HOME=benchmarks/results/cache (its store templates are removed at the
start: the warm-up builds the template from the code under test) and MPLCONFIGDIR=
benchmarks/results/cache/matplotlib (the first-store runs' empty cache leaves matplotlib's font cache
alone); ~/.cache is not touched.
Scale-out (benchmarks/tuning-forest.yaml: the same 100 seeded random-search trials of a 50-tree random
forest in every variant): one process; two processes on the same study started together; one
process with n_jobs=2 threads. Each starts with the MLflow store and experiment in place (made untimed),
as a shared store has them after its first run: two workers that create them together collide, which
is checked separately.
Then one profiled Trainyard run: cProfile of the job process, and of its writer process (its own
profile: MLflow is opened, and the lineage, child runs, results and plots are written there). Prints
markdown tables, writes benchmarks/results/tuning.json. See docs/benchmarks-tuning.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pstats
import queue
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

from _machine import describe  # benchmarks/ is on sys.path when a script here runs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent  # the venv's bin (not resolved: that would leave the venv)
DATA = ROOT.parent / "shared/data/bikes/hour.csv"
RESULTS = HERE / "results"
BIKES, FOREST = HERE / "tuning-bikes.yaml", HERE / "tuning-forest.yaml"
DATA_FILE, ROWS = "bikes-5000.csv", 5000
SEED = 55  # the sampler seed of the first round (tuning-bikes.yaml's); round r uses SEED + r
JOURNAL = "optuna-journal.log"
STEP_LINE = re.compile(r"✓ (.+?) \((\d+(?:\.\d+)?) s\)")
FINISHED = ("COMPLETE", "PRUNED", "FAIL")
GOALS = {"overhead": 1.10, "scale-out": 1.7}
A, B = "A plain optuna + sklearn", "B trainyard"  # the overhead contenders the ratios compare
B_EXISTING, B_FIRST = "B on an existing store", "B, first store on this machine (no template yet)"

PLAIN = '''\
"""A plain Optuna + scikit-learn study (written by benchmarks/tuning.py): python plain.py DATA TRIALS."""
import json
import sys
import time

start = time.perf_counter()
import optuna
import pandas as pd
from sklearn.model_selection import KFold, cross_val_score
from sklearn.tree import DecisionTreeRegressor

imported = time.perf_counter()
optuna.logging.set_verbosity(optuna.logging.WARNING)
COLUMNS = ["season", "yr", "mnth", "hr", "holiday", "weekday", "workingday", "weathersit", "temp", "atemp",
           "hum", "windspeed"]
data = pd.read_csv(sys.argv[1])
inputs, target = data[COLUMNS], data["cnt"]
folds = KFold(n_splits=3, shuffle=True, random_state=42)


def objective(trial: optuna.Trial) -> float:
    model = DecisionTreeRegressor(
        max_depth=trial.suggest_int("max_depth", 2, 20),
        min_samples_leaf=trial.suggest_int("min_samples_leaf", 1, 50),
        min_samples_split=trial.suggest_int("min_samples_split", 2, 40),
        random_state=0,  # ties between splits broken the same way every run
    )
    scores = cross_val_score(model, inputs, target, cv=folds, scoring="neg_root_mean_squared_error")
    return -scores.mean()


study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=int(sys.argv[3])))
ready = time.perf_counter()
study.optimize(objective, n_trials=int(sys.argv[2]))
done = time.perf_counter()
trials = [[t.params, t.duration.total_seconds() if t.duration else None, t.state.name, t.value]
          for t in study.trials]
print(json.dumps({"import_s": imported - start, "read_s": ready - imported, "optimize_s": done - ready,
                  "trials": trials}))
'''

# What-if launchers: `trainyard run` with one piece of the tuning job patched, in the same process.
RUN = "import sys\nfrom trainyard.cli import main\nsys.exit(main(sys.argv[1:]))"
# The writer process exits at once: the job notices it stopped and does all of the MLflow work itself
# (InProcessWriter: its own StudyRuns opens the store and parent run, logs lineage, child runs, results).
IN_THE_JOB = (
    "import sys, trainyard.tuning.writer_process as m\nm.WRITER_COMMAND = [sys.executable, '-c', 'pass']"
)
ONE_SAMPLER = (
    "import trainyard.tuning.searchers as s\n"
    "s.OptunaSearcher.sampler = lambda self: self.sampler_.build(self.sampler_.seed)"
)
IN_MEMORY = (
    "import optuna, trainyard.tuning.studies as s\n"
    "s.StudyStorage.open = lambda self, uri: optuna.storages.InMemoryStorage()"
)
PATCHES = {
    "MLflow written by the job process (no writer process)": IN_THE_JOB,
    "one TPESampler (no per-trial wrapper)": ONE_SAMPLER,
    # The writer reads the trials from the study's storage: an in-memory study is the job's alone.
    "in-memory study (no journal; MLflow written by the job process)": f"{IN_MEMORY}\n{IN_THE_JOB}",
}
ALL_AT_ONCE = "plots off, one TPESampler, in-memory study, MLflow written by the job process"
ALL_PATCHES = "\n".join((IN_THE_JOB, ONE_SAMPLER, IN_MEMORY))
BIKES_EXPERIMENT, FOREST_EXPERIMENT = "bikes-tuning", "forest-tuning"  # job.mlflow.experiment of each


def store_and_experiment(experiment: str) -> str:
    """Untimed, in the folder before a run: the MLflow store and the job's experiment."""
    return f"import mlflow; mlflow.set_tracking_uri('sqlite:///mlflow.db'); mlflow.set_experiment({experiment!r})"


# Untimed, in the folder before the race checks: a store without the experiment.
EMPTY_STORE = "import mlflow; mlflow.MlflowClient('sqlite:///mlflow.db').search_experiments()"
RACES = {"no MLflow store yet": "", "a store without the experiment": EMPTY_STORE}
CACHE = RESULTS / "cache"  # XDG_CACHE_HOME of every measured process: the MLflow store template is here
TEMPLATES = "trainyard/mlflow-*-empty-store.db"  # under XDG_CACHE_HOME (trainyard.io.tracking.store_template)
# The writer process under cProfile (argv: the profile file, the job's pid), in the profiled run only.
PROFILED_WRITER = """\
import cProfile, os, sys
profiler = cProfile.Profile()
profiler.enable()
try:
    from trainyard.tuning.writer_process import serve
    code = serve(int(sys.argv[2]), sys.stdin.buffer, sys.stdout.buffer)
finally:
    profiler.disable()
    sys.stdout.flush()
    profiler.dump_stats(sys.argv[1])
os._exit(code)
"""
# Functions whose cumulative time the profiles report: label -> (path fragment, function names).
# The job process never imports MLflow: the writer process opens it and writes everything, unless it
# is gone (then the job's own StudyRuns does the same; the "fallback" rows are 0 otherwise).
PROFILED = {
    "imports (all `import` statements)": ("importlib._bootstrap", ("_find_and_load",)),
    "writer process: spawn (Popen, by the CLI before the config is validated)": ("trainyard/tuning/writer_process.py", ("_spawn",)),
    "open study step (TuningJob.prepare: study, claim, writer start)": ("trainyard/jobs/tuning.py", ("prepare",)),
    "  TrialMirror.start (takes the writer, sends it 'open')": ("trainyard/tuning/writer.py", ("start",)),
    "lineage: the tables pickled into the pipe (TrialMirror.log_lineage)": ("trainyard/tuning/writer.py", ("log_lineage",)),
    "Study.optimize (the search step)": ("optuna/study/study.py", ("optimize",)),
    "objective: cross-validation": ("trainyard/jobs/tuning.py", ("__call__",)),
    "  pipeline fit (3 folds)": ("trainyard/core/models.py", ("fit",)),
    "  pipeline predict": ("trainyard/core/models.py", ("predict",)),
    "  trial.set_user_attr (storage writes)": ("optuna/trial/_trial.py", ("set_user_attr",)),
    "  trial.report / should_prune": ("optuna/trial/_trial.py", ("report", "should_prune")),
    "sampler: fresh TPESampler per trial": ("trainyard/tuning/trial_seeding.py", ("_for",)),
    "sampler: TPE sampling": ("optuna/samplers/_tpe/sampler.py", ("sample_independent", "sample_relative")),
    "storage: journal reads (sync with the file)": ("optuna/storages/journal/_storage.py", ("_sync_with_backend",)),
    "storage: journal appends": ("journal", ("append_logs",)),  # Optuna's file backend, or Trainyard's
    "callback: trial id to the writer process (pipe)": ("trainyard/tuning/writer.py", ("on_trial_end",)),
    "callback: progress log line": ("trainyard/tuning/progress.py", ("on_trial_end",)),
    "callback: MaxTrialsCallback": ("optuna/_callbacks.py", ("__call__",)),
    "log results: the job waits for the writer (TrialMirror.finish)": ("trainyard/tuning/writer.py", ("finish",)),
    "fallback: MLflow opened in the job (StudyRuns.open)": ("trainyard/tuning/study_runs.py", ("open",)),
    "fallback: lineage logged in the job (StudyRuns.log_lineage)": ("trainyard/tuning/study_runs.py", ("log_lineage",)),
    "fallback: child runs written in the job (TrialLogger.write)": ("trainyard/tuning/trials.py", ("write",)),
    "fallback: results logged in the job (TrialLogger.log_results)": ("trainyard/tuning/trials.py", ("log_results",)),
}  # fmt: skip
PROFILED_IN_WRITER = {
    "imports (all `import` statements)": ("importlib._bootstrap", ("_find_and_load",)),
    "waiting for the job's messages (inbox)": (queue.__file__ or "queue.py", ("get",)),  # not SQLAlchemy's
    "open MLflow (StudyRuns.open: store, experiment, election, parent run)": ("trainyard/tuning/study_runs.py", ("open",)),
    "  MLflow store: new store (template copy, first connection)": ("trainyard/io/tracking.py", ("_create_sqlite_store_once",)),
    "  MLflow store: set_experiment": ("mlflow/tracking/fluent.py", ("set_experiment",)),
    "  open the study (StudyRuns._study: journal, load_study)": ("trainyard/tuning/study_runs.py", ("_study",)),
    "  parent run election (shared_parent_run)": ("trainyard/tuning/studies.py", ("shared_parent_run",)),
    "  parent run: start, config, params (MlflowService.begin_run)": ("trainyard/io/tracking.py", ("begin_run",)),
    "catch up at start (StudyRuns.catch_up: search_runs, missing trials)": ("trainyard/tuning/study_runs.py", ("catch_up",)),
    "plotting imports during the search": ("trainyard/tuning/writer_process.py", ("import_matplotlib", "import_importances")),
    "  a tiny study's figures drawn during the search": ("trainyard/tuning/writer_process.py", ("_draw_a_tiny_study",)),
    "log lineage (StudyRuns.log_lineage, mlflow.log_input)": ("trainyard/tuning/study_runs.py", ("log_lineage",)),
    "journal reads (sync with the file)": ("optuna/storages/journal/_storage.py", ("_sync_with_backend",)),
    "child MLflow runs (TrialLogger.write)": ("trainyard/tuning/trials.py", ("write",)),
    "log results (table, best, plots)": ("trainyard/tuning/trials.py", ("log_results",)),
    "  plots": ("trainyard/tuning/trials.py", ("_log_plots",)),
    "    param importances (mean decrease in impurity)": ("optuna/importance/_mean_decrease_impurity.py", ("evaluate",)),
    "end the parent run (StudyRuns.end)": ("trainyard/tuning/study_runs.py", ("end",)),
}  # fmt: skip


class Failed(Exception):
    """A measured process exited with an error."""


def environment(threads: int) -> dict[str, str]:
    """No telemetry, no network but 127.0.0.1, fixed threads, a .pyc cache, wide log lines, and the
    benchmark's own cache folder (the MLflow store template, matplotlib's font cache)."""
    env = dict(os.environ)
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", COLUMNS="200")
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[proxy] = "http://127.0.0.1:9"  # anything that tries the network fails here, locally
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONPYCACHEPREFIX"] = str(RESULTS / "pycache")  # as an installed package has its .pyc
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["XDG_CACHE_HOME"] = str(CACHE)  # a run may override it (first_store_run); ~/.cache stays untouched
    env["MPLCONFIGDIR"] = str(CACHE / "matplotlib")  # matplotlib's font cache, whatever XDG_CACHE_HOME is
    return env


def templates(cache: Path) -> list[str]:
    """The MLflow store templates under an XDG_CACHE_HOME."""
    return sorted(path.name for path in cache.glob(TEMPLATES))


def busy() -> bool:
    """Whether benchmarks/training.py runs (it would share the two cores)."""
    return subprocess.run(["pgrep", "-f", "benchmarks/training.py"], capture_output=True).returncode == 0


def wait_for_quiet() -> None:
    """Never measure while benchmarks/training.py runs."""
    waited = False
    while busy():
        if not waited:
            print("  (benchmarks/training.py is running: waiting)", flush=True)
        waited = True
        time.sleep(10)


def launch(commands: list[list[str]], folder: Path, env: dict[str, str]) -> dict[str, Any]:
    """Start ``commands`` together in ``folder``; wall time until all ended, each one's stdout and
    timestamped stderr lines."""
    wait_for_quiet()
    start = time.perf_counter()
    processes: list[subprocess.Popen[str]] = []
    logs: list[list[tuple[float, str]]] = []
    ends: list[float] = []
    for index, command in enumerate(commands):
        out = (folder / f"stdout-{index}.txt").open("w")
        processes.append(
            subprocess.Popen(command, cwd=folder, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
        )
        out.close()
        logs.append([])
        ends.append(0.0)

    def collect(index: int) -> None:
        stream = processes[index].stderr
        assert stream is not None
        logs[index].extend((time.perf_counter() - start, line) for line in stream)
        processes[index].wait()
        ends[index] = time.perf_counter() - start

    threads = [threading.Thread(target=collect, args=(index,)) for index in range(len(commands))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    for index, process in enumerate(processes):
        if process.returncode != 0:
            text = "".join(line for _, line in logs[index])
            raise Failed(f"{' '.join(commands[index])} failed ({process.returncode}):\n{text}")
    stdouts = [(folder / f"stdout-{index}.txt").read_text() for index in range(len(commands))]
    return {"wall_s": wall, "ends": ends, "logs": logs, "stdouts": stdouts}


def steps_of(log: list[tuple[float, str]], end: float) -> dict[str, float]:
    """A Trainyard run's logged steps, the time before its first step (imports, config, services),
    between its steps (handing the tables to the writer for the lineage; without a writer, opening
    MLflow and logging the lineage in the job) and after its last (the summary, exiting)."""
    stamped = [(at, match) for at, line in log if (match := STEP_LINE.search(line))]
    steps = {match[1]: float(match[2]) for _, match in stamped}
    first_at, first = stamped[0]
    pairs = itertools.pairwise(stamped)
    gaps = sum(max(0.0, at - float(match[2]) - before) for (before, _), (at, match) in pairs)
    return {
        "start-up": first_at - float(first[2]),
        **steps,
        "between steps": gaps,
        "after the last step": end - stamped[-1][0],
    }


def trial_stats(trials: list[list[Any]]) -> dict[str, Any]:
    """Finished trials, duplicated parameter sets, the best value, and seconds spent inside trials."""
    finished = [t for t in trials if t[2] in FINISHED]
    keys = [json.dumps(t[0], sort_keys=True) for t in finished if t[2] == "COMPLETE"]
    return {
        "finished": len(finished),
        "failed": sum(t[2] == "FAIL" for t in trials),
        "duplicate_params": len(keys) - len(set(keys)),
        "best": min((t[3] for t in finished if t[2] == "COMPLETE"), default=None),
        "in_trials_s": sum(t[1] or 0.0 for t in finished),
    }


def stored_trials(folder: Path) -> list[list[Any]] | None:
    """The trials of the one study in ``folder``'s journal (None: no journal)."""
    if not (folder / JOURNAL).is_file():
        return None
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(folder / JOURNAL)))
    (name,) = optuna.get_all_study_names(storage)
    study = optuna.load_study(study_name=name, storage=storage)
    return [
        [t.params, t.duration.total_seconds() if t.duration else None, t.state.name, t.value]
        for t in study.trials
    ]


def mlflow_runs(folder: Path) -> dict[str, int]:
    """Parent and child runs in the folder's MLflow store, and runs that went to the Default experiment."""
    with closing(sqlite3.connect(folder / "mlflow.db")) as db:
        children = db.execute("select count(*) from tags where key = 'mlflow.parentRunId'").fetchone()[0]
        total = db.execute("select count(*) from runs").fetchone()[0]
        default = db.execute("select count(*) from runs where experiment_id = 0").fetchone()[0]
    return {"parent_runs": total - children, "child_runs": children, "in_default_experiment": default}


def fresh_folder(data_lines: list[str]) -> tempfile.TemporaryDirectory[str]:
    folder = tempfile.TemporaryDirectory(prefix="trainyard-tuning-bench-")
    Path(folder.name, DATA_FILE).write_text("".join(data_lines))
    return folder


def run_plain(data_lines: list[str], trials: int, env: dict[str, str], seed: int = SEED) -> dict[str, Any]:
    with fresh_folder(data_lines) as name:
        folder = Path(name)
        (folder / "plain.py").write_text(PLAIN)
        done = launch([[str(BIN / "python"), "plain.py", DATA_FILE, str(trials), str(seed)]], folder, env)
    printed = json.loads(done["stdouts"][0].strip().splitlines()[-1])
    return {
        "wall_s": done["wall_s"],
        "import_s": printed["import_s"],
        "search_s": printed["optimize_s"],
        "trials": trial_stats(printed["trials"]),
    }


def run_trainyard(
    data_lines: list[str],
    env: dict[str, str],
    config: Path,
    args: list[str],
    workers: int = 1,
    patch: str = "",
    prepare: str = "",
    seed: int | None = None,
) -> dict[str, Any]:
    """``workers`` processes of ``trainyard run config args`` started together in one fresh folder,
    after the Python code ``prepare`` ran there (untimed); ``seed``: the sampler's, if not the config's."""
    if seed is not None:
        args = [*args, f"job.searcher.sampler.seed={seed}"]
    command = (
        [str(BIN / "python"), "-c", f"{patch}\n{RUN}", "run", str(config), *args]
        if patch
        else [str(BIN / "trainyard"), "run", str(config), *args]
    )
    with fresh_folder(data_lines) as name:
        folder = Path(name)
        if prepare:
            subprocess.run(
                [str(BIN / "python"), "-c", prepare], cwd=folder, env=env, check=True, capture_output=True
            )
        done = launch([command] * workers, folder, env)
        trials = stored_trials(folder)
        runs = mlflow_runs(folder)
    steps = [steps_of(log, end) for log, end in zip(done["logs"], done["ends"], strict=True)]
    return {
        "wall_s": done["wall_s"],
        "import_s": max(s["start-up"] for s in steps),
        "search_s": max(s["search"] for s in steps),
        "steps": steps[0] if workers == 1 else steps,
        "trials": trial_stats(trials) if trials is not None else None,
        "mlflow": runs,
    }


def first_store_run(
    data_lines: list[str], env: dict[str, str], args: list[str], seed: int | None = None
) -> dict[str, Any]:
    """B with an XDG_CACHE_HOME of its own, new and empty: the store template is built during the run."""
    with tempfile.TemporaryDirectory(prefix="trainyard-tuning-bench-cache-") as cache:
        record = run_trainyard(data_lines, {**env, "XDG_CACHE_HOME": cache}, BIKES, args, seed=seed)
        record["template_built"] = bool(templates(Path(cache)))
        record["cache_entries"] = sorted(path.name for path in Path(cache).iterdir())
    return record


def race(data_lines: list[str], env: dict[str, str], prepare: str) -> str:
    """Two workers started together on a new study, after ``prepare``: what happens."""
    try:
        record = run_trainyard(
            data_lines, env, FOREST, ["job.searcher.n_trials=4"], workers=2, prepare=prepare
        )
    except Failed as error:
        lines = str(error).strip().splitlines()
        return "failed: " + next((line for line in lines if line.startswith("error:")), lines[-1])
    runs = record["mlflow"]
    misplaced = f", but {runs['in_default_experiment']} runs in the Default experiment"
    return f"ok: {runs['parent_runs']} parent, {runs['child_runs']} child runs" + (
        misplaced if runs["in_default_experiment"] else ""
    )


def summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


def interleave(
    contenders: dict[str, Callable[..., dict[str, Any]]], repeats: int, title: str, seeded: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """Each contender once per round, ``repeats`` rounds; every run's record. ``seeded``: round r runs
    every contender with the sampler seed SEED + r, so that no seed's luck (which trials TPE proposes,
    and what they cost to fit) decides the medians."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
    for repeat in range(repeats):
        for name, run in contenders.items():
            seeds = {"seed": SEED + repeat} if seeded else {}
            record = run(**seeds)
            while busy():  # it started during this run: measure again once it is done
                print("  (benchmarks/training.py started meanwhile: run discarded)", flush=True)
                record = run(**seeds)
            runs[name].append(record)
            steps = record.get("steps")
            shown = steps if isinstance(steps, dict) else {"search": record["search_s"]}
            details = ", ".join(f"{step} {seconds:.2f}" for step, seconds in shown.items())
            print(
                f"  {title} {repeat + 1}/{repeats} {name}: {record['wall_s']:.2f} s ({details})", flush=True
            )
    return runs


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {key: summary([r[key] for r in runs]) for key in ("wall_s", "import_s", "search_s")}
    out["in_trials_s"] = summary([r["trials"]["in_trials_s"] for r in runs if r["trials"]] or [0.0])
    out["runs"] = runs
    return out


def cumulative(output: Path, chosen: Mapping[str, tuple[str, tuple[str, ...]]]) -> dict[str, Any]:
    """A cProfile file's total and the cumulative seconds and calls of the chosen functions."""
    stats: dict[Any, Any] = pstats.Stats(str(output)).stats  # type: ignore[attr-defined]
    found = {}
    for label, (fragment, names) in chosen.items():
        entries = [v for (path, _, func), v in stats.items() if fragment in path and func in names]
        found[label] = {"seconds": sum(v[3] for v in entries), "calls": sum(v[1] for v in entries)}
    return {
        "file": str(output),
        "profiled_total_s": max(entry[3] for entry in stats.values()),
        "functions": found,
    }


def profile(data_lines: list[str], env: dict[str, str]) -> dict[str, Any]:
    """One `trainyard run` of the bikes study under cProfile, its writer process under another:
    cumulative seconds of chosen functions in each."""
    output, writer_output = RESULTS / "tuning-trainyard.prof", RESULTS / "tuning-writer.prof"
    writer_output.unlink(missing_ok=True)
    launcher = (  # the job as `trainyard run`, with the writer command wrapped in cProfile
        "import sys\nimport trainyard.tuning.writer_process as m\n"
        f"m.WRITER_COMMAND = [sys.executable, '-c', {PROFILED_WRITER!r}, {str(writer_output)!r}]\n{RUN}\n"
    )
    with fresh_folder(data_lines) as name:
        Path(name, "profiled.py").write_text(launcher)
        command = [str(BIN / "python"), "-m", "cProfile", "-o", str(output), "profiled.py"]
        done = launch([[*command, "run", str(BIKES)]], Path(name), env)
        runs = mlflow_runs(Path(name))
    found = {"wall_s": done["wall_s"], "mlflow": runs, **cumulative(output, PROFILED)}
    found["writer"] = cumulative(writer_output, PROFILED_IN_WRITER) if writer_output.is_file() else None
    return found


def per_trial_ms(b: dict[str, Any], a: dict[str, Any], trials: int) -> float:
    """Milliseconds per trial that B's search step takes more than A's optimize()."""
    return 1000 * (b["search_s"]["median"] - a["search_s"]["median"]) / trials


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with DATA.open() as source:
        data_lines = [line for _, line in zip(range(ROWS + 1), source, strict=False)]
    env = environment(args.threads)
    for stale in CACHE.glob(TEMPLATES):  # built again by the warm-up, from the code under test
        stale.unlink()
    n_trials = [f"job.searcher.n_trials={args.trials}"]
    load_at_start = os.getloadavg()
    print(
        "warm-up: one untimed 5-trial run of each side (fills the .pyc, file and font caches, builds the "
        "MLflow store template)",
        flush=True,
    )
    run_plain(data_lines, 5, env)
    run_trainyard(data_lines, env, BIKES, ["job.searcher.n_trials=5"])
    template = templates(CACHE)
    if not template:
        print(f"  (no MLflow store template in {CACHE}: every B run migrates its new store)", flush=True)
    bikes = partial(run_trainyard, data_lines, env, BIKES)
    overhead: dict[str, Callable[[], dict[str, Any]]] = {
        A: partial(run_plain, data_lines, args.trials, env),
        B: partial(bikes, n_trials),
        B_EXISTING: partial(bikes, n_trials, prepare=store_and_experiment(BIKES_EXPERIMENT)),
        B_FIRST: partial(first_store_run, data_lines, env, n_trials),
    }
    if args.what_if:
        overhead["B, plots off"] = partial(bikes, [*n_trials, "job.plots=false"])
        for label, patch in PATCHES.items():
            overhead[f"B, {label}"] = partial(bikes, n_trials, patch=patch)
        overhead[f"B, all at once: {ALL_AT_ONCE}"] = partial(
            bikes, [*n_trials, "job.plots=false"], patch=ALL_PATCHES
        )
    overhead_runs = interleave(overhead, args.repeats, "overhead", seeded=True)
    long_runs: dict[str, list[dict[str, Any]]] = {}
    if args.trials_long:
        long_trials = [f"job.searcher.n_trials={args.trials_long}"]
        long: dict[str, Callable[[], dict[str, Any]]] = {
            f"{A}, {args.trials_long} trials": partial(run_plain, data_lines, args.trials_long, env),
            f"{B}, {args.trials_long} trials": partial(bikes, long_trials),
        }
        long_runs = interleave(long, args.repeats, "long study", seeded=True)
    experiment = store_and_experiment(FOREST_EXPERIMENT)
    forest = partial(run_trainyard, data_lines, env, FOREST, prepare=experiment)
    trials = f"job.searcher.n_trials={args.scale_trials}"
    scale: dict[str, Callable[[], dict[str, Any]]] = {
        "1 process": partial(forest, [trials]),
        "2 processes, one study": partial(forest, [trials], workers=2),
        "1 process, n_jobs=2 threads": partial(forest, [trials, "job.searcher.n_jobs=2"]),
    }
    scale_repeats = args.repeats if args.scale_repeats is None else args.scale_repeats
    scale_runs = interleave(scale, scale_repeats, "scale-out")
    results: dict[str, Any] = {
        **describe(load_at_start, ("trainyard", "optuna", "mlflow", "scikit-learn", "pandas")),
        "trainyard_commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "uncommitted_changes_in_src": bool(
            subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True).stdout
        ),
        "settings": {
            "trials": args.trials,
            "repeats": args.repeats,
            "trials_long": args.trials_long,
            "scale_trials": args.scale_trials,
            "omp_num_threads": args.threads,
            "xdg_cache_home": str(CACHE),
        },
        "store_template": template,
        "overhead": {name: medians(runs) for name, runs in overhead_runs.items()},
        "long": {name: medians(runs) for name, runs in long_runs.items()},
        "scale_out": {name: medians(runs) for name, runs in scale_runs.items() if runs},
    }
    a, b, existing = (results["overhead"][name] for name in (A, B, B_EXISTING))
    results["ratios"] = {
        "B / A, whole process": b["wall_s"]["median"] / a["wall_s"]["median"],
        "B on an existing store / A, whole process": existing["wall_s"]["median"] / a["wall_s"]["median"],
        "B search step / A optimize()": b["search_s"]["median"] / a["search_s"]["median"],
        "B - A per trial, search (ms)": per_trial_ms(b, a, args.trials),
    }
    if long_runs:
        n = args.trials_long
        long_a, long_b = (results["long"][name] for name in long_runs)
        results["ratios"] |= {
            f"B / A, whole process, {n} trials": long_b["wall_s"]["median"] / long_a["wall_s"]["median"],
            f"B search step / A optimize(), {n} trials": long_b["search_s"]["median"]
            / long_a["search_s"]["median"],
            f"B - A per trial, search (ms), {n} trials": per_trial_ms(long_b, long_a, n),
        }
    results["by_round"] = {
        "B / A, whole process": [
            b_run["wall_s"] / a_run["wall_s"] for a_run, b_run in zip(a["runs"], b["runs"], strict=True)
        ],
        "seeds": [SEED + r for r in range(args.repeats)],
    }
    results["goals"] = {"B / A, whole process": {"goal": f"<= {GOALS['overhead']}"}}
    if scale_repeats:
        one, two, threads = (results["scale_out"][name] for name in scale)
        results["ratios"] |= {
            "1 process / 2 processes, whole process": one["wall_s"]["median"] / two["wall_s"]["median"],
            "1 process / 2 processes, search step": one["search_s"]["median"] / two["search_s"]["median"],
            "1 process / n_jobs=2, whole process": one["wall_s"]["median"] / threads["wall_s"]["median"],
            "1 process / n_jobs=2, search step": one["search_s"]["median"] / threads["search_s"]["median"],
        }
        results["goals"]["1 process / 2 processes, whole process"] = {"goal": f">= {GOALS['scale-out']}"}
        results["by_round"]["1 process / 2 processes, whole process"] = [
            one_run["wall_s"] / two_run["wall_s"]
            for one_run, two_run in zip(one["runs"], two["runs"], strict=True)
        ]
    for name, goal in results["goals"].items():
        limit = float(goal["goal"].split()[-1])
        measured = results["ratios"][name]
        goal.update(measured=measured, met=measured <= limit if goal["goal"][0] == "<" else measured >= limit)
    results["two_workers_start_a_study"] = {
        situation: [race(data_lines, env, prepare) for _ in range(args.race_checks)]
        for situation, prepare in RACES.items()
    }
    results["machine"]["load_average_at_end"] = os.getloadavg()
    if args.profile:
        print("profile: one `trainyard run` of the bikes study under cProfile", flush=True)
        results["profile"] = profile(data_lines, env)
    return results


def report(results: dict[str, Any]) -> str:
    """The results as markdown tables."""
    settings = results["settings"]
    header = [
        "| contender | wall (s) | min, max (s) | start-up / imports (s) | search / optimize() (s) "
        "| in trials (s) | finished | dup. params | best rmse | MLflow child runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines = [
        f"{results['date']}, {results['machine']['cores']} cores, {settings['trials']} trials, "
        f"median of {settings['repeats']}, trainyard {results['trainyard_commit'][:7]}"
        + (" + uncommitted src changes" if results["uncommitted_changes_in_src"] else ""),
        "",
        *header,
    ]
    titles = {
        "long": f"Longer study: {settings.get('trials_long')} trials, median of {settings['repeats']}",
        "scale_out": f"Scale-out: {settings['scale_trials']} random-search trials of a 50-tree random forest",
    }
    for table in ("overhead", "long", "scale_out"):
        if not results.get(table):
            continue
        if table in titles:
            lines += ["", titles[table], "", *header]
        for name, row in results[table].items():
            last = row["runs"][-1]
            trials, runs = last.get("trials"), last.get("mlflow")
            cells = [
                f"{row['wall_s']['median']:.2f}",
                f"{row['wall_s']['min']:.2f}, {row['wall_s']['max']:.2f}",
                f"{row['import_s']['median']:.2f}",
                f"{row['search_s']['median']:.2f}",
                f"{row['in_trials_s']['median']:.2f}" if trials else "—",
                str(trials["finished"]) if trials else "—",
                str(trials["duplicate_params"]) if trials else "—",
                f"{trials['best']:.2f}" if trials and trials["best"] is not None else "—",
                f"{runs['child_runs']} ({runs['parent_runs']} parent)" if runs else "—",
            ]
            lines.append(f"| {name} | {' | '.join(cells)} |")
    first = results["overhead"].get(B_FIRST)
    lines += [
        "",
        f"Store template (XDG_CACHE_HOME {settings.get('xdg_cache_home')}): "
        + (", ".join(results.get("store_template") or []) or "**none was built**"),
    ]
    if first:
        built = sum(bool(run.get("template_built")) for run in first["runs"])
        entries = sorted({entry for run in first["runs"] for entry in run.get("cache_entries", [])})
        lines[-1] += (
            f"; the first-store runs built one in their own empty cache {built} of {len(first['runs'])} "
            f"times (it then held: {', '.join(entries) or 'nothing'})"
        )
    columns = {"B": B, "existing store": B_EXISTING, "first store": B_FIRST}
    stepped = {
        label: results["overhead"][name]["runs"]
        for label, name in columns.items()
        if name in results["overhead"]
    }
    titles_of_steps = list(dict.fromkeys(title for runs in stepped.values() for title in runs[0]["steps"]))
    lines += [
        "",
        f"| Trainyard step (bikes, median s) | {' | '.join(stepped)} |",
        f"|---|{'---:|' * len(stepped)}",
    ]
    for title in titles_of_steps:
        cells = [
            f"{statistics.median(r['steps'][title] for r in runs):.2f}" if title in runs[0]["steps"] else "—"
            for runs in stepped.values()
        ]
        lines.append(f"| {title} | {' | '.join(cells)} |")
    lines += ["", "| ratio of medians | measured | goal | met |", "|---|---:|---:|---|"]
    for name, value in results["ratios"].items():
        goal = results["goals"].get(name)
        met = "—" if goal is None else ("yes" if goal["met"] else "**no**")
        shown = f"{value:.3f}" if goal else f"{value:.2f}"  # a goal may be missed by less than 0.005
        lines.append(f"| {name} | {shown} | {goal['goal'] if goal else '—'} | {met} |")
    by_round = results.get("by_round")
    if by_round:
        # Each round runs its contenders back to back: a round's own ratio is free of the host's drift
        # between rounds, which the ratio of medians (taken from different rounds) is not.
        ratios = ", ".join(
            f"{ratio:.2f} (seed {seed})"
            for ratio, seed in zip(by_round["B / A, whole process"], by_round["seeds"], strict=True)
        )
        median = statistics.median(by_round["B / A, whole process"])
        lines += ["", f"B / A, whole process, by round: {ratios}; median of the rounds {median:.3f}"]
        scale_rounds = by_round.get("1 process / 2 processes, whole process")
        if scale_rounds:
            listed = ", ".join(f"{ratio:.2f}" for ratio in scale_rounds)
            median = statistics.median(scale_rounds)
            lines += ["", f"1 process / 2 processes, by round: {listed}; median of the rounds {median:.3f}"]
    lines += ["", "Two workers started together on a new study (4 trials), in a fresh folder with:"]
    for situation, outcomes in results["two_workers_start_a_study"].items():
        lines += [f"- {situation}: {'; '.join(outcomes)}"]
    if "profile" in results:
        found = results["profile"]
        runs = found.get("mlflow")
        lines += [
            "",
            f"| cProfile, one run (wall {found['wall_s']:.1f} s under the profiler), job process "
            f"(profiled {found['profiled_total_s']:.1f} s) | cumulative s | calls |",
            "|---|---:|---:|",
        ]
        for label, entry in found["functions"].items():
            lines.append(f"| {label} | {entry['seconds']:.2f} | {entry['calls']} |")
        writer = found.get("writer")
        if writer is None:
            lines.append("| **writer process: no profile written** (it did not finish normally) | — | — |")
        else:
            lines.append(f"| **writer process** (its own profile, {writer['profiled_total_s']:.1f} s) | | |")
            for label, entry in writer["functions"].items():
                lines.append(f"| {label} | {entry['seconds']:.2f} | {entry['calls']} |")
        if runs:
            lines += [
                "",
                f"The profiled run wrote {runs['child_runs']} child runs ({runs['parent_runs']} parent).",
            ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="trials of the overhead study (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each contender (default 3)")
    parser.add_argument(
        "--trials-long",
        type=int,
        default=0,
        help="also run A and B with this many trials (interleaved, --repeats rounds; default 0: off)",
    )
    parser.add_argument("--scale-trials", type=int, default=100, help="trials of the scale-out study")
    parser.add_argument(
        "--scale-repeats", type=int, default=None, help="scale-out rounds (default: --repeats; 0: none)"
    )
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every process (default 1)")
    parser.add_argument(
        "--race-checks",
        type=int,
        default=2,
        help="tries of two workers starting a new study, per situation (default 2)",
    )
    parser.add_argument("--no-what-if", dest="what_if", action="store_false", help="skip the B variants")
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="skip the cProfile run")
    parser.add_argument("--out", type=Path, default=RESULTS / "tuning.json", help="JSON results")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = measure(args)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
