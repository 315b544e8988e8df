"""Retention: finished jobs past --keep-days / --keep-jobs go with their logs; queued and running stay."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.service.conftest import Service, quick_job, slow_job, start_service
from trainyard.cli import main
from trainyard.errors import ConfigurationError
from trainyard.service.retention import Retention
from trainyard.service.store import JobRow, Store

DAY = 86_400.0


def failing_job() -> dict:
    """A job that fails in its first step (a column the data lacks), before MLflow: a fast finished job."""
    document = quick_job()
    document["job"]["inputs"]["columns"] = ["age", "no_such_column"]
    return document


def finished(store: Store, status: str = "completed", *, ended_days_ago: float = 0.0) -> str:
    """A job run to ``status`` that ended that many days ago."""
    job, _ = store.submit("training", {"job": {}})
    claimed = store.claim("w")
    assert claimed is not None and claimed.id == job.id
    assert store.finish(job.id, status, status)
    with store.engine.begin() as connection:
        connection.execute(
            sa.update(JobRow).where(JobRow.id == job.id).values(ended_at=time.time() - ended_days_ago * DAY)
        )
    return job.id


def test_keep_days_deletes_only_finished_jobs_that_ended_before(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    old_done, old_failed = finished(store, ended_days_ago=10), finished(store, "failed", ended_days_ago=8)
    recent = finished(store, "cancelled", ended_days_ago=1)
    running, _ = store.submit("training", {"job": {}})
    assert store.claim("w") is not None
    queued, _ = store.submit("training", {"job": {}})
    for job_id in (running.id, queued.id):  # unfinished jobs are never old enough
        with store.engine.begin() as connection:
            connection.execute(sa.update(JobRow).where(JobRow.id == job_id).values(created_at=0.0))
    assert sorted(store.prune(keep_days=7)) == sorted([old_done, old_failed])
    assert store.get(old_done) is None and store.get(old_failed) is None
    assert {job.id for job in store.page()[0]} == {recent, running.id, queued.id}
    assert store.prune(keep_days=7) == []  # nothing more: a second pass is a no-op


def test_keep_jobs_keeps_the_newest_finished_ones(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    ids = [finished(store, ended_days_ago=days) for days in (5, 4, 3, 2, 1)]
    running, _ = store.submit("training", {"job": {}})
    assert store.claim("w") is not None
    queued, _ = store.submit("training", {"job": {}})
    assert sorted(store.prune(keep_jobs=2)) == sorted(ids[:3])
    assert {job.id for job in store.page()[0]} == {ids[3], ids[4], running.id, queued.id}
    assert store.prune(keep_jobs=2, keep_days=1.5) == [ids[3]]  # either rule deletes
    assert store.prune(keep_jobs=0) == [ids[4]]
    assert {job.id for job in store.page()[0]} == {running.id, queued.id}
    assert store.prune() == []  # no rule: nothing deleted
    assert store.get(queued.id) is not None and store.get(running.id) is not None


def test_retention_deletes_the_logs_of_the_jobs_it_deletes(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    logs = tmp_path / "logs"
    logs.mkdir()
    old, new = finished(store, ended_days_ago=3), finished(store)
    for job_id in (old, new):
        (logs / f"{job_id}.log").write_text("lines\n")
    assert Retention(keep_days=2).apply(store, logs) == [old]
    assert not (logs / f"{old}.log").exists() and (logs / f"{new}.log").exists()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"keep_days": -1}, "--keep-days -1: expected a number of days >= 0"),
        ({"keep_days": float("nan")}, "--keep-days nan: expected a number of days >= 0"),
        ({"keep_jobs": -2}, "--keep-jobs -2: expected a number of jobs >= 0"),
        ({"keep_jobs": 3, "every_s": 0}, "--prune-every 0: expected a number of seconds > 0"),
    ],
)
def test_bad_retention_settings_are_refused(options: dict, expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        Retention(**options)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--keep-days", "-1"], "error: --keep-days -1: expected a number of days >= 0"),
        (["--keep-jobs", "many"], "argument --keep-jobs: invalid int value: 'many'"),
        (["--mlflow-ui", "ftp://host"], "error: --mlflow-ui ftp://host: expected an http(s) URL"),
    ],
)
def test_serve_refuses_bad_retention_and_mlflow_ui_options_without_a_traceback(
    tmp_path: Path, arguments: list[str], expected: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trainyard.cli", "serve", "--port", "9", *arguments],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "trainyard-jobs.db").exists()


def wait_until(condition, what: str, service: Service, timeout: float = 90) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen in {timeout} s:\n{service.output()}")


def test_the_service_applies_retention_at_start_and_periodically(own_folder: Path) -> None:
    """At start the jobs older than --keep-days go; then every --prune-every seconds all but the
    --keep-jobs newest finished ones, with their logs, while a running and a queued job stay."""
    store = Store(f"sqlite:///{own_folder / 'trainyard-jobs.db'}")
    logs = own_folder / "trainyard-jobs-logs"
    logs.mkdir()
    old = [finished(store, ended_days_ago=10), finished(store, "failed", ended_days_ago=9)]
    for job_id in old:
        (logs / f"{job_id}.log").write_text("old\n")
    store.close()
    service = start_service(
        own_folder, "--workers", "1", "--keep-days", "7", "--keep-jobs", "1", "--prune-every", "0.3"
    )
    try:
        assert "finished jobs kept: 7 day(s) and the 1 newest" in service.output()
        with service.http() as http:
            assert http.get("/jobs").json()["total"] == 0  # pruned before the service answered
            assert not any(logs.iterdir())
            slow = http.post("/jobs", json=slow_job()).json()["id"]
            first = http.post("/jobs", json=failing_job()).json()["id"]
            second = http.post("/jobs", json=failing_job()).json()["id"]

            def status(job_id: str) -> str | None:
                answer = http.get(f"/jobs/{job_id}")
                return answer.json()["status"] if answer.status_code == 200 else None

            wait_until(lambda: status(slow) == "running", "the slow job's start", service)
            time.sleep(1)  # a few retention passes: a running and two queued jobs are kept
            assert [status(j) for j in (slow, first, second)] == ["running", "queued", "queued"]
            for job_id, now in ((slow, "running"), (first, "queued")):
                refused = http.delete(f"/jobs/{job_id}")
                assert refused.status_code == 409 and refused.json()["detail"] == (
                    f"job {job_id} is {now}: only a finished job can be deleted (cancel it first)"
                )
            assert http.post(f"/jobs/{slow}/cancel").status_code == 202
            wait_until(lambda: status(slow) is None and status(first) is None, "the deletions", service)
            assert status(second) == "failed"  # the one that ended last stays, with its log
            assert [j["id"] for j in http.get("/jobs").json()["jobs"]] == [second]
            assert sorted(path.name for path in logs.iterdir()) == [f"{second}.log"]
    finally:
        service.stop()


def test_the_delete_command_deletes_a_finished_job(
    service: Service, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRAINYARD_URL", service.url)
    monkeypatch.setenv("TRAINYARD_TOKEN", service.token or "")
    with service.client() as client:
        job = client.submit(failing_job())
        assert client.wait(job["id"], timeout=120)["status"] == "failed"
        assert (service.folder / "trainyard-jobs-logs" / f"{job['id']}.log").exists()
        assert main(["delete", job["id"]]) == 0
        assert capsys.readouterr().out == f"{job['id']} deleted\n"
        assert not (service.folder / "trainyard-jobs-logs" / f"{job['id']}.log").exists()
        assert main(["delete", job["id"]]) != 0
        assert f"no job '{job['id']}' in the store" in capsys.readouterr().err
