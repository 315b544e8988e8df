"""The job service's HTTP API against a real server process: every endpoint, auth, and what it refuses."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.service.conftest import TOKEN, Service, quick_job, slow_job


def wait_for(service: Service, job_id: str, statuses: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    with service.http() as http:
        while time.monotonic() < deadline:
            job = http.get(f"/jobs/{job_id}").json()
            if job["status"] in statuses:
                return job
            time.sleep(0.1)
    raise AssertionError(f"job {job_id} is still {job['status']}:\n{service.output()}")


def test_health_is_open_and_everything_else_needs_the_token(service: Service) -> None:
    assert f"trainyard service on http://127.0.0.1:{service.port} — store sqlite:///" in service.output()
    with service.http(token="") as anonymous:
        assert anonymous.get("/health").json()["status"] == "ok"
        for method, path in [
            ("GET", "/jobs"), ("POST", "/jobs"), ("GET", "/jobs/x"), ("GET", "/metrics"), ("GET", "/openapi.json"),
            ("POST", "/jobs/x/cancel"), ("DELETE", "/jobs/x"), ("GET", "/jobs/x/logs"),
        ]:  # fmt: skip
            answer = anonymous.request(method, path)
            assert answer.status_code == 401, (method, path)
            assert answer.headers["www-authenticate"] == "Bearer"
    with service.http(token="wrong") as wrong:
        assert wrong.get("/jobs").status_code == 401
    with service.http() as http:
        assert http.get("/jobs").status_code == 200
        assert "/jobs/{job_id}/cancel" in http.get("/openapi.json").json()["paths"]


def test_a_job_runs_to_completion_with_its_steps_metrics_run_and_log(service: Service) -> None:
    with service.http() as http:
        submitted = http.post("/jobs", json=quick_job())
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        assert submitted.json()["status"] == "queued"
        job = wait_for(service, job_id, {"completed", "failed"})
        assert job["status"] == "completed", job
        assert set(job["metrics"]) == {"r2", "rmse", "mae"} and 0.2 < job["metrics"]["r2"] < 0.7
        assert job["progress"]["percent"] == 100.0 and job["progress"]["steps_done"] >= 8
        statuses = [t["status"] for t in job["transitions"]]
        steps = [t["step"] for t in job["transitions"] if t["step"]]
        assert statuses[0] == "queued" and statuses[1] == "running" and statuses[-1] == "completed"
        assert steps.index("split") < steps.index("fit") < steps.index("score") < steps.index("save")
        assert job["started_at"] <= job["transitions"][3]["at"] <= job["ended_at"]
        runs = service.mlflow_runs(job_id)
        assert [run.info.run_id for run in runs] == [job["run_id"]]
        assert runs[0].info.status == "FINISHED" and runs[0].data.metrics["r2"] == pytest.approx(
            job["metrics"]["r2"]
        )
        log = http.get(f"/jobs/{job_id}/logs").text
        assert "✓ fit" in log and "Training finished" in log
        followed = http.get(f"/jobs/{job_id}/logs", params={"follow": "true"}).text
        assert followed == log
        listed = http.get("/jobs", params={"status": "completed", "kind": "training"}).json()
        assert job_id in [j["id"] for j in listed["jobs"]] and listed["total"] >= 1
        assert http.get("/jobs", params={"kind": "tuning"}).json()["total"] == 0
        counts = http.get("/metrics").json()
        assert counts["completed"] >= 1 and {"queue_depth", "running", "failed"} <= set(counts)
        assert http.delete(f"/jobs/{job_id}").status_code == 204
        gone = http.get(f"/jobs/{job_id}")
        assert gone.status_code == 404 and gone.json()["error"] == "ResourceNotFoundError"


def test_following_a_log_streams_until_the_job_ends_with_its_last_lines(service: Service) -> None:
    with service.http() as http:
        job_id = http.post("/jobs", json=quick_job()).json()["id"]
        with http.stream("GET", f"/jobs/{job_id}/logs", params={"follow": "true"}) as response:
            streamed = "".join(response.iter_text())
        assert http.get(f"/jobs/{job_id}").json()["status"] == "completed"
        assert streamed == http.get(f"/jobs/{job_id}/logs").text
        assert streamed.rstrip().endswith("Training finished")


def test_list_is_newest_first_with_total_and_pages(service: Service) -> None:
    with service.http() as http:
        ids = [http.post("/jobs", json=quick_job()).json()["id"] for _ in range(3)]
        page = http.get("/jobs", params={"limit": 2}).json()
        assert [j["id"] for j in page["jobs"]] == ids[::-1][:2] and page["total"] >= 3
        second = http.get("/jobs", params={"limit": 2, "offset": 1}).json()
        assert second["jobs"][0]["id"] == ids[1]
        bad = http.get("/jobs", params={"status": "done"})
        assert bad.status_code == 422 and "expected one of queued, running" in bad.json()["detail"]
        for job_id in ids:
            wait_for(service, job_id, {"completed", "failed"})


def test_a_retried_submit_with_its_idempotency_key_returns_the_first_job(service: Service) -> None:
    with service.http() as http:
        before = http.get("/jobs").json()["total"]
        first = http.post("/jobs", json=quick_job(), headers={"Idempotency-Key": "abc-1"})
        again = http.post("/jobs", json=quick_job(), headers={"Idempotency-Key": "abc-1"})
        assert (first.status_code, again.status_code) == (202, 200)
        assert again.json()["id"] == first.json()["id"]
        assert http.get("/jobs").json()["total"] == before + 1
        wait_for(service, first.json()["id"], {"completed", "failed"})


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"model": {"KIND": "sklearn", "estimator": "RandomForestRegresor"}}, "request: job.model.estimator"),
        ({"splitter": {"KIND": "train_test", "test_size": 2}}, "request: job.splitter.test_size = 2"),
        ({"epochz": 3}, "request: job.epochz: unknown key"),
        (
            {"model": {"KIND": "sklearn", "estimator": "os:system"}},
            "request: job.model.estimator = 'os:system'",
        ),
        ({"metrics": [{"_target_": "os.system"}]}, "job.metrics.0._target_: Trainyard never builds objects"),
    ],
)
def test_an_invalid_config_is_refused_with_the_field_path(
    service: Service, change: dict, expected: str
) -> None:
    with service.http() as http:
        before = http.get("/jobs").json()["total"]
        answer = http.post("/jobs", json=quick_job(**change))
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == "ConfigurationError" and expected in answer.json()["detail"]
        assert http.get("/jobs").json()["total"] == before  # nothing stored


def test_import_paths_are_refused_over_http(service: Service) -> None:
    with service.http() as http:
        answer = http.post(
            "/jobs", json=quick_job(model={"KIND": "sklearn", "estimator": "sklearn.linear_model:Ridge"})
        )
        assert answer.status_code == 422
        assert "job.model.estimator" in answer.json()["detail"] and "import path" in answer.json()["detail"]


def test_files_outside_the_data_roots_are_refused(service: Service, tmp_path: Path) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text("a,b\n1,2\n")
    link = service.folder / "data" / "link.csv"
    if not link.exists():
        os.symlink(outside, link)

    def reader(path: str) -> dict:
        return {"KIND": "csv", "path": path, "columns": ["age"]}

    cases = [
        ({"inputs": reader(str(outside))}, "job.inputs.path", "outside the service's data roots"),
        ({"targets": reader("data/../../secret.csv")}, "job.targets.path", "'..' is not accepted"),
        ({"inputs": reader("data/link.csv")}, "job.inputs.path", "outside the service's data roots"),
        ({"inputs": reader("https://example.org/x.csv")}, "job.inputs.path", "URLs are not accepted"),
        ({"logger": {"folder": "/tmp"}}, "job.logger.folder", "outside"),
        (
            {"mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}},
            "job.mlflow.tracking_uri",
            "outside",
        ),
    ]
    with service.http() as http:
        for change, field, problem in cases:
            answer = http.post("/jobs", json=quick_job(**change))
            assert answer.status_code == 422, (change, answer.text)
            detail = answer.json()["detail"]
            assert f"request: {field}" in detail and problem in detail, detail


def test_malformed_and_oversized_bodies_are_refused(service: Service) -> None:
    with service.http() as http:
        not_json = http.post("/jobs", content=b"{job: ", headers={"content-type": "application/json"})
        assert not_json.status_code == 422 and "not JSON" in not_json.json()["detail"]
        no_job = http.post("/jobs", json={"jobs": {}})
        assert (
            no_job.status_code == 422 and "jobs: unknown key; valid keys here: job" in no_job.json()["detail"]
        )
        runtime = http.post("/jobs", json={**quick_job(), "max_runtime_s": -1})
        assert runtime.status_code == 422 and "max_runtime_s = -1" in runtime.json()["detail"]
        huge = http.post("/jobs", content=json.dumps({"job": {"x": "y" * 2_000_000}}).encode())
        assert huge.status_code == 413 and "larger than the service accepts" in huge.json()["detail"]


def test_unknown_jobs_answer_404_and_unfinished_ones_cannot_be_deleted(service: Service) -> None:
    with service.http() as http:
        for method, path in [
            ("GET", "/jobs/nope"),
            ("POST", "/jobs/nope/cancel"),
            ("GET", "/jobs/nope/logs"),
            ("DELETE", "/jobs/nope"),
        ]:
            answer = http.request(method, path)
            assert answer.status_code == 404 and "no job 'nope'" in answer.json()["detail"]
        job_id = http.post("/jobs", json=slow_job()).json()["id"]
        refused = http.delete(f"/jobs/{job_id}")
        assert refused.status_code == 409 and "only a finished job can be deleted" in refused.json()["detail"]
        http.post(f"/jobs/{job_id}/cancel")
        wait_for(service, job_id, {"cancelled"})
        again = http.post(f"/jobs/{job_id}/cancel")
        assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


def test_the_token_is_the_services_own(service: Service) -> None:
    assert service.token == TOKEN


def test_the_training_request_of_the_training_job_service_is_mapped_onto_a_training_job(
    service: Service,
) -> None:
    request = {
        "model_name": "diabetes-seed",
        "model_version": "1.0.0",
        "data_source_config": {
            "path": "data/diabetes.csv", "type": "csv", "feature_columns": ["age", "bmi", "bp"],
            "target_column": "target",
        },
        "algorithm_config": {"name": "Ridge", "framework": "scikit-learn", "parameters": {"alpha": 0.5}},
        "experiment_name": "service",
        "tags": {"team": "risk"},
    }  # fmt: skip
    with service.http() as http:
        answer = http.post("/jobs", json=request)
        assert answer.status_code == 202, answer.text
        job = wait_for(service, answer.json()["id"], {"completed", "failed"})
        assert job["status"] == "completed", job
        assert set(job["metrics"]) == {"r2", "rmse"} and job["model_version"] == "1"
        assert job["config"]["job"]["register"]["name"] == "diabetes-seed"
        run = service.mlflow_runs(job["id"])[0]
        assert run.data.tags["team"] == "risk" and run.data.params["model.params.alpha"] == "0.5"
        missing = http.post("/jobs", json={**request, "data_source_config": {"path": "data/diabetes.csv"}})
        assert missing.status_code == 422
        assert "request: data_source_config.target_column: Field required" in missing.json()["detail"]
        tuning = http.post("/jobs", json={**request, "hyperparameter_tuning_config": {"n_trials": 5}})
        assert tuning.status_code == 422  # a search needs its space (test_tuning_service.py: the rest)
        assert "hyperparameter_tuning_config.search_space: Field required" in tuning.json()["detail"]
        outside = {**request, "data_source_config": {**request["data_source_config"], "path": "/etc/passwd"}}
        refused = http.post("/jobs", json=outside)
        assert (
            refused.status_code == 422
            and "request: job.inputs.path = '/etc/passwd'" in refused.json()["detail"]
        )
