"""Durability: a service SIGKILLed during a burst of jobs loses none and runs none twice.

A client submits short jobs (each with an Idempotency-Key, retried while the service is away) while
the service is SIGKILLed twice, each time while jobs run, and started again. Every accepted job must
end in exactly one final state, each attempt must be a claim, no job may have two finished MLflow
runs, and no MLflow run may be left RUNNING. (benchmarks/service_burst.py is the issue's full burst.)
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest

from tests.service.conftest import Service, start_service
from trainyard.records import SERVICE_JOB_TAG
from trainyard.service.store import FINAL, Store

JOBS = 20
KILLS = 2


def short_job() -> dict[str, Any]:
    """A training job of about a second on a warm service: a ridge regression, logged, unregistered."""
    data = "data/diabetes.csv"
    return {
        "job": {
            "KIND": "training",
            "mlflow": {"experiment": "burst"},
            "inputs": {"KIND": "csv", "path": data, "drop": ["target"]},
            "targets": {"KIND": "csv", "path": data, "columns": ["target"]},
            "model": {"KIND": "sklearn", "estimator": "Ridge", "params": {"alpha": 1.0}},
            "metrics": ["r2"],
        },
        "max_retries": KILLS + 1,
    }


class Submitter(threading.Thread):
    """Submits ``JOBS`` jobs one after another, each retried with its key until it is accepted."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.accepted: dict[str, str] = {}  # idempotency key: job id
        self.answers: list[int] = []

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        for number in range(JOBS):
            key = f"durability-{number}"
            while key not in self.accepted:
                try:
                    answer = httpx.post(
                        f"{self.url}/jobs",
                        json=short_job(),
                        headers={**headers, "Idempotency-Key": key},
                        timeout=10,
                    )
                except httpx.TransportError:  # the service is away: try again with the same key
                    time.sleep(0.2)
                    continue
                self.answers.append(answer.status_code)
                if answer.status_code in (200, 202):
                    self.accepted[key] = answer.json()["id"]
                else:
                    raise AssertionError(f"submit {key}: {answer.status_code} {answer.text}")


def metrics_or_none(service: Service) -> dict[str, int] | None:
    try:
        with service.http() as http:
            return dict(http.get("/metrics", timeout=5).json())
    except httpx.TransportError:
        return None


@pytest.mark.timeout(600)  # a loaded machine: service starts of tens of seconds
def test_a_burst_survives_two_sigkills_with_every_job_run_exactly_once(own_folder: Path) -> None:
    """About a minute on a quiet machine (three service starts of seconds each, 20 jobs on two
    workers): the issue asks for a restart after SIGKILL with nothing lost."""
    service = start_service(own_folder, "--workers", "2")
    port = service.port
    submitter = Submitter(service.url, service.token or "")
    submitter.start()
    try:
        for kill in range(KILLS):
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:  # kill while a job runs, after some have completed
                counts = metrics_or_none(service)
                if counts and counts["completed"] >= (kill + 1) * JOBS // (KILLS + 2) and counts["running"]:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"no job ran before kill {kill + 1}: {counts}\n{service.output()}")
            service.kill()
            service = start_service(own_folder, "--workers", "2", port=port)
        submitter.join(120)
        assert not submitter.is_alive() and len(submitter.accepted) == JOBS
        ids = list(submitter.accepted.values())
        assert len(set(ids)) == JOBS  # a submit retried after a kill returned its first job
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            counts = metrics_or_none(service)
            if counts and counts["queued"] == 0 and counts["running"] == 0:
                break
            time.sleep(0.2)
        store = Store(f"sqlite:///{own_folder / 'trainyard-jobs.db'}")
        jobs = [store.get(job_id) for job_id in ids]
        assert store.counts()["queued"] + store.counts()["running"] == 0
        assert sum(store.counts().values()) == JOBS  # no job made twice, none lost
        store.close()
    finally:
        service.stop()
    client = mlflow.MlflowClient(f"sqlite:///{own_folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("burst")
    assert experiment is not None
    runs: dict[str, list[Any]] = {}
    for run in client.search_runs([experiment.experiment_id], max_results=1000):
        runs.setdefault(run.data.tags[SERVICE_JOB_TAG], []).append(run)
    retried = 0
    for job in jobs:
        assert job is not None
        finals = [t for t in job.transitions if t.status in FINAL]
        claims = [t for t in job.transitions if t.status == "running" and t.step is None]
        assert len(finals) == 1 and job.transitions[-1] is finals[0], (job.id, job.transitions)
        assert len(claims) == job.attempts  # every attempt was a claim
        assert job.status == "completed", (job.id, job.status, job.failure_reason)
        statuses = sorted(run.info.status for run in runs.get(job.id, []))
        assert "RUNNING" not in statuses, (job.id, statuses)
        finished = [run for run in runs[job.id] if run.info.status == "FINISHED"]
        assert [run.info.run_id for run in finished] == [job.run_id], (job.id, statuses)
        retried += job.attempts > 1
    assert retried >= 1  # the kills hit running jobs, and those ran again, once
