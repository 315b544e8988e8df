"""The worker pool: claims queued jobs and runs each in a fresh child of a warm fork server.

One supervising thread does the pool's work (two more heartbeat its jobs and recover a dead
service's): it claims jobs while a slot is free, starts a child per job (``child.run_job``) from
multiprocessing's fork server, which has preloaded the heavy libraries, records what the children
report (steps, run id, trials, the end) into the store, and stops a job whose cancellation was
asked or whose ``max_runtime_s`` passed: SIGTERM first (the child's handler asks the job's
cancellation, and its run ends KILLED), SIGKILL after ``grace_s``. A child that dies never takes the
service with it: its job is failed with the reason (or queued again while ``max_retries`` allows)
and its MLflow run ended.

The store knows each running job's service (``worker``, heartbeated) and its child (``process``). A
service started after another one died recovers the dead one's jobs once their children are gone too
(a child sees its service die and stops its job, or records the end it reached): never while a child
may still write its run, so that a job retried is never run twice at once.
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
from trainyard.records import SERVICE_JOB_TAG, process_token, token_alive, token_host, worker_token
from trainyard.runtime.processes import usable_cores
from trainyard.service.progress import advance, completed
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
        recover_every_s: float = 2.0,
        grace_s: float = 10.0,
    ) -> None:
        self.store = store
        self.logs = logs
        self.workers = workers or default_workers()
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.recover_every_s = recover_every_s  # a dead service's job: retried soon after its child ends
        self.grace_s = grace_s
        self.worker = worker_token()
        self._running: dict[str, _Running] = {}
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._recovering: threading.Thread | None = None
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(PRELOAD)

    # -- life of the pool ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the fork server (it imports the libraries once, while the service goes on), then the
        supervising thread and the recovering one (what a dead service left running)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        from multiprocessing import forkserver

        forkserver.ensure_running()  # from a single thread: before the threads below
        self._thread = threading.Thread(target=self._supervise, name="trainyard-workers", daemon=True)
        self._thread.start()
        self._recovering = threading.Thread(
            target=self._recover_often, name="trainyard-recovery", daemon=True
        )
        self._recovering.start()
        threading.Thread(target=self._heartbeat_often, name="trainyard-heartbeat", daemon=True).start()

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
            except Exception as error:  # the store was busy or away: try again, never die
                get_logger().warning("worker pool: %s: %s", type(error).__name__, error)
                time.sleep(self.poll_s)

    def _heartbeat_often(self) -> None:
        """Heartbeat the running jobs every ``heartbeat_s``, in a thread of its own: the supervising
        one can wait long (a job's start waits for the fork server's preloading), and a service on
        another host would then take this one's jobs for dead ones."""
        while not self._stopping.wait(self.heartbeat_s):
            try:
                self.store.heartbeat(list(self._running))
            except Exception as error:  # the store was busy or away: next time
                get_logger().warning("heartbeat: %s: %s", type(error).__name__, error)

    def _recover_often(self) -> None:
        """Recover now, then every ``recover_every_s`` (in a thread of its own: ending a dead job's
        MLflow runs loads MLflow, which jobs and status requests need not wait for)."""
        while not self._stopping.is_set():
            try:
                self.recover()
            except Exception as error:  # the store or MLflow was busy or away: next time
                get_logger().warning("recovery: %s: %s", type(error).__name__, error)
            self._stopping.wait(self.recover_every_s)

    def _fill(self) -> None:
        while len(self._running) < self.workers:
            job = self.store.claim(self.worker)
            if job is None:
                return
            self._start(job)

    def _start(self, job: JobRecord) -> None:
        parent_end, child_end = self._context.Pipe()
        log = str(self.log_path(job.id))
        process = self._context.Process(
            target=_run_in_child,
            args=(job.id, job.config, log, child_end, self.store.url, job.attempts, self.workers),
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
        if process.pid is not None:
            self.store.set_process(job.id, job.attempts, process_token(process.pid))

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
        if kind in ("step", "trial"):
            started = advance(entry.progress, message)
            if started is not None:
                self.store.step(job_id, started, dict(entry.progress))
            else:
                self.store.update(job_id, progress=dict(entry.progress))
        elif kind == "run":
            entry.run_id = message[1]
            self.store.update(job_id, run_id=entry.run_id)  # at once: a dead job's run can be ended
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
        done = {"metrics": metrics or {}, "model_version": version, "run_id": run_id, "attempt": job.attempts}
        progress = {**entry.progress}
        if entry.killed or ended is None or entry.stop_reason:  # before a retry can start another run
            end_mlflow_runs(job, "KILLED" if entry.stop_reason else "FAILED")
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
        elif status == COMPLETED:  # recorded by the child already (this is then a no-op)
            self.store.finish(job.id, COMPLETED, "completed", progress=completed(progress), **done)
        elif status is not None:
            self.store.finish(
                job.id, FAILED if status == FAILED else CANCELLED, message or status,
                failure_reason=message, error_type=error_type, progress=progress, **done,
            )  # fmt: skip
        else:
            code = entry.process.exitcode
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            self._lost(job, f"the job's process died ({how}){at}", progress)

    def _lost(self, job: JobRecord, reason: str, progress: dict[str, Any]) -> None:
        """A job whose process ended without finishing it: queued again while retries remain."""
        if job.attempts <= job.max_retries and self.store.requeue(
            job.id, f"retry {job.attempts} of {job.max_retries}: {reason}", attempt=job.attempts
        ):
            return
        self.store.finish(
            job.id, FAILED, reason, failure_reason=reason, error_type="WorkerDied", progress=progress,
            attempt=job.attempts,
        )  # fmt: skip

    def _finish_failed(self, job: JobRecord, reason: str, error_type: str) -> None:
        self.store.finish(job.id, FAILED, reason, failure_reason=reason, error_type=error_type)

    def recover(self) -> list[str]:
        """End the MLflow runs of the running jobs whose service is gone, then fail them (cancel those
        whose cancellation was asked, queue again those ``max_retries`` allows).

        A job of this host is recovered once its service and its child no longer live; one of
        another host once its heartbeat is older than ``stale_after_s``. This pool's own are untouched.
        """
        recovered = []
        now = time.time()
        host = token_host(self.worker)
        for job in self.store.running():
            if job.worker == self.worker or job.id in self._running:
                continue
            if job.worker is not None and token_host(job.worker) == host:
                gone = not token_alive(job.worker) and not (job.process and token_alive(job.process))
            else:
                gone = now - (job.heartbeat_at or job.started_at or now) > self.stale_after_s
            if not gone:
                continue
            step = job.progress.get("step")
            at = f" (in step {step!r})" if step else ""
            end_mlflow_runs(job, "KILLED" if job.cancel_requested else "FAILED")
            reason = f"its worker {job.worker} died while the job ran{at}"
            if job.cancel_requested:
                self.store.finish(
                    job.id,
                    CANCELLED,
                    f"cancelled while running{at}; {reason}",
                    progress=dict(job.progress),
                    attempt=job.attempts,
                )
            else:
                self._lost(job, reason, dict(job.progress))
            recovered.append(job.id)
        return recovered


def _run_in_child(*arguments: Any) -> None:
    """The job's process: ``child.run_job``, which its fork server has imported (this module does not
    import it, or the service would load MLflow and scikit-learn to start a job it never runs)."""
    from trainyard.service.child import run_job

    run_job(*arguments)


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
