"""Benchmark: the job service's submit latency, status requests per second, and a job submitted to the
warm service against the same job by `trainyard run`.

    .venv/bin/python benchmarks/service.py [--submits 200] [--seconds 5] [--jobs 3]

In a fresh temporary folder with the example data and a new MLflow store, it starts
`trainyard serve --workers 1` and measures, each from a load client in a second process:
  submit      POST /jobs of the quickstart config, one after another (validation, commit, 202);
              those jobs are cancelled at once (queued: they never run)
  status      GET /jobs/{id} from 4 threads for --seconds, requests per second
  warm job    the quickstart job (unregistered), submit to completed, --jobs times
  cold run    `trainyard run confs/quickstart.yaml job.register=null`, a fresh process, --jobs times
interleaved (warm, cold, warm, cold, ...). Prints a markdown table and writes
benchmarks/results/service.json. See docs/service.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
            http.post(f"/jobs/{answer.json()['id']}/cancel")
    print(json.dumps({"latencies": latencies}))
elif mode == "status":
    with httpx.Client(base_url=url, headers=headers) as http:
        job_id = http.get("/jobs", params={"limit": 1}).json()["jobs"][0]["id"]
    counts = []
    deadline = time.perf_counter() + amount
    def hammer():
        done = 0
        with httpx.Client(base_url=url, headers=headers) as http:
            while time.perf_counter() < deadline:
                assert http.get(f"/jobs/{job_id}").status_code == 200
                done += 1
        counts.append(done)
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(json.dumps({"requests": sum(counts), "seconds": amount}))
elif mode == "job":
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        start = time.perf_counter()
        job_id = http.post("/jobs", json=document).json()["id"]
        while (job := http.get(f"/jobs/{job_id}").json())["status"] not in ("completed", "failed", "cancelled"):
            time.sleep(0.02)
        assert job["status"] == "completed", job
    print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--submits", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--jobs", type=int, default=3)
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="trainyard-service-bench-"))
    try:
        results = _measure(folder, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results["machine"] = describe(load_at_start, ("mlflow", "fastapi", "uvicorn", "sqlalchemy", "httpx"))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(_table(results))
    return 0


def _measure(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    import socket

    subprocess.run(
        [BIN / "trainyard", "example-data", "--out", "data"], cwd=folder, check=True, capture_output=True
    )
    shutil.copy(ROOT / "confs" / "quickstart.yaml", folder / "quickstart.yaml")
    (folder / "client.py").write_text(LOAD_CLIENT)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TRAINYARD_TOKEN": TOKEN}
    server = subprocess.Popen(
        [BIN / "trainyard", "serve", "--port", str(port), "--workers", "1"],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_healthy(url)

        def load(mode: str, amount: float) -> dict[str, Any]:
            done = subprocess.run(
                [sys.executable, "client.py", url, TOKEN, mode, str(amount)],
                cwd=folder, check=True, capture_output=True, text=True,
            )  # fmt: skip
            return dict(json.loads(done.stdout))

        warm_up = load("job", 1)["seconds"]  # the first job opens the MLflow store: not counted
        submits = sorted(load("submit", args.submits)["latencies"])
        status = load("status", args.seconds)
        warm, cold = [], []
        for _ in range(args.jobs):
            warm.append(load("job", 1)["seconds"])
            start = time.perf_counter()
            subprocess.run(
                [BIN / "trainyard", "run", "quickstart.yaml", "job.register=null"],
                cwd=folder, check=True, capture_output=True,
            )  # fmt: skip
            cold.append(time.perf_counter() - start)
    finally:
        server.terminate()
        server.wait(30)
    return {
        "submit_ms": {"p50": _pct(submits, 50) * 1000, "p99": _pct(submits, 99) * 1000, "n": len(submits)},
        "status_per_s": status["requests"] / status["seconds"],
        "first_job_s": warm_up,
        "warm_job_s": warm,
        "trainyard_run_s": cold,
    }


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
    warm, cold = results["warm_job_s"], results["trainyard_run_s"]
    rows = [
        (
            "submit latency p50 / p99",
            f"{submit['p50']:.1f} ms / {submit['p99']:.1f} ms ({submit['n']} submits)",
        ),
        ("status requests per second (4 threads)", f"{results['status_per_s']:.0f}"),
        (
            "quickstart, submit to completed (warm service)",
            f"{statistics.median(warm):.2f} s median of {len(warm)}",
        ),
        (
            "quickstart, `trainyard run` (fresh process)",
            f"{statistics.median(cold):.2f} s median of {len(cold)}",
        ),
        ("the service's first job (opens the MLflow store)", f"{results['first_job_s']:.2f} s"),
    ]
    lines = ["| measure | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    machine = results["machine"]
    return "\n".join(lines) + f"\n\n{json.dumps({k: v for k, v in machine.items() if k != 'packages'})}"


if __name__ == "__main__":
    sys.exit(main())
