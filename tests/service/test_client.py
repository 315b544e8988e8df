"""The Python client and the CLI commands on it, against a real service; and a tuning job's progress."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.conftest import CONFS
from tests.service.conftest import Service, quick_job, slow_job
from trainyard.cli import main
from trainyard.errors import ConfigurationError, ResourceNotFoundError
from trainyard.service.client import JobServiceClient, ServiceError


def tuning_job(trials: int = 4) -> dict:
    document = copy.deepcopy(yaml.safe_load((CONFS / "tuning.yaml").read_text()))
    document["job"]["mlflow"] = {"experiment": "service-tuning"}
    document["job"]["model"]["params"] = {"max_iter": 10}
    document["job"]["searcher"].update(n_trials=trials, n_jobs=1)
    return document


@pytest.fixture
def cli_env(service: Service, monkeypatch: pytest.MonkeyPatch) -> Service:
    monkeypatch.setenv("TRAINYARD_URL", service.url)
    monkeypatch.setenv("TRAINYARD_TOKEN", service.token or "")
    return service


def test_the_client_submits_waits_lists_and_reads_logs(service: Service) -> None:
    with service.client() as client:
        assert client.health()["status"] == "ok"
        job = client.submit_training_job(quick_job(), idempotency_key="client-1")
        assert client.submit(quick_job(), idempotency_key="client-1")["id"] == job["id"]
        done = client.wait(job["id"], timeout=120)
        assert done["status"] == "completed" and done["run_id"] and "r2" in done["metrics"]
        assert client.get_training_job_status(job["id"])["status"] == "completed"
        assert job["id"] in [j["id"] for j in client.list_training_jobs(limit=50)]
        assert client.list(status="completed")["total"] >= 1
        assert "✓ fit" in client.logs(job["id"])
        assert "".join(client.follow(job["id"])) == client.logs(job["id"])
        assert client.metrics()["completed"] >= 1
        client.delete(job["id"])
        with pytest.raises(ResourceNotFoundError, match="no job"):
            client.status(job["id"])


def test_the_client_raises_the_errors_of_the_hierarchy(service: Service) -> None:
    with (
        service.client() as client,
        pytest.raises(ConfigurationError, match=r"request: job\.epochz: unknown key"),
    ):
        client.submit(quick_job(epochz=2))
    with service.client(token="wrong") as stranger, pytest.raises(ServiceError, match="answered 401"):
        stranger.list()
    with (
        JobServiceClient("http://127.0.0.1:9", timeout=2) as nowhere,
        pytest.raises(ServiceError, match="cannot reach"),
    ):
        nowhere.health()


def test_a_tuning_job_reports_its_trials(service: Service) -> None:
    with service.client() as client:
        job = client.wait(client.submit(tuning_job())["id"], timeout=180)
        assert job["status"] == "completed", job
        assert job["progress"]["trials_done"] == 4 and job["progress"]["trials_budget"] == 4
        assert job["progress"]["best"] == pytest.approx(job["metrics"]["rmse"])
        steps = [t["step"] for t in job["transitions"] if t["step"]]
        assert "search" in steps and "log results" in steps
        runs = service.mlflow_runs(job["id"], "service-tuning")
        parent = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
        assert [run.info.run_id for run in parent] == [job["run_id"]] and parent[0].info.status == "FINISHED"


def test_cli_submit_wait_jobs_logs_and_cancel(
    cli_env: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(quick_job()))
    assert main(["submit", str(config), "job.model.params.max_iter=15", "--wait"]) == 0
    out = capsys.readouterr().out
    job_id = out.split()[0]
    assert f"{job_id} completed: r2=" in out
    assert cli_env.client().status(job_id)["config"]["job"]["model"]["params"]["max_iter"] == 15
    assert main(["jobs", "--status", "completed"]) == 0
    assert job_id in capsys.readouterr().out
    assert main(["logs", job_id]) == 0
    assert "✓ fit" in capsys.readouterr().out
    assert main(["logs", job_id, "--follow"]) == 0
    assert "Training finished" in capsys.readouterr().out
    assert main(["cancel", job_id]) == 1
    assert f"job {job_id} is already completed" in capsys.readouterr().err
    slow = tmp_path / "slow.yaml"
    slow.write_text(yaml.safe_dump(slow_job()))
    assert main(["submit", str(slow)]) == 0
    slow_id = capsys.readouterr().out.split()[0]
    assert main(["cancel", slow_id]) == 0
    assert slow_id in capsys.readouterr().out
    assert cli_env.client().wait(slow_id, timeout=60)["status"] == "cancelled"


def test_cli_submit_errors(cli_env: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(quick_job()))
    assert main(["submit", str(config), "job.splitter.test_size=3"]) == 2
    assert "request: job.splitter.test_size = 3" in capsys.readouterr().err
    assert main(["submit", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["logs", "nope"]) == 1
    assert "no job 'nope'" in capsys.readouterr().err


def test_cli_without_a_service(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRAINYARD_URL", "http://127.0.0.1:9")
    assert main(["jobs"]) == 1
    assert "cannot reach the job service at http://127.0.0.1:9" in capsys.readouterr().err


def test_the_async_client(service: Service) -> None:
    import asyncio

    from trainyard.service.client import AsyncJobServiceClient

    async def scenario() -> tuple[dict, list[dict], str, str, dict]:
        async with AsyncJobServiceClient(service.url, service.token) as client:
            job = await client.submit_training_job(quick_job())
            followed = "".join([text async for text in client.follow(job["id"])])
            done = await client.wait(job["id"], timeout=120)
            listed = await client.list_training_jobs(limit=5)
            log, health = await client.logs(job["id"]), await client.health()
            await client.delete(job["id"])
            try:
                await client.status(job["id"])
            except ResourceNotFoundError:
                return done, listed, log, followed, health
            raise AssertionError("a deleted job is gone")

    done, listed, log, followed, health = asyncio.run(scenario())
    assert done["status"] == "completed" and done["id"] in [j["id"] for j in listed] and "✓ fit" in log
    assert followed == log and health
