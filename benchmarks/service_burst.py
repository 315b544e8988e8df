"""Benchmark: a burst of short jobs from 8 clients while the service is SIGKILLed and restarted.

    .venv/bin/python benchmarks/service_burst.py [--jobs 1000] [--clients 8] [--kills 10] [--workers 2]

In a fresh temporary folder with the example data, it starts `trainyard serve --workers W`, runs one
warm-up job (it makes the MLflow store's tables; not counted), then has --clients client processes
submit --jobs short training jobs between them (a ridge regression, logged to MLflow; each with its
own Idempotency-Key, sent again while the service is away, and `max_retries` above --kills). The
service is SIGKILLed --kills times, each time once another share of the jobs has completed and while
jobs run, and started again on the same port. Then it audits the store and MLflow:

  every accepted job       is in the store once, in exactly one final state (one final transition, last)
  none lost                as many jobs in the store as keys accepted, none queued or running
  none run twice           each attempt is one claim; at most one FINISHED MLflow run per job, the
                           job's own; no MLflow run left RUNNING
  wall time                first submit to the last job's end
  least it could take      the completed attempts' own time (claim to end) summed, over the workers

and prints a markdown table; benchmarks/results/service_burst.json has the figures. See docs/service.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
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
BIN = Path(sys.executable).parent
RESULTS = HERE / "results" / "service_burst.json"
TOKEN = "benchmark"

CLIENT = r"""
import json, sys, time
import httpx
url, token, first, count, retries = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
job = {"job": {
    "KIND": "training", "mlflow": {"experiment": "burst"},
    "inputs": {"KIND": "csv", "path": "data/diabetes.csv", "drop": ["target"]},
    "targets": {"KIND": "csv", "path": "data/diabetes.csv", "columns": ["target"]},
    "model": {"KIND": "sklearn", "estimator": "Ridge", "params": {"alpha": 1.0}},
    "metrics": ["r2"]}, "max_retries": retries}
accepted, refused, resent = {}, [], 0
with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
    for number in range(first, first + count):
        key = f"burst-{number}"
        while True:
            try:
                answer = http.post("/jobs", json=job, headers={"Idempotency-Key": key})
            except httpx.TransportError:
                resent += 1
                time.sleep(0.2)
                continue
            if answer.status_code in (200, 202):
                accepted[key] = answer.json()["id"]
            else:
                refused.append([key, answer.status_code, answer.text[:200]])
            break
print(json.dumps({"accepted": accepted, "refused": refused, "resent": resent}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    results = measure_in_scratch(
        lambda folder: _measure(folder, args), "trainyard-burst-bench-", RESULTS, SERVICE_PACKAGES
    )
    print(_table(results))
    return 0 if results["audit"]["ok"] else 1


class _Service:
    def __init__(self, folder: Path, port: int, workers: int) -> None:
        self.folder, self.port, self.workers = folder, port, workers
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.downtime: list[float] = []  # kill to healthy again, each time

    def start(self) -> None:
        env = {**os.environ, "TRAINYARD_TOKEN": TOKEN}
        env.pop("MLFLOW_TRACKING_URI", None)
        with (self.folder / "serve.out").open("ab") as out:
            self.process = subprocess.Popen(
                [BIN / "trainyard", "serve", "--port", str(self.port), "--workers", str(self.workers)],
                cwd=self.folder, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.wait_healthy()

    def wait_healthy(self) -> None:
        import httpx

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise SystemExit(f"the service did not start in 180 s:\n{(self.folder / 'serve.out').read_text()}")

    def kill_and_restart(self) -> None:
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.start()
        self.downtime.append(time.monotonic() - started)

    def metrics(self) -> dict[str, int] | None:
        import httpx

        try:
            answer = httpx.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
            return dict(answer.json())
        except httpx.HTTPError:
            return None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)


def _measure(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    subprocess.run(
        [BIN / "trainyard", "example-data", "--out", "data"], cwd=folder, check=True, capture_output=True
    )
    (folder / "client.py").write_text(CLIENT)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    service = _Service(folder, port, args.workers)
    service.start()
    try:
        _client(folder, service.url, 10**9, 1, 0)  # the warm-up job: makes MLflow's tables
        _wait_idle(service)
        warm_up = set(_client_output(folder, "warm-up"))
        share = -(-args.jobs // args.clients)
        start = time.time()
        clients = []
        for number in range(args.clients):
            first, count = number * share, max(0, min(share, args.jobs - number * share))
            out = (folder / f"client-{number}.json").open("w")
            clients.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "client.py",
                        service.url,
                        TOKEN,
                        str(first),
                        str(count),
                        str(args.kills + 1),
                    ],
                    cwd=folder,
                    stdout=out,
                )
            )
        for kill in range(args.kills):  # each once another share has completed, while jobs run
            threshold = (kill + 1) * args.jobs // (args.kills + 1)
            while True:
                counts = service.metrics()
                if counts and counts["completed"] - 1 >= threshold and counts["running"]:
                    break
                if counts and _ended(counts) >= args.jobs:
                    break  # all done already: no job left to kill the service under
                time.sleep(0.02)
            if counts and _ended(counts) >= args.jobs:
                print(f"kill {kill + 1}: not done, every job had ended", flush=True)
                break
            service.kill_and_restart()
            print(
                f"kill {kill + 1}: after {threshold} jobs, back in {service.downtime[-1]:.1f} s", flush=True
            )
        for client in clients:
            client.wait()
        _wait_idle(service)
    finally:
        service.stop()
    accepted: dict[str, str] = {}
    refused: list[Any] = []
    resent = 0
    for number in range(args.clients):
        output = json.loads((folder / f"client-{number}.json").read_text())
        accepted.update(output["accepted"])
        refused += output["refused"]
        resent += output["resent"]
    audit, timing = _audit(folder, accepted, warm_up, start, args.workers)
    return {
        "jobs": args.jobs, "clients": args.clients, "kills": args.kills, "workers": args.workers,
        "accepted": len(accepted), "refused": refused, "submits_sent_again": resent,
        "downtime_s": service.downtime, "audit": audit, **timing,
    }  # fmt: skip


def _ended(counts: dict[str, int]) -> int:
    """The burst's jobs in a final state (the warm-up job is one of the completed)."""
    return counts["completed"] + counts["failed"] + counts["cancelled"] - 1


def _client(folder: Path, url: str, first: int, count: int, retries: int) -> None:
    with (folder / "client-warm-up.json").open("w") as out:
        subprocess.run(
            [sys.executable, "client.py", url, TOKEN, str(first), str(count), str(retries)],
            cwd=folder,
            stdout=out,
            check=True,
        )


def _client_output(folder: Path, name: str) -> dict[str, str]:
    """The jobs a client had accepted: id -> key."""
    accepted = json.loads((folder / f"client-{name}.json").read_text())["accepted"]
    return {job_id: key for key, job_id in accepted.items()}


def _wait_idle(service: _Service) -> None:
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        counts = service.metrics()
        if counts and counts["queued"] == 0 and counts["running"] == 0:
            return
        time.sleep(0.2)
    raise SystemExit("the jobs did not end in an hour")


def _audit(
    folder: Path, accepted: dict[str, str], warm_up: set[str], start: float, workers: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check every accepted job against the store and MLflow; the burst's timing."""
    from mlflow import MlflowClient

    from trainyard.records import SERVICE_JOB_TAG
    from trainyard.service.store import FINAL, Store

    store = Store(f"sqlite:///{folder / 'trainyard-jobs.db'}")
    jobs = {job_id: store.get(job_id) for job_id in accepted.values()}
    in_store = sum(store.counts().values()) - len(warm_up)
    store.close()
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("burst")
    runs: dict[str, list[Any]] = {}
    page_token = None
    while experiment is not None:
        page = client.search_runs([experiment.experiment_id], max_results=1000, page_token=page_token)
        for run in page:
            runs.setdefault(run.data.tags.get(SERVICE_JOB_TAG, ""), []).append(run)
        page_token = page.token
        if not page_token:
            break
    problems: list[str] = []
    statuses: dict[str, int] = {}
    retried = work = lost_work = 0.0
    ends = []
    for job_id, job in jobs.items():
        if job is None:
            problems.append(f"{job_id}: accepted, not in the store")
            continue
        statuses[job.status] = statuses.get(job.status, 0) + 1
        finals = [t for t in job.transitions if t.status in FINAL]
        claims = [t for t in job.transitions if t.status == "running" and t.step is None]
        if len(finals) != 1 or job.transitions[-1] is not finals[0]:
            problems.append(f"{job_id}: {len(finals)} final transitions")
        if len(claims) != job.attempts:
            problems.append(f"{job_id}: {job.attempts} attempts, {len(claims)} claims")
        mine = runs.get(job_id, [])
        if any(run.info.status == "RUNNING" for run in mine):
            problems.append(f"{job_id}: an MLflow run left RUNNING")
        finished = [run.info.run_id for run in mine if run.info.status == "FINISHED"]
        if len(finished) > 1 or (job.status == "completed" and finished != [job.run_id]):
            problems.append(f"{job_id}: finished MLflow runs {finished}, the job's {job.run_id}")
        retried += job.attempts > 1
        if job.started_at is not None and job.ended_at is not None:
            work += job.ended_at - job.started_at  # the attempt that ended it
            ends.append(job.ended_at)
        for before, after in itertools.pairwise(claims):  # attempts that a kill cut short
            queued_again = next(
                (t.at for t in job.transitions if t.status == "queued" and t.at > before.at), after.at
            )
            lost_work += queued_again - before.at
    if in_store != len(accepted):
        problems.append(f"{in_store} jobs in the store for {len(accepted)} accepted keys")
    wall = max(ends) - start if ends else float("nan")
    least = work / workers
    audit = {
        "ok": not problems, "problems": problems[:50], "statuses": statuses, "retried_jobs": int(retried),
        "mlflow_runs": sum(len(r) for key, r in runs.items() if key in jobs),
    }  # fmt: skip
    timing = {
        "wall_s": wall, "least_s": least, "ratio": wall / least if least else float("nan"),
        "job_work_s": work, "job_median_s": sorted(j.ended_at - j.started_at for j in jobs.values() if j and j.ended_at and j.started_at)[len(jobs) // 2],
        "work_lost_to_kills_s": lost_work,
    }  # fmt: skip
    return audit, timing


def _table(results: dict[str, Any]) -> str:
    audit = results["audit"]
    down = results["downtime_s"]
    rows = [
        ("jobs accepted (of submitted)", f"{results['accepted']} of {results['jobs']} ({results['clients']} clients)"),
        ("final states", ", ".join(f"{k} {v}" for k, v in sorted(audit["statuses"].items()))),
        ("audit (one final state, none lost, none run twice, no run RUNNING)", "passed" if audit["ok"] else f"FAILED: {audit['problems'][:5]}"),
        ("jobs run again after a kill (retries)", str(audit["retried_jobs"])),
        ("SIGKILLs; restart, kill to healthy (median, max)", f"{results['kills']}; {sorted(down)[len(down) // 2]:.1f} s, {max(down):.1f} s" if down else "0"),
        ("wall time, first submit to last end", f"{results['wall_s']:.1f} s"),
        ("least it could take (jobs' own time / workers)", f"{results['least_s']:.1f} s ({results['workers']} workers, median job {results['job_median_s']:.2f} s)"),
        ("ratio (goal <= 1.1)", f"{results['ratio']:.2f}x"),
        ("work lost to kills (attempts cut short)", f"{results['work_lost_to_kills_s']:.1f} s"),
    ]  # fmt: skip
    lines = ["| measure | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    machine = results["machine"]
    return "\n".join(lines) + f"\n\n{json.dumps({k: v for k, v in machine.items() if k != 'packages'})}"


if __name__ == "__main__":
    sys.exit(main())
