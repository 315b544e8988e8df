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
from trainyard.errors import TrainyardError
from trainyard.jobs.base import describe
from trainyard.records import SERVICE_JOB_TAG
from trainyard.runtime.signals import cancel_on_signals
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


def run_job(job_id: str, document: dict[str, Any], log_path: str, conn: Any) -> None:
    """Run the job of ``document`` here, its output into ``log_path``, its news into ``conn``."""
    gc.set_threshold(50_000, 20, 20)  # as `trainyard run`: the ML stack's objects are long-lived
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
