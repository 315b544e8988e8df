"""The worker pool: claims queued jobs and runs each in a fresh child of a warm fork server.

One supervising thread does all the pool's work: it claims jobs while a slot is free, starts a child
per job (``child.run_job``) from multiprocessing's fork server, which has preloaded the heavy
libraries, records what the children report (steps, run id, trials, the end) into the store,
heartbeats the running jobs, and stops a job whose cancellation was asked or whose ``max_runtime_s``
passed: SIGTERM first (the child's handler asks the job's cancellation, and its run ends KILLED),
SIGKILL after ``grace_s``. A child that dies never takes the service with it: its job is failed with
the reason (or queued again while ``max_retries`` allows) and its MLflow run ended.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from trainyard.io.logging import get_logger
from trainyard.records import SERVICE_JOB_TAG, token_alive, token_host, worker_token
from trainyard.runtime.processes import usable_cores
from trainyard.service.store import CANCELLED, COMPLETED, FAILED, JobRecord, Store

PRELOAD = ["trainyard.service.child"]


def default_workers() -> int:
    """Half the usable cores (a job's fit uses threads of its own), at least one."""
    return max(1, usable_cores() // 2)


@dataclass
class _Running:
    job: JobRecord
    process: Any
    conn: Any
    started: float
    progress: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    stop_reason: str | None = None  # "cancel", "max_runtime" or "shutdown", once asked to stop
    stop_sent: float | None = None
    killed: bool = False
    ended: tuple[Any, ...] | None = None


class WorkerPool:
    """Runs the store's queued jobs, ``workers`` at a time, each in its own process."""

    def __init__(
        self,
        store: Store,
        logs: Path,
        *,
        workers: int | None = None,
        poll_s: float = 0.2,
        heartbeat_s: float = 2.0,
        stale_after_s: float = 30.0,
        grace_s: float = 10.0,
    ) -> None:
        self.store = store
        self.logs = logs
        self.workers = workers or default_workers()
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.grace_s = grace_s
        self.worker = worker_token()
        self._running: dict[str, _Running] = {}
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(PRELOAD)

    # -- life of the pool ---------------------------------------------------------------------------

    def start(self) -> None:
        """Recover what a dead service left running, start the fork server (it imports the libraries
        once), then the supervising thread."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self.recover()
        from multiprocessing import forkserver

        forkserver.ensure_running()
        self._thread = threading.Thread(target=self._supervise, name="trainyard-workers", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the running jobs (as a cancellation; then forced) and the supervising thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.grace_s + 5)

    def wake(self) -> None:
        """Look at the store now (a job was submitted or a cancellation asked)."""
        self._wake.set()

    def log_path(self, job_id: str) -> Path:
        return self.logs / f"{job_id}.log"

    @property
    def running_ids(self) -> list[str]:
        return list(self._running)

    # -- the supervising loop -----------------------------------------------------------------------

    def _supervise(self) -> None:
        last_beat = last_recovery = time.monotonic()
        while True:
            try:
                if self._stopping.is_set():
                    for entry in self._running.values():
                        self._ask_to_stop(entry, "shutdown")
                    if not self._running:
                        return
                else:
                    self._fill()
                self._collect()
                self._enforce()
                now = time.monotonic()
                if now - last_beat >= self.heartbeat_s:
                    self.store.heartbeat(list(self._running))
                    last_beat = now
                if now - last_recovery >= self.stale_after_s:
                    self.recover()
                    last_recovery = now
            except Exception as error:  # the store was busy or away: try again, never die
                get_logger().warning("worker pool: %s: %s", type(error).__name__, error)
                time.sleep(self.poll_s)

    def _fill(self) -> None:
        while len(self._running) < self.workers:
            job = self.store.claim(self.worker)
            if job is None:
                return
            self._start(job)

    def _start(self, job: JobRecord) -> None:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=_run_child,
            args=(job.id, job.config, str(self.log_path(job.id)), child_end),
            name=f"trainyard-job-{job.id[:8]}",
            daemon=False,
        )
        try:
            process.start()
        except Exception as error:
            self._finish_failed(job, f"the job's process could not start: {error}", "WorkerError")
            return
        finally:
            child_end.close()
        self._running[job.id] = _Running(job, process, parent_end, time.monotonic())

    def _collect(self) -> None:
        """Read what the children said, and end the jobs whose child exited."""
        if not self._running:
            self._wake.wait(self.poll_s)
            self._wake.clear()
            return
        waitables: list[Any] = []
        for entry in self._running.values():
            waitables += [entry.conn, entry.process.sentinel]
        wait(waitables, timeout=self.poll_s)
        for job_id, entry in list(self._running.items()):
            self._drain(entry)
            if not entry.process.is_alive():
                entry.process.join()
                self._drain(entry)
                entry.conn.close()
                del self._running[job_id]
                self._ended(entry)

    def _drain(self, entry: _Running) -> None:
        try:
            while entry.conn.poll():
                self._handle(entry, entry.conn.recv())
        except (EOFError, OSError):
            pass

    def _handle(self, entry: _Running, message: tuple[Any, ...]) -> None:
        kind = message[0]
        job_id = entry.job.id
        if kind == "step":
            _, title, state, _seconds = message
            progress = entry.progress
            if state == "started":
                progress["step"] = title
                self.store.step(job_id, title, dict(progress))
            elif state == "ended":
                progress["steps_done"] = progress.get("steps_done", 0) + 1
                self.store.update(job_id, progress=dict(progress))
        elif kind == "run":
            entry.run_id = message[1]
            self.store.update(job_id, run_id=entry.run_id)  # at once: a dead job's run can be ended
        elif kind == "trial":
            _, done, budget, best = message
            entry.progress.update(trials_done=done, trials_budget=budget, best=best)
            if budget:
                entry.progress["percent"] = round(min(100.0, 100.0 * done / budget), 1)
            self.store.update(job_id, progress=dict(entry.progress))
        elif kind == "end":
            entry.ended = message

    def _enforce(self) -> None:
        """Stop the jobs asked to stop or past their time; force those past the grace period."""
        asked: set[str] = set(self.store.cancel_requested(list(self._running)))
        now = time.monotonic()
        for job_id, entry in self._running.items():
            limit = entry.job.max_runtime_s
            if job_id in asked:
                self._ask_to_stop(entry, "cancel")
            elif limit is not None and now - entry.started > limit:
                self._ask_to_stop(entry, "max_runtime")
            if entry.stop_sent is not None and not entry.killed and now - entry.stop_sent > self.grace_s:
                entry.killed = True
                entry.process.kill()

    def _ask_to_stop(self, entry: _Running, reason: str) -> None:
        if entry.stop_reason is not None:
            return
        entry.stop_reason = reason
        entry.stop_sent = time.monotonic()
        if entry.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(entry.process.pid, signal.SIGTERM)

    # -- how a job ends -----------------------------------------------------------------------------

    def _ended(self, entry: _Running) -> None:
        job = entry.job
        ended = entry.ended
        status, message, error_type, metrics, version, run_id = (
            ended[1:] if ended is not None else (None, None, None, {}, None, None)
        )
        run_id = run_id or entry.run_id
        done = {"metrics": metrics or {}, "model_version": version, "run_id": run_id}
        progress = {**entry.progress}
        step = progress.get("step")
        at = f" (in step {step!r})" if step else ""
        forced = " (forced after the grace period)" if entry.killed else ""
        if entry.stop_reason == "max_runtime":
            reason = f"stopped after its max_runtime_s of {job.max_runtime_s:g} s{at}{forced}"
            self.store.finish(
                job.id, FAILED, reason, failure_reason=reason, error_type="MaxRuntimeExceeded",
                progress=progress, **done,
            )  # fmt: skip
        elif entry.stop_reason == "cancel":
            self.store.finish(
                job.id, CANCELLED, f"cancelled while running{at}{forced}", progress=progress, **done
            )
        elif entry.stop_reason == "shutdown" and status != COMPLETED:
            self._lost(job, f"the service stopped while the job ran{at}", progress)
        elif status == COMPLETED:
            progress.update(percent=100.0, step=None)
            self.store.finish(job.id, COMPLETED, "completed", progress=progress, **done)
        elif status is not None:
            self.store.finish(
                job.id, FAILED if status == FAILED else CANCELLED, message or status,
                failure_reason=message, error_type=error_type, progress=progress, **done,
            )  # fmt: skip
        else:
            code = entry.process.exitcode
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            self._lost(job, f"the job's process died ({how}){at}", progress)
        if entry.killed or ended is None or entry.stop_reason:
            end_mlflow_runs(job, "KILLED" if entry.stop_reason else "FAILED")

    def _lost(self, job: JobRecord, reason: str, progress: dict[str, Any]) -> None:
        """A job whose process ended without finishing it: queued again while retries remain."""
        if job.attempts <= job.max_retries and self.store.requeue(
            job.id, f"retry {job.attempts} of {job.max_retries}: {reason}"
        ):
            return
        self.store.finish(
            job.id, FAILED, reason, failure_reason=reason, error_type="WorkerDied", progress=progress
        )

    def _finish_failed(self, job: JobRecord, reason: str, error_type: str) -> None:
        self.store.finish(job.id, FAILED, reason, failure_reason=reason, error_type=error_type)

    def recover(self) -> list[str]:
        """Fail (or queue again) the running jobs whose worker is gone, and end their MLflow runs.

        A worker is gone when it is a process of this host that no longer lives, or when its
        heartbeat is older than ``stale_after_s`` (another host's); this pool's own jobs are untouched.
        """
        recovered = []
        now = time.time()
        host = token_host(self.worker)
        for job in self.store.running():
            if job.worker == self.worker or job.id in self._running:
                continue
            local = job.worker is not None and token_host(job.worker) == host
            stale = now - (job.heartbeat_at or job.started_at or now) > self.stale_after_s
            if not ((local and not token_alive(job.worker or "")) or stale):
                continue
            step = job.progress.get("step")
            at = f" (in step {step!r})" if step else ""
            self._lost(job, f"its worker {job.worker} died while the job ran{at}", dict(job.progress))
            end_mlflow_runs(job, "FAILED")
            recovered.append(job.id)
        return recovered


def _run_child(*args: Any) -> None:
    """A job's process: ``child.run_job``, imported here, where the fork server has preloaded it (the
    service's own process never imports the job libraries: about 10 s, and its GIL, at the first job)."""
    from trainyard.service.child import run_job

    run_job(*args)


def end_mlflow_runs(job: JobRecord, status: str) -> list[str]:
    """End the MLflow runs of ``job`` still RUNNING (found by their service tag); their ids."""
    from mlflow import MlflowClient

    from trainyard.io.tracking import DEFAULT_TRACKING_URI, absolute_sqlite_uri

    section = job.config.get("job", {}).get("mlflow") or {}
    uri = absolute_sqlite_uri(section.get("tracking_uri") or DEFAULT_TRACKING_URI)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        return []  # the job never reached MLflow: nothing to end (and no store to create)
    ended = []
    try:
        client = MlflowClient(uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(
            experiments, f"tags.`{SERVICE_JOB_TAG}` = '{job.id}' and attributes.status = 'RUNNING'"
        )
        for run in runs:
            client.set_terminated(run.info.run_id, status)
            ended.append(run.info.run_id)
    except Exception as error:
        get_logger().warning("job %s: its MLflow runs could not be ended: %s", job.id, error)
    return ended
