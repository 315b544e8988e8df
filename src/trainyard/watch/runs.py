"""The MLflow run of a job the watcher started, found by the tags the watcher gave it.

The job's process is handed the tags through MLflow's own ``MLFLOW_RUN_CONTEXT`` (``launch.py``);
the watcher then asks the job's store for them: no output is parsed, and no job code knows of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainyard.config import load_layers, resolve
from trainyard.errors import TrainyardError
from trainyard.io.sources import without_credentials
from trainyard.io.tracking import MlflowService, check_server_reachable, quiet_mlflow

PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's: a trial's run is not the job's


@dataclass(frozen=True)
class Store:
    """Where a job tracks its runs: the tracking URI (a SQLite path made absolute) and the experiment."""

    tracking_uri: str
    experiment: str


def store_of(config: Path) -> Store | None:
    """The store the job of ``config`` writes to (its ``job.mlflow``, or the defaults); None when the
    config cannot say (it is invalid: its job fails before any run)."""
    from pydantic import ValidationError

    try:
        data = resolve(load_layers([str(config)], []))
        job = data.get("job")
        service = MlflowService.model_validate((job.get("mlflow") if isinstance(job, dict) else None) or {})
    except (TrainyardError, ValidationError):
        return None
    return Store(service.resolved_tracking_uri, service.experiment)


def load_mlflow() -> None:
    """Import MLflow now (seconds on a busy machine), so that finding a run later takes milliseconds."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow  # noqa: F401


def find_run(store: Store, tag: str, value: str, *, finished: bool = False) -> str | None:
    """The id of the newest run (not a trial's) in ``store`` tagged ``tag`` = ``value``, FINISHED if
    asked; None when there is none. An unreachable or unreadable store is a TrainyardError."""
    uri = store.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return None  # no store yet: no run (and no empty store made here)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    check_server_reachable(uri)
    from mlflow import MlflowClient

    quiet_mlflow()
    query = f"tags.`{tag}` = '{value}'" + (" and attributes.status = 'FINISHED'" if finished else "")
    try:
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(store.experiment)
        if experiment is None:
            return None
        runs = client.search_runs(
            [experiment.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=50
        )
    except Exception as error:
        raise TrainyardError(f"cannot look the run up in {without_credentials(uri)}: {error}") from None
    return next((run.info.run_id for run in runs if PARENT_RUN_TAG not in run.data.tags), None)
