"""Tuning over HTTP: the training request's hyperparameter_tuning_config becomes a tuning job, and a
running tuning job shows its MLflow run and its trials while it searches."""

from __future__ import annotations

import copy
import time
from typing import Any

import mlflow
import pytest

from tests.service.conftest import Service
from tests.service.test_api import wait_for

REQUEST: dict[str, Any] = {
    "model_name": "diabetes-tuned",
    "model_version": "2.0.0",
    "data_source_config": {"path": "data/diabetes.csv", "type": "csv", "target_column": "target"},
    "algorithm_config": {"name": "Ridge", "framework": "scikit-learn", "parameters": {"fit_intercept": True}},
    "experiment_name": "service-tuning-request",
    "tags": {"team": "risk"},
    "hyperparameter_tuning_config": {
        "search_space": {"alpha": {"type": "float", "low": 0.01, "high": 10.0, "log": True}},
        "n_trials": 4,
        "metric": "rmse",
        "direction": "minimize",
        "strategy": "random",
        "cv_folds": 2,
        "seed": 5,
    },
}


def with_tuning(**changes: Any) -> dict[str, Any]:
    request = copy.deepcopy(REQUEST)
    request["hyperparameter_tuning_config"].update(changes)
    return request


def test_a_training_request_with_tuning_runs_a_tuning_job(service: Service) -> None:
    with service.http() as http:
        answer = http.post("/jobs", json=REQUEST)
        assert answer.status_code == 202, answer.text
        job = wait_for(service, answer.json()["id"], {"completed", "failed", "cancelled"}, timeout=180)
    assert job["status"] == "completed", job
    assert job["kind"] == "tuning"
    searcher = job["config"]["job"]["searcher"]
    assert searcher["KIND"] == "random" and searcher["n_trials"] == 4 and searcher["seed"] == 5
    assert job["config"]["job"]["splitter"] == {"KIND": "kfold", "n_splits": 2}
    assert job["config"]["job"]["metrics"] == ["rmse"]
    assert job["progress"]["trials_done"] == 4 and job["progress"]["trials_budget"] == 4
    assert job["metrics"]["rmse"] == pytest.approx(job["progress"]["best"])
    runs = service.mlflow_runs(job["id"], experiment="service-tuning-request")
    parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)
    assert parent.info.run_id == job["run_id"] and parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert (tags["model_name"], tags["model_version"], tags["team"]) == ("diabetes-tuned", "2.0.0", "risk")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"direction": "maximize"}, "hyperparameter_tuning_config.direction = 'maximize': the metric rmse is always minimized"),
        ({"metric": "rsme"}, "hyperparameter_tuning_config.metric = 'rsme': unknown metric 'rsme'. Did you mean rmse?"),
        ({"search_space": {"alhpa": [0.1, 1.0]}}, "hyperparameter_tuning_config.search_space: 'alhpa': not parameters of Ridge; valid: alpha"),
        ({"search_space": {"alpha": "interval(1)"}}, "hyperparameter_tuning_config.search_space.alpha: interval() takes (start, end)"),
        ({"search_space": {"fit_intercept": [True, False]}}, "hyperparameter_tuning_config.search_space: fit_intercept also fixed in algorithm_config.parameters"),
        ({"search_space": {}}, "hyperparameter_tuning_config.search_space: Dictionary should have at least 1 item"),
        ({"n_trials": 0}, "hyperparameter_tuning_config.n_trials: Input should be greater than or equal to 1"),
        ({"strategy": "bayes"}, "hyperparameter_tuning_config.strategy: Input should be 'tpe', 'random' or 'grid'"),
        ({"max_trials": 3}, "hyperparameter_tuning_config.max_trials: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_what_the_tuning_config_cannot_map_is_refused_with_its_field(
    service: Service, changes: dict[str, Any], expected: str
) -> None:
    with service.http() as http:
        answer = http.post("/jobs", json=with_tuning(**changes))
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "ConfigurationError"
    assert f"request: {expected}" in answer.json()["detail"]


def slow_tuning_job() -> dict[str, Any]:
    """A tuning job of 1,000 quick trials (a ridge regression each): to be watched while it searches."""
    request = with_tuning(n_trials=1000, cv_folds=3, strategy="random")
    request["experiment_name"] = "service-tuning-live"
    return request


def test_a_running_tuning_job_has_its_run_id_and_trials_in_the_store(service: Service) -> None:
    with service.http() as http:
        job_id = http.post("/jobs", json=slow_tuning_job()).json()["id"]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            job = http.get(f"/jobs/{job_id}").json()
            assert job["status"] in ("queued", "running"), job
            done = job["progress"].get("trials_done", 0)
            if job["run_id"] and done >= 2:
                break
            time.sleep(0.02)
        else:
            raise AssertionError(f"no run id and trials in 180 s: {job}")
        assert job["status"] == "running" and done < 1000, job  # mid-search, not at the end
        assert job["progress"]["trials_budget"] == 1000 and isinstance(job["progress"]["best"], float)
        assert job["progress"]["percent"] == pytest.approx(100 * done / 1000, abs=0.1)
        [parent] = [
            run for run in service.mlflow_runs(job_id, "service-tuning-live")
            if "mlflow.parentRunId" not in run.data.tags
        ]  # fmt: skip
        assert parent.info.run_id == job["run_id"] and parent.info.status == "RUNNING"
        http.post(f"/jobs/{job_id}/cancel")
        stopped = wait_for(service, job_id, {"cancelled", "failed", "completed"}, timeout=60)
    assert stopped["status"] == "cancelled" and stopped["run_id"] == job["run_id"], stopped
    client = mlflow.MlflowClient(f"sqlite:///{service.folder / 'mlflow.db'}")
    assert client.get_run(job["run_id"]).info.status == "KILLED"
