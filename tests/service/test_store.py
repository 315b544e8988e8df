"""The job store on SQLite: migrations keep jobs, claims are atomic, transitions are kept in order."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from trainyard.records import worker_token
from trainyard.service.store import VERSION_TABLE, JobRow, Store
from trainyard.service.workers import WorkerPool


def test_reopening_migrates_and_keeps_the_jobs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    first = Store(url)
    job, created = first.submit("training", {"job": {"KIND": "training"}}, max_runtime_s=5, max_retries=2)
    assert created and job.status == "queued" and [t.status for t in job.transitions] == ["queued"]
    first.close()
    again = Store(url)
    kept = again.get(job.id)
    assert kept is not None and kept.config == {"job": {"KIND": "training"}} and kept.max_retries == 2
    with again.engine.connect() as connection:
        assert connection.execute(sa.text(f"select version_num from {VERSION_TABLE}")).scalar() == "0002"


def test_a_relative_sqlite_store_is_in_the_working_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = Store("sqlite:///trainyard-jobs.db")
    assert (
        store.url == f"sqlite:///{tmp_path / 'trainyard-jobs.db'}"
        and (tmp_path / "trainyard-jobs.db").exists()
    )


def test_concurrent_claims_take_each_job_once(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    ids = {store.submit("training", {"job": {}})[0].id for _ in range(40)}
    claimed: list[str] = []
    lock = threading.Lock()

    def claim(worker: str) -> None:
        other = Store(store.url)  # a connection pool of its own, as another service would have
        while (job := other.claim(worker)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claim, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    assert store.counts()["running"] == 40


def test_the_oldest_queued_job_is_claimed_first_and_lives_its_transitions(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    first = store.submit("training", {"job": {}})[0]
    second = store.submit("tuning", {"job": {}})[0]
    claimed = store.claim("w")
    assert claimed is not None and claimed.id == first.id and claimed.attempts == 1
    store.step(first.id, "fit", {"step": "fit"})
    assert store.request_cancel(second.id).status == "cancelled"  # type: ignore[union-attr]
    assert store.claim("w") is None  # the cancelled one never starts
    assert not store.delete(first.id)  # running: kept
    assert store.finish(first.id, "completed", "completed", metrics={"r2": 0.5})
    assert not store.finish(first.id, "failed", "late")  # a job ends once
    done = store.get(first.id)
    assert done is not None and done.metrics == {"r2": 0.5}
    assert [(t.status, t.step) for t in done.transitions] == [
        ("queued", None), ("running", None), ("running", "fit"), ("completed", None),
    ]  # fmt: skip
    jobs, total = store.page(kind="training")
    assert total == 1 and jobs[0].id == first.id
    assert store.delete(first.id) and store.get(first.id) is None


def test_on_postgresql_the_claim_skips_locked_rows() -> None:
    oldest = sa.select(JobRow.id).where(JobRow.status == "queued").limit(1).with_for_update(skip_locked=True)
    assert "FOR UPDATE SKIP LOCKED" in str(oldest.compile(dialect=postgresql.dialect()))


def test_an_old_attempt_cannot_end_or_requeue_a_job_claimed_anew(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    job = store.submit("training", {"job": {}}, max_retries=1)[0]
    first = store.claim("w1")
    assert first is not None and first.attempts == 1
    assert store.requeue(job.id, "retry 1 of 1", attempt=1)
    second = store.claim("w2")
    assert second is not None and second.attempts == 2
    assert not store.requeue(job.id, "late", attempt=1)  # the first attempt's recovery, too late
    assert not store.finish(job.id, "completed", "completed", attempt=1)  # its child, too late
    assert store.finish(job.id, "completed", "completed", attempt=2)


def test_a_dead_services_job_is_recovered_only_once_its_child_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no MLflow store here: nothing to end
    store = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    dead = f"{socket.gethostname()}:99999:0"  # pids stop at 32768 here: no such process
    waiting = store.submit("training", {"job": {}})[0]
    retried = store.submit("training", {"job": {}}, max_retries=1)[0]
    store.claim(dead)
    store.claim(dead)
    store.set_process(waiting.id, 1, worker_token())  # its child still ends its run: this process
    store.set_process(retried.id, 1, dead)
    pool = WorkerPool(store, tmp_path / "logs")
    assert pool.recover() == [retried.id]
    assert store.get(waiting.id).status == "running"  # type: ignore[union-attr]
    again = store.get(retried.id)
    assert again is not None and again.status == "queued" and again.process is None
    assert "retry 1 of 1: its worker" in (again.message or "")


def test_a_submit_answers_the_job_as_the_store_reads_it_back(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    config = {"job": {"KIND": "training", "model": {"params": {"max_iter": 20}}, "metrics": ["r2"]}}
    job, created = store.submit("training", config, idempotency_key="k1", max_runtime_s=5.0, max_retries=1)
    assert created and job == store.get(job.id)  # every field, the transitions too
    again, created = store.submit("training", {"job": {}}, idempotency_key="k1")
    assert not created and again == job == store.by_idempotency_key("k1")
    assert store.get("no-such-job") is None and store.by_idempotency_key("no-such-key") is None
