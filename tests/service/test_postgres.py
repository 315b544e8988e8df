"""The job store on a real PostgreSQL server (started here, in a temporary folder, on 127.0.0.1):
migrations, claims that skip locked rows, and two services claiming from one store.

The server is Debian's postgresql package (``.ci/run`` installs it); without it these tests fail
with what to install, they never skip.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from tests.service.conftest import Service, quick_job, start_service
from tests.service.postgres import Postgres, start_postgres
from tests.service.test_api import wait_for
from trainyard.service.store import VERSION_TABLE, Store


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture
def store_url(postgres: Postgres) -> Iterator[str]:
    """An empty ``trainyard`` database for one test (dropped and made anew)."""
    with psycopg.connect(postgres.url("postgres", driver="postgresql"), autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS trainyard WITH (FORCE)")
        connection.execute("CREATE DATABASE trainyard")
    yield postgres.url()


def test_migrations_make_the_schema_and_an_upgrade_keeps_the_jobs(store_url: str) -> None:
    store = Store(store_url)
    job, _ = store.submit("training", {"job": {"KIND": "training"}}, max_retries=1)
    store.close()
    again = Store(store_url)  # opening again runs the migrations: nothing to do, nothing lost
    kept = again.get(job.id)
    assert kept is not None and kept.config == {"job": {"KIND": "training"}} and kept.max_retries == 1
    with again.engine.connect() as connection:
        assert connection.execute(sa.text(f"select version_num from {VERSION_TABLE}")).scalar() == "0002"
        columns = {c["name"] for c in sa.inspect(connection).get_columns("jobs")}
    assert {"process", "heartbeat_at", "attempts", "cancel_requested"} <= columns
    again.close()


def test_a_claim_skips_the_rows_another_transaction_holds(store_url: str) -> None:
    store = Store(store_url)
    first = store.submit("training", {"job": {}})[0]
    second = store.submit("training", {"job": {}})[0]
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with psycopg.connect(store_url.replace("+psycopg", "")) as other:  # holds the oldest job's row
        other.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (first.id,))
        claimed = store.claim("w")  # would wait for the lock without SKIP LOCKED
        assert claimed is not None and claimed.id == second.id
    update = next(s for s in statements if s.lstrip().upper().startswith("UPDATE JOBS"))
    assert "FOR UPDATE SKIP LOCKED" in update
    again = store.claim("w")
    assert again is not None and again.id == first.id  # released: now it is claimed
    store.close()


def test_concurrent_claims_on_postgresql_take_each_job_once(store_url: str) -> None:
    store = Store(store_url)
    ids = {store.submit("training", {"job": {}})[0].id for _ in range(60)}
    claimed: list[str] = []
    lock = threading.Lock()

    def claim(worker: str) -> None:
        other = Store(store_url)  # a connection pool of its own, as another service would have
        while (job := other.claim(worker)) is not None:
            with lock:
                claimed.append(job.id)
        other.close()

    threads = [threading.Thread(target=claim, args=(f"w{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    assert store.counts()["running"] == 60
    store.close()


@pytest.mark.timeout(600)  # a loaded machine: service starts of tens of seconds
def test_two_services_on_one_postgresql_store_run_each_job_exactly_once(
    store_url: str, own_folder: Path
) -> None:
    """About 30 s (a service starts in seconds, a job in one or two): 6 short training jobs,
    submitted to both services alternately, each service with one worker."""
    services: list[Service] = []
    try:
        for _ in range(2):  # one working folder: the same data, MLflow store and log folder
            services.append(start_service(own_folder, "--workers", "1", "--store", store_url))
        assert "store postgresql+psycopg://postgres@127.0.0.1" in services[0].output()
        submitted = []
        for number in range(6):
            with services[number % 2].http() as http:
                answer = http.post("/jobs", json=quick_job())
                assert answer.status_code == 202, answer.text
                submitted.append(answer.json()["id"])
        for job_id in submitted:
            job = wait_for(services[0], job_id, {"completed", "failed", "cancelled"}, timeout=180)
            assert job["status"] == "completed", job
            assert job["attempts"] == 1
            assert [t["status"] for t in job["transitions"] if t["step"] is None] == [
                "queued", "running", "completed",
            ]  # fmt: skip
            runs = services[0].mlflow_runs(job_id)
            assert [(run.info.run_id, run.info.status) for run in runs] == [(job["run_id"], "FINISHED")]
        store = Store(store_url)
        workers = {store.get(job_id).worker for job_id in submitted}  # type: ignore[union-attr]
        store.close()
        assert len(workers) == 2, workers  # both services claimed jobs
        with services[1].http() as http:
            assert http.get("/metrics").json()["completed"] == 6
    finally:
        for service in services:
            service.stop()
