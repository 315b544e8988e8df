"""Benchmark: the job service's submit latency, status requests per second, and the quickstart job
submitted to the warm service against the same job by `trainyard run` and by a hand-written MLflow
script.

    .venv/bin/python benchmarks/service.py [--submits 200] [--seconds 5] [--jobs 3]

In a fresh temporary folder with the example data and a new MLflow store, it starts
`trainyard serve --workers 1` and measures, each from a load client in a second process:
  submit      POST /jobs of the quickstart config, one after another (validation, commit, 202); a
              blocker job (its input is a named pipe nobody writes) holds the only worker, so they
              stay queued and run nothing; all are cancelled afterwards
  status      GET /jobs/{id} for --seconds from 4 threads, twice: with httpx (as the project's client)
              and with the standard library's http.client (a lighter client: more of the 2 cores for
              the service), requests per second
  warm job    the quickstart job (unregistered), submit to completed, --jobs times, with its phases
              (queued, started, each step, ended) from the job's own transitions
  cold run    `trainyard run quickstart.yaml job.register=null`, a fresh process, --jobs times
  script      the same job written by hand with MLflow (requirements inferred, MLflow's default)
interleaved (warm, cold, script, warm, ...). For submit and status, the service process's CPU time per
request (Linux /proc) is printed too: it is steadier than the rates on a shared machine, and 1000 /
(ms per request) is what one core could serve. Prints a markdown table and writes
benchmarks/results/service.json. See docs/service.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _machine import (  # benchmarks/ is on sys.path when a script here runs
    SERVICE_PACKAGES,
    measure_in_scratch,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
RESULTS = HERE / "results" / "service.json"
TOKEN = "benchmark"

LOAD_CLIENT = r"""
import json, statistics, sys, threading, time
import httpx, yaml
url, token, mode, amount = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
headers = {"Authorization": f"Bearer {token}"}
document = yaml.safe_load(open("quickstart.yaml"))
document["job"]["register"] = None
if mode == "submit":
    latencies = []
    with httpx.Client(base_url=url, headers=headers) as http:
        for _ in range(int(amount)):
            start = time.perf_counter()
            answer = http.post("/jobs", json=document)
            latencies.append(time.perf_counter() - start)
            assert answer.status_code == 202, answer.text
    print(json.dumps({"latencies": latencies}))
elif mode in ("status", "status-stdlib"):
    import http.client as stdlib_http, urllib.parse
    with httpx.Client(base_url=url, headers=headers) as http:
        job_id = http.get("/jobs", params={"limit": 1}).json()["jobs"][0]["id"]
    counts = []
    deadline = time.perf_counter() + amount
    def hammer():
        done = 0
        if mode == "status":
            with httpx.Client(base_url=url, headers=headers) as http:
                while time.perf_counter() < deadline:
                    assert http.get(f"/jobs/{job_id}").status_code == 200
                    done += 1
        else:
            where = urllib.parse.urlsplit(url)
            connection = stdlib_http.HTTPConnection(where.hostname, where.port)
            while time.perf_counter() < deadline:
                connection.request("GET", f"/jobs/{job_id}", headers=headers)
                answer = connection.getresponse()
                answer.read()
                assert answer.status == 200
                done += 1
        counts.append(done)
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(json.dumps({"requests": sum(counts), "seconds": amount}))
elif mode == "block":  # the blocker: reads a named pipe nobody writes, so it holds its worker
    blocker = json.loads(json.dumps(document))
    blocker["job"]["inputs"]["path"] = blocker["job"]["targets"]["path"] = "data/blocker.csv"
    with httpx.Client(base_url=url, headers=headers) as http:
        job_id = http.post("/jobs", json=blocker).json()["id"]
        while http.get(f"/jobs/{job_id}").json()["status"] == "queued":
            time.sleep(0.05)
    print(json.dumps({"id": job_id}))
elif mode == "cancel":  # every queued job, then the blocker (its worker would start the next one)
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        while jobs := http.get("/jobs", params={"status": "queued", "limit": 1000}).json()["jobs"]:
            for job in jobs:
                http.post(f"/jobs/{job['id']}/cancel")
        http.post(f"/jobs/{sys.argv[5]}/cancel")
        while http.get(f"/jobs/{sys.argv[5]}").json()["status"] == "running":
            time.sleep(0.05)
    print(json.dumps({}))
elif mode == "job":
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        start = time.perf_counter()
        job_id = http.post("/jobs", json=document).json()["id"]
        while (job := http.get(f"/jobs/{job_id}").json())["status"] not in ("completed", "failed", "cancelled"):
            time.sleep(0.02)
        assert job["status"] == "completed", job
    print(json.dumps({"seconds": time.perf_counter() - start, "job": job}))
"""

# The quickstart job written by hand, the plain MLflow way: no schema checks, no lineage; the model
# logged with MLflow's defaults but the serialization (its default, skops, refuses this pipeline).
MLFLOW_SCRIPT = r"""
import os
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
import mlflow, pandas as pd
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
data = pd.read_csv("data/diabetes.csv")
inputs = data[["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]]
targets = data["target"]
train_x, test_x, train_y, test_y = train_test_split(inputs, targets, test_size=0.25, random_state=7)
params = {"max_iter": 200, "learning_rate": 0.05, "max_depth": 3}
mlflow.set_tracking_uri("sqlite:///mlflow.db")
mlflow.set_experiment("quickstart-script")
with mlflow.start_run():
    mlflow.log_params(params)
    model = make_pipeline(
        ColumnTransformer([("sex", OneHotEncoder(handle_unknown="ignore"), ["sex"])], remainder="passthrough"),
        HistGradientBoostingRegressor(**params),
    ).fit(train_x, train_y)
    predicted = model.predict(test_x)
    mlflow.log_metrics({
        "r2": r2_score(test_y, predicted), "rmse": root_mean_squared_error(test_y, predicted),
        "mae": mean_absolute_error(test_y, predicted),
    })
    mlflow.sklearn.log_model(
        model, name="model", signature=infer_signature(train_x, model.predict(train_x)),
        input_example=train_x.head(5), serialization_format="cloudpickle",
    )
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--submits", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--jobs", type=int, default=3)
    args = parser.parse_args()
    results = measure_in_scratch(
        lambda folder: _measure(folder, args), "trainyard-service-bench-", RESULTS, SERVICE_PACKAGES
    )
    print(_table(results))
    return 0


def _measure(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    import socket

    subprocess.run(
        [BIN / "trainyard", "example-data", "--out", "data"], cwd=folder, check=True, capture_output=True
    )
    os.mkfifo(folder / "data" / "blocker.csv")
    shutil.copy(ROOT / "confs" / "quickstart.yaml", folder / "quickstart.yaml")
    (folder / "client.py").write_text(LOAD_CLIENT)
    (folder / "script.py").write_text(MLFLOW_SCRIPT)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TRAINYARD_TOKEN": TOKEN}
    server = subprocess.Popen(
        [BIN / "trainyard", "serve", "--port", str(port), "--workers", "1", "--grace", "1"],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_healthy(url)

        def load(mode: str, amount: float, *more: str) -> dict[str, Any]:
            done = subprocess.run(
                [sys.executable, "client.py", url, TOKEN, mode, str(amount), *more],
                cwd=folder, check=True, capture_output=True, text=True,
            )  # fmt: skip
            return dict(json.loads(done.stdout))

        def timed(command: list[Any]) -> float:
            start = time.perf_counter()
            subprocess.run(command, cwd=folder, check=True, capture_output=True)
            return time.perf_counter() - start

        first = load("job", 1)  # the first job opens the MLflow store: not counted
        blocker = load("block", 0)["id"]
        before = _cpu_s(server.pid)
        submits = sorted(load("submit", args.submits)["latencies"])
        submit_cpu = _cpu_s(server.pid) - before
        status = {}
        for mode in ("status", "status-stdlib"):
            before = _cpu_s(server.pid)
            status[mode] = load(mode, args.seconds)
            status[mode]["server_cpu_s"] = _cpu_s(server.pid) - before
        load("cancel", 0, blocker)
        with contextlib.suppress(OSError):  # the blocked read ends (the job is already cancelled)
            os.close(os.open(folder / "data" / "blocker.csv", os.O_WRONLY | os.O_NONBLOCK))
        warm: list[float] = []
        cold: list[float] = []
        script: list[float] = []
        last_job: dict[str, Any] = {}
        for _ in range(args.jobs):
            answer = load("job", 1)
            warm.append(answer["seconds"])
            last_job = answer["job"]
            cold.append(timed([BIN / "trainyard", "run", "quickstart.yaml", "job.register=null"]))
            script.append(timed([sys.executable, "script.py"]))
    finally:
        server.terminate()
        server.wait(30)
    rates = {mode: found["requests"] / found["seconds"] for mode, found in status.items()}
    return {
        "submit_ms": {
            "p50": _pct(submits, 50) * 1000, "p99": _pct(submits, 99) * 1000, "n": len(submits),
            "server_cpu_ms": submit_cpu / len(submits) * 1000,
        },
        "status_per_s": rates["status"],
        "status_stdlib_per_s": rates["status-stdlib"],
        "status_server_cpu_ms": {
            mode: found["server_cpu_s"] / found["requests"] * 1000 for mode, found in status.items()
        },
        "first_job_s": first["seconds"],
        "warm_job_s": warm,
        "warm_job_phases_s": _phases(last_job),
        "trainyard_run_s": cold,
        "mlflow_script_s": script,
    }  # fmt: skip


def _cpu_s(pid: int) -> float:
    """The CPU time (user and system) process ``pid`` has used, in seconds (0 where /proc is not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _phases(job: dict[str, Any]) -> dict[str, float]:
    """Seconds between a job's transitions: queued -> started, each step, the last step -> ended."""
    from datetime import datetime

    phases: dict[str, float] = {}
    previous, name = datetime.fromisoformat(job["created_at"]), "queued (until claimed)"
    for transition in job["transitions"][1:]:
        at = datetime.fromisoformat(transition["at"])
        phases[name] = round((at - previous).total_seconds(), 3)
        previous = at
        step = transition["step"]
        name = f"step {step}" if step else "started (child, MLflow run) until the first step"
        if transition["status"] != "running":
            break
    if job.get("ended_at"):
        phases["after the last step (save done, child exits)"] = round(
            (datetime.fromisoformat(job["ended_at"]) - previous).total_seconds(), 3
        )
    return phases


def _pct(values: list[float], percent: float) -> float:
    return values[min(len(values) - 1, round(percent / 100 * (len(values) - 1)))]


def _wait_healthy(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("the service did not start in 120 s")


def _table(results: dict[str, Any]) -> str:
    submit = results["submit_ms"]
    cpu = results["status_server_cpu_ms"]
    warm, cold, script = results["warm_job_s"], results["trainyard_run_s"], results["mlflow_script_s"]
    median_warm = statistics.median(warm)
    rows = [
        (
            "submit latency p50 / p99",
            f"{submit['p50']:.1f} ms / {submit['p99']:.1f} ms ({submit['n']} submits; service CPU "
            f"{submit['server_cpu_ms']:.2f} ms each)",
        ),
        (
            "status requests per second, httpx client (4 threads)",
            f"{results['status_per_s']:.0f} (service CPU {cpu['status']:.2f} ms each)",
        ),
        (
            "status requests per second, http.client (4 threads)",
            f"{results['status_stdlib_per_s']:.0f} (service CPU {cpu['status-stdlib']:.2f} ms each: "
            f"{1000 / cpu['status-stdlib']:.0f}/s on one core)"
            if cpu["status-stdlib"]
            else f"{results['status_stdlib_per_s']:.0f}",
        ),
        (
            "quickstart, submit to completed (warm service)",
            f"{median_warm:.2f} s median of {len(warm)} ({', '.join(f'{s:.2f}' for s in warm)})",
        ),
        (
            "quickstart, `trainyard run` (fresh process)",
            f"{statistics.median(cold):.2f} s median ({statistics.median(cold) / median_warm:.1f}x the warm job)",
        ),
        (
            "quickstart, hand-written MLflow script",
            f"{statistics.median(script):.2f} s median ({statistics.median(script) / median_warm:.1f}x)",
        ),
        ("the service's first job (opens the MLflow store)", f"{results['first_job_s']:.2f} s"),
    ]
    lines = ["| measure | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    phases = "\n".join(f"  {name}: {seconds:.3f} s" for name, seconds in results["warm_job_phases_s"].items())
    machine = results["machine"]
    return (
        "\n".join(lines)
        + f"\n\nthe last warm job's phases:\n{phases}\n\n"
        + json.dumps({k: v for k, v in machine.items() if k != "packages"})
    )


if __name__ == "__main__":
    sys.exit(main())
