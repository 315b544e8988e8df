"""Cancelling, time limits and crashes: a job stops as asked, its run never stays RUNNING, none is lost."""

from __future__ import annotations

import time
from pathlib import Path

from tests.service.conftest import Service, quick_job, slow_job, start_service
from tests.service.test_api import wait_for


def wait_for_step(service: Service, job_id: str, step: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    with service.http() as http:
        while time.monotonic() < deadline:
            job = http.get(f"/jobs/{job_id}").json()
            if job["progress"].get("step") == step:
                return job
            assert job["status"] in {"queued", "running"}, job
            time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached step {step!r}")


def test_cancel_a_queued_job_then_a_running_one(own_folder: Path) -> None:
    service = start_service(own_folder, "--workers", "1")
    try:
        with service.http() as http:
            running = http.post("/jobs", json=slow_job()).json()["id"]
            queued = http.post("/jobs", json=quick_job()).json()["id"]
            wait_for_step(service, running, "fit")
            answer = http.post(f"/jobs/{queued}/cancel")
            assert answer.status_code == 202 and answer.json()["status"] == "cancelled"
            answer = http.post(f"/jobs/{running}/cancel")
            assert answer.status_code == 202
            stopped = wait_for(service, running, {"cancelled", "failed", "completed"}, timeout=30)
            assert stopped["status"] == "cancelled" and "in step 'fit'" in stopped["message"], stopped
            assert [run.info.status for run in service.mlflow_runs(running)] == ["KILLED"]
            time.sleep(0.5)  # a free worker: the cancelled job must still not start
            never = http.get(f"/jobs/{queued}").json()
            assert never["status"] == "cancelled" and never["started_at"] is None
            assert [t["status"] for t in never["transitions"]] == ["queued", "cancelled"]
            assert service.mlflow_runs(queued) == []
    finally:
        service.stop()


def test_a_job_past_its_max_runtime_is_stopped_and_failed(own_folder: Path) -> None:
    service = start_service(own_folder, "--workers", "1")
    try:
        with service.http() as http:
            job_id = http.post("/jobs", json={**slow_job(), "max_runtime_s": 4}).json()["id"]
            job = wait_for(service, job_id, {"failed", "cancelled", "completed"}, timeout=60)
            assert job["status"] == "failed" and job["error_type"] == "MaxRuntimeExceeded", job
            assert "stopped after its max_runtime_s of 4 s" in job["failure_reason"]
            assert [run.info.status for run in service.mlflow_runs(job_id)] == ["KILLED"]
    finally:
        service.stop()


def test_a_failing_job_ends_failed_with_its_error_type(own_folder: Path) -> None:
    (own_folder / "data" / "empty.csv").write_text("")
    service = start_service(own_folder, "--workers", "1")
    try:
        with service.http() as http:
            reader = {"KIND": "csv", "path": "data/empty.csv", "columns": ["age"]}
            job_id = http.post("/jobs", json=quick_job(inputs=reader)).json()["id"]
            job = wait_for(service, job_id, {"failed", "completed"})
            assert job["status"] == "failed" and job["error_type"] == "DataAccessError", job
            assert "'data/empty.csv' is empty" in job["failure_reason"]
    finally:
        service.stop()


def test_after_a_sigkill_nothing_is_lost(own_folder: Path) -> None:
    service = start_service(own_folder, "--workers", "1")
    try:
        with service.http() as http:
            running = http.post("/jobs", json=slow_job()).json()["id"]
            queued = http.post("/jobs", json=quick_job()).json()["id"]
            job = wait_for_step(service, running, "fit")
            assert job["run_id"] is not None  # in the store as soon as the run exists
        service.kill()
        service = start_service(own_folder, "--workers", "1")
        with service.http() as http:
            lost = wait_for(service, running, {"failed", "completed", "cancelled"}, timeout=30)
            assert lost["status"] == "failed" and lost["error_type"] == "WorkerDied", lost
            assert "died while the job ran (in step 'fit')" in lost["failure_reason"]
            done = wait_for(service, queued, {"completed", "failed"})
            assert done["status"] == "completed", done
        runs = service.mlflow_runs(running)
        assert len(runs) == 1 and runs[0].info.status in {"KILLED", "FAILED"}
    finally:
        service.stop()


def test_a_job_whose_worker_died_is_retried_while_it_may(own_folder: Path) -> None:
    service = start_service(own_folder, "--workers", "1")
    try:
        with service.http() as http:
            job_id = http.post("/jobs", json={**slow_job(), "max_retries": 1}).json()["id"]
            wait_for_step(service, job_id, "fit")
        service.kill()
        service = start_service(own_folder, "--workers", "1")
        with service.http() as http:
            # retried once the first attempt's child has stopped its job on its own (its run KILLED)
            deadline = time.monotonic() + 120
            while (again := wait_for_step(service, job_id, "fit"))["attempts"] < 2:
                assert time.monotonic() < deadline, again
                time.sleep(0.2)
            assert again["attempts"] == 2
            assert any("retry 1 of 1" in (t["step"] or "") for t in again["transitions"])
            http.post(f"/jobs/{job_id}/cancel")
            wait_for(service, job_id, {"cancelled"}, timeout=30)
        assert sorted(run.info.status for run in service.mlflow_runs(job_id)) == ["FAILED", "KILLED"] or all(
            run.info.status in {"FAILED", "KILLED"} for run in service.mlflow_runs(job_id)
        )
    finally:
        service.stop()


def test_the_service_refuses_to_listen_beyond_loopback_without_a_token(own_folder: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "trainyard.cli", "serve", "--host", "0.0.0.0"],
        cwd=own_folder, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in __import__("os").environ.items() if k != "TRAINYARD_TOKEN"},
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        "--host 0.0.0.0: the service listens beyond this machine only with a token"
        in done.stdout + done.stderr
    )
