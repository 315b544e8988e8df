"""One job in its own process: forked from the warm parent, it runs the job and reports as it goes.

This module is what the pool's fork server preloads: the libraries every job needs (pandas,
scikit-learn, MLflow, Optuna and Trainyard's job kinds) are imported once there, and each child
starts with them loaded, and with nothing a previous job left behind (logging handlers, signal
handlers, environment, MLflow's active run) since every job is a fresh fork.

The child's messages to the service, over its pipe, are tuples:
``("step", title, state, seconds)``, ``("run", run_id)``, ``("trial", done, budget, best)`` and
last ``("end", status, message, error_type, metrics, version, run_id)``.
"""

from __future__ import annotations

import copy
import os
import signal
import sys
import threading
import traceback
from typing import Any

# Preloaded by the fork server: the heavy imports happen once, before any job.
import mlflow
import mlflow.models
import mlflow.pyfunc
import mlflow.sklearn
import mlflow.store.db.utils
import mlflow.store.model_registry.sqlalchemy_store
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
import optuna  # noqa: F401
import pandas  # noqa: F401
import sklearn.ensemble
import sklearn.linear_model  # noqa: F401

import trainyard.settings  # noqa: F401  (every job kind)
from trainyard.errors import TrainyardError
from trainyard.jobs.base import describe
from trainyard.records import SERVICE_JOB_TAG
from trainyard.runtime.signals import cancel_on_signals
from trainyard.service.submission import validate_job
from trainyard.settings import job_class

COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"


def run_job(job_id: str, document: dict[str, Any], log_path: str, conn: Any) -> None:
    """Run the job of ``document`` here, its output into ``log_path``, its news into ``conn``."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    lock = threading.Lock()

    def send(*message: Any) -> None:
        try:
            with lock:
                conn.send(message)
        except OSError:  # the service is gone: the job is being stopped, and nobody listens
            pass

    threading.Thread(target=_stop_when_service_gone, args=(conn,), daemon=True).start()
    seen: dict[str, Any] = {}
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
                    send("step", details["title"], details["state"], details.get("seconds"))
                elif event == "run":
                    seen["run_id"] = details["run_id"]
                    send("run", details["run_id"])
                elif event == "trial":
                    send("trial", details["done"], details["budget"], details["best"])

            job.observe(observe)
            with cancel_on_signals(job.cancellation), job:
                result = job.run()
        metrics, version, run_id = _outcome(result, seen.get("run_id"))
        send("end", COMPLETED, "completed", None, metrics, version, run_id)
    except KeyboardInterrupt as stopped:  # a cancellation (SIGTERM), or a time limit
        send("end", CANCELLED, str(stopped) or "cancelled", type(stopped).__name__, {}, None, None)
    except TrainyardError as error:
        send("end", FAILED, describe(error), type(error).__name__, {}, None, seen.get("run_id"))
    except BaseException as error:
        traceback.print_exc()
        send("end", FAILED, describe(error), type(error).__name__, {}, None, seen.get("run_id"))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _outcome(result: dict[str, Any], run_id: str | None) -> tuple[dict[str, float], str | None, str | None]:
    """The scores, the registered version and the run id a finished job's locals hold."""
    scores = result.get("scores")
    metrics = {str(k): float(v) for k, v in scores.items()} if isinstance(scores, dict) else {}
    version = getattr(result.get("version"), "version", None)
    report = result.get("report")
    parent = getattr(report, "parent_id", None)
    if run_id is None and parent:
        run_id = str(parent)  # a tuning job's parent run, opened by its writer process
    return metrics, None if version is None else str(version), run_id


def _stop_when_service_gone(conn: Any) -> None:
    """The service never writes to the child: the end of the pipe means it died. Stop the job as a
    SIGTERM would (its run ends KILLED), so that no orphan goes on working."""
    try:
        while True:
            conn.recv()
    except (EOFError, OSError):
        os.kill(os.getpid(), signal.SIGTERM)
