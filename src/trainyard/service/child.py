"""One job in its own process: forked from the warm parent, it runs the job and reports as it goes.

This module is what the pool's fork server preloads: the libraries every job needs (pandas,
scikit-learn, MLflow, Optuna and Trainyard's job kinds) are imported once there, and each child
starts with them loaded, and with nothing a previous job left behind (logging handlers, signal
handlers, environment, MLflow's active run) since every job is a fresh fork.

The child's messages to the service, over its pipe, are tuples:
``("step", title, state, seconds)``, ``("run", run_id)``, ``("trial", done, budget, best)`` and
last ``("end", status, message, error_type, metrics, version, run_id)``.

A job that completed or failed on its own is also recorded in the store by the child itself, before
it says so: a service killed between the job's end and its message would otherwise lose the outcome
(and its recovery would fail, or run again, a job whose MLflow run had finished). That write names
the attempt it ran, so a job recovered and claimed anew meanwhile is left to its new attempt.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import os
import signal
import sys
import threading
import traceback
from typing import Any

# OpenMP's threads spin while they wait; where jobs, the service and other programs share the cores
# they spin through their neighbours' time slices (the quickstart's fit: 9 s instead of 0.5 s on 2
# busy cores). Jobs here wait asleep, unless the environment says otherwise; set before OpenMP loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Preloaded by the fork server: the heavy imports happen once, before any job.
import mlflow
import mlflow.models
import mlflow.pyfunc
import mlflow.sklearn
import mlflow.store.db.utils
import mlflow.store.model_registry.sqlalchemy_store
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
import optuna  # noqa: F401
import pandas
import sklearn.ensemble
import sklearn.linear_model  # noqa: F401

import trainyard.settings  # noqa: F401  (every job kind)
from trainyard.errors import JobCancelledError, TrainyardError
from trainyard.jobs.base import describe
from trainyard.records import SERVICE_JOB_TAG
from trainyard.runtime.signals import cancel_on_signals
from trainyard.runtime.threads import share_cores_among_jobs
from trainyard.service.progress import advance, completed
from trainyard.service.store import Store
from trainyard.service.submission import validate_job
from trainyard.settings import job_class

COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"


def _warm() -> None:
    """Do once, in the fork server, what every job's first use would otherwise pay in its child (about
    3 s of the quickstart's 5 s, profiled): pandera's import and backends (a schema check of one row),
    MLflow's tracing modules (``set_tracking_uri`` imports them) and GitPython (its run context), and
    the map of installed distributions that MLflow reads to check a logged model's requirements (a
    scan of every installed package's metadata, 2 s). Each is best effort: a job would redo it."""
    import importlib

    for module in ("mlflow.tracing.provider", "mlflow.tracing.processor.base_mlflow", "git"):
        with contextlib.suppress(Exception):  # not installed, or no git executable: jobs do without
            importlib.import_module(module)
    with contextlib.suppress(Exception):
        import pandera.pandas as pa

        pa.DataFrameSchema({"x": pa.Column(float, pa.Check.ge(0))}).validate(pandas.DataFrame({"x": [1.0]}))
    with contextlib.suppress(Exception):  # MLflow's private helper moved: the first model logged builds it
        from mlflow.utils import requirements_utils

        requirements_utils._init_modules_to_packages_map()


_warm()
# What the preload built lives as long as the fork server: children's collections skip it (and do not
# touch its pages, which stay shared), as `trainyard run` freezes before its exit.
gc.freeze()


def run_job(
    job_id: str,
    document: dict[str, Any],
    log_path: str,
    conn: Any,
    store_url: str | None = None,
    attempt: int | None = None,
    jobs_at_once: int = 1,
) -> None:
    """Run the job of ``document`` here, its output into ``log_path``, its news into ``conn``; with
    ``store_url``, its own end (completed, or failed by its error) into the store, for ``attempt``.
    ``jobs_at_once``: the service's workers, among which the cores are shared out."""
    share_cores_among_jobs(jobs_at_once)
    gc.set_threshold(50_000, 20, 20)  # as `trainyard run`: the ML stack's objects are long-lived
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Outside the job's own handler (before it, and after: cancel_on_signals puts this one back) a
    # SIGTERM stops the job as an exception, never by killing the process: its end is still recorded.
    signal.signal(signal.SIGTERM, _raise_stop)
    lock = threading.Lock()

    def send(*message: Any) -> None:
        try:
            with lock:
                conn.send(message)
        except OSError:  # the service is gone: the job is being stopped, and nobody listens
            pass

    threading.Thread(target=_stop_when_service_gone, args=(conn,), daemon=True).start()
    seen: dict[str, Any] = {}
    progress: dict[str, Any] = {}
    job: Any = None
    try:
        data = copy.deepcopy(document)
        mlflow_section = data["job"].setdefault("mlflow", {})
        mlflow_section["tags"] = {**(mlflow_section.get("tags") or {}), SERVICE_JOB_TAG: job_id}
        kind = job_class(data["job"].get("KIND"))
        assert kind is not None  # validated when submitted
        with kind.started_early():
            job = validate_job(data)

            def observe(event: str, details: dict[str, Any]) -> None:
                if event == "step":
                    message: tuple[Any, ...] = (
                        "step",
                        details["title"],
                        details["state"],
                        details.get("seconds"),
                    )
                elif event == "run":
                    seen["run_id"] = details["run_id"]
                    message = ("run", details["run_id"])
                elif event == "trial":
                    message = ("trial", details["done"], details["budget"], details["best"])
                else:
                    return
                with lock:  # trials end in n_jobs threads
                    advance(progress, message)
                send(*message)

            job.observe(observe)
            with cancel_on_signals(job.cancellation), job:
                result = job.run()
        metrics, version, run_id = _outcome(result, seen.get("run_id"))
        ended: tuple[Any, ...] = ("end", COMPLETED, "completed", None, metrics, version, run_id)
    except KeyboardInterrupt as stopped:  # a cancellation (SIGTERM), or a time limit: the service's call
        ended = ("end", CANCELLED, str(stopped) or "cancelled", type(stopped).__name__, {}, None, None)
    except TrainyardError as error:
        ended = ("end", FAILED, describe(error), type(error).__name__, {}, None, seen.get("run_id"))
    except BaseException as error:
        traceback.print_exc()
        ended = ("end", FAILED, describe(error), type(error).__name__, {}, None, seen.get("run_id"))
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # nothing cuts the record short (SIGKILL still does)
    if ended[1] == CANCELLED and job is not None and seen.get("run_id"):
        ended = _finished_anyway(job, str(seen["run_id"])) or ended
    try:
        if store_url is not None and attempt is not None and ended[1] != CANCELLED:
            _record_end(Store(store_url, migrate_schema=False), job_id, attempt, ended, progress)
        send(*ended)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _raise_stop(signum: int, frame: object) -> None:
    raise JobCancelledError("the job was terminated (SIGTERM)")


def _finished_anyway(job: Any, run_id: str) -> tuple[Any, ...] | None:
    """The end of a job stopped after its MLflow run had FINISHED (a stop that came as the job
    ended): completed, with the run's scores; None if the run did not finish. MLflow has the job's
    result: recording it cancelled would run it again on a retry."""
    try:
        from mlflow import MlflowClient

        run = MlflowClient(job.mlflow.resolved_tracking_uri).get_run(run_id)
    except Exception as error:
        print(f"the job's run {run_id} could not be read: {error}", file=sys.stderr)
        return None
    if run.info.status != "FINISHED":
        return None
    names = [metric.name for metric in getattr(job, "metrics", None) or []]
    metrics = {name: float(run.data.metrics[name]) for name in names if name in run.data.metrics}
    print(f"stopped after its MLflow run {run_id} had finished: the job completed", file=sys.stderr)
    return ("end", COMPLETED, "completed", None, metrics, None, run_id)


def _record_end(
    store: Store, job_id: str, attempt: int, ended: tuple[Any, ...], progress: dict[str, Any]
) -> None:
    """Record the job's end in the store (the service's own record of it is then a no-op)."""
    _, status, message, error_type, metrics, version, run_id = ended
    try:
        if status == COMPLETED:
            store.finish(
                job_id, COMPLETED, "completed", attempt=attempt, progress=completed(progress),
                metrics=metrics, model_version=version, run_id=run_id,
            )  # fmt: skip
        else:
            store.finish(
                job_id, FAILED, message, failure_reason=message, error_type=error_type, attempt=attempt,
                progress=progress, run_id=run_id,
            )  # fmt: skip
    except Exception as error:  # the service records it from the message instead
        print(f"the job's end could not be recorded in the store: {error}", file=sys.stderr)
    finally:
        store.close()


def _outcome(result: dict[str, Any], run_id: str | None) -> tuple[dict[str, float], str | None, str | None]:
    """The scores, the registered version and the run id a finished job's locals hold."""
    scores = result.get("scores")
    metrics = {str(k): float(v) for k, v in scores.items()} if isinstance(scores, dict) else {}
    version = getattr(result.get("version"), "version", None)
    report = result.get("report")
    parent = getattr(report, "parent_id", None)
    if parent:
        run_id = str(parent)  # a tuning job's parent run, as its writer reported it at the end
    return metrics, None if version is None else str(version), run_id


def _stop_when_service_gone(conn: Any) -> None:
    """The service never writes to the child: the end of the pipe means it died. Stop the job as a
    SIGTERM would (its run ends KILLED), so that no orphan goes on working."""
    try:
        while True:
            conn.recv()
    except (EOFError, OSError):
        os.kill(os.getpid(), signal.SIGTERM)
