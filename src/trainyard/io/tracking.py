"""The MLflow service: where runs and models are tracked (a local SQLite store by default)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr

from trainyard.core.component import Component
from trainyard.errors import ResourceNotFoundError, TrainyardError
from trainyard.io.logging import get_logger
from trainyard.io.sources import GIT_TAGS, source_tags, without_credentials
from trainyard.records import ERROR_TAG

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
CONFIG_ARTIFACT = "config.yaml"


class LoggedConfigError(ResourceNotFoundError):
    """A run has no config Trainyard can read back."""


@dataclass(frozen=True)
class RunRecord:
    """What a job records on its run before its steps: the resolved config, its params and tags.

    Plain data, made without MLflow: a job can hand it to the process that writes its run.
    ``source`` is the file the run comes from (the job's config file, or the script that made the
    job): the run's source name, and the git commit, branch and remote of its folder.
    """

    config_text: str
    params: dict[str, str]
    tags: dict[str, str]
    source: str | None = None


class MlflowService(Component):
    """Tracking and registry URIs, the experiment, and the run's name and tags."""

    tracking_uri: str = Field(
        DEFAULT_TRACKING_URI, description="MLflow tracking URI (default: local SQLite file)."
    )
    registry_uri: str | None = Field(None, description="Model registry URI (default: the tracking URI).")
    experiment: str = Field("trainyard", description="Experiment the run goes to (created if missing).")
    run_name: str | None = Field(None, description="Run name (default: MLflow picks one).")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags set on the run.")
    telemetry: bool = Field(False, description="Allow MLflow's usage telemetry (off unless turned on).")

    _experiment_id: str | None = PrivateAttr(None)

    def start(self) -> None:
        """Point MLflow at the stores and select the experiment."""
        if not self.telemetry:
            os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
        # Requirements are pinned explicitly: never let MLflow export or copy the caller's uv project.
        os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")
        os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
        import mlflow

        quiet_mlflow()
        check_server_reachable(self.tracking_uri)
        mlflow.set_tracking_uri(self.resolved_tracking_uri)
        mlflow.set_registry_uri(absolute_sqlite_uri(self.registry_uri or self.tracking_uri))
        _create_sqlite_store_once(self.resolved_tracking_uri)
        # Another worker may create it between MLflow's lookup and its insert: it exists then.
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            mlflow.set_experiment(self.experiment)
        # When it loses that race MLflow may not activate the experiment: do it by id, always.
        experiment = mlflow.get_experiment_by_name(self.experiment)
        if experiment is None:
            raise RuntimeError(f"experiment {self.experiment!r} could not be created")
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
        self._experiment_id = experiment.experiment_id

    def experiment_id(self) -> str:
        """The id of the job's experiment (after ``start()``)."""
        if self._experiment_id is None:
            raise RuntimeError("the MLflow service is not started")
        return self._experiment_id

    @property
    def resolved_tracking_uri(self) -> str:
        """The tracking URI with a relative SQLite path made absolute (MLflow caches stores by URI)."""
        return absolute_sqlite_uri(self.tracking_uri)

    def begin_run(
        self,
        record: RunRecord,
        run_id: str | None = None,
        created: Callable[[str], None] | None = None,
    ) -> str:
        """Start a run, or resume ``run_id``, and log the config and params of ``record``; its id.

        Through the client API, by run id (MLflow's active run is per thread). A resumed run keeps
        its params: a budget may have changed since. ``created`` is called with a new run's id at
        once, before anything is logged (to record it where a process killed next can find it).
        A failure ends the run FAILED, error recorded.
        """
        from mlflow import MlflowClient
        from mlflow.entities import Param, RunTag

        client = MlflowClient()
        tags = {**self.tags, **record.tags}
        params = record.params
        if new := run_id is None:
            # With the tags MLflow's own start_run adds (user, source), the given ones taking precedence.
            run = client.create_run(
                self.experiment_id(), run_name=self.run_name, tags=_with_context(tags, record.source)
            )
        else:
            run = client.get_run(run_id)
            client.update_run(run_id, status="RUNNING")
            if record.source is not None:  # like the config, they describe the latest run
                tags = {**source_tags(record.source), **tags}
            tags = {**_environment_tags(), **tags}  # as a new run has them (MLflow adds them to new ones)
            client.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])
            params = {key: value for key, value in params.items() if key not in run.data.params}
            # the error of an earlier attempt, and git tags a file outside a repository no longer has
            stale = [ERROR_TAG] + [key for key in run.data.tags if key.startswith(GIT_TAGS)]
            for key in stale:
                if key in run.data.tags and key not in tags:
                    client.delete_tag(run_id, key)
        run_id = run.info.run_id
        try:
            if new and created is not None:
                created(run_id)
            client.log_text(run_id, record.config_text, CONFIG_ARTIFACT)
            client.log_batch(run_id, params=[Param(key, value) for key, value in params.items()])
        except BaseException as error:
            import traceback

            record_error(
                run_id, f"{type(error).__name__}: {error}", "".join(traceback.format_exception(error))
            )
            client.set_terminated(run_id, "FAILED")
            raise
        get_logger().info("MLflow run %s (experiment %r)", run_id, self.experiment)
        return run_id

    def ui_command(self) -> str:
        """How to look at the runs: the server's address, or the command that opens the UI on the store."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return f"open {without_credentials(self.tracking_uri)}"
        return f"mlflow ui --backend-store-uri {self.resolved_tracking_uri}"


def _with_context(tags: dict[str, str], source: str | None) -> dict[str, str]:
    """``tags`` over MLflow's context tags, with the source and git tags of ``source`` when given.

    MLflow names the running script as the source and takes git from its folder: for a job run by
    ``trainyard run`` that is Trainyard's own executable (or its writer module, for a tuning job), not
    the user's project. The config file's folder is: its repository's commit is the run's code.
    """
    from mlflow.tracking.context.git_context import GitRunContext
    from mlflow.tracking.context.registry import resolve_tags

    if source is None:
        return resolve_tags(tags)
    # the running script's git is replaced below (MLflow takes classes here, whatever its hint says)
    context = resolve_tags(ignore=[GitRunContext])  # type: ignore[list-item]
    context = {key: value for key, value in context.items() if not key.startswith(GIT_TAGS)}
    return {**context, **source_tags(source), **tags}


def _environment_tags() -> dict[str, str]:
    """The tags of MLflow's ``MLFLOW_RUN_CONTEXT`` (JSON), which MLflow puts on the runs it creates
    (``trainyard watch`` hands a job its tags so)."""
    from mlflow.tracking.context.system_environment_context import SystemEnvironmentContext

    context = SystemEnvironmentContext()
    return context.tags() if context.in_context() else {}


def logged_config(run_id: str) -> dict[str, Any]:
    """The config a Trainyard run logged (its ``config.yaml`` artifact), as plain data.

    Raises LoggedConfigError when the run has none, or one that is not a YAML mapping. Parsed with
    libyaml's loader where it is installed (several times faster than the pure-Python one).
    """
    import mlflow
    import yaml

    try:
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/{CONFIG_ARTIFACT}")
    except Exception as error:  # MLflow's errors differ by artifact store
        raise LoggedConfigError(
            f"run {run_id} has no {CONFIG_ARTIFACT}: it was not made by a Trainyard job ({error})"
        ) from None
    try:
        config = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise LoggedConfigError(f"run {run_id}: its {CONFIG_ARTIFACT} is not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise LoggedConfigError(f"run {run_id}: its {CONFIG_ARTIFACT} holds no mapping")
    return config


SERVER_CHECK_SECONDS = 10.0


def check_server_reachable(uri: str, timeout: float = SERVER_CHECK_SECONDS) -> None:
    """Fail at once when nothing answers at the tracking server ``uri``.

    MLflow retries a request to a server that is down for minutes, with no word: a job would seem to
    hang. One request to the server's ``/health`` tells: any HTTP answer (even an error status,
    such as a proxy's 401) means a server is there, and MLflow's own requests, with their
    credentials and TLS settings, say the rest. So the probe sends no credentials and does not check
    certificates; only a refused connection, an unknown host or no answer in ``timeout`` fail.
    Only for ``http(s)://`` URIs.
    """
    import ssl
    import urllib.error
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    shown = without_credentials(uri)
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(shown.rstrip("/") + "/health", timeout=timeout, context=unverified):
            return
    except urllib.error.HTTPError:
        return  # a server answered
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, ssl.SSLError):
            return  # something speaks TLS there: MLflow's own settings decide
        raise TrainyardError(
            f"no MLflow tracking server answers at {shown} ({reason}); is it running, and is "
            "job.mlflow.tracking_uri right?"
        ) from None


def record_error(run_id: str, description: str, details: str) -> None:
    """Put an error on a run: a tag with ``description``, an artifact with ``details``."""
    from mlflow import MlflowClient

    try:
        client = MlflowClient()
        client.set_tag(run_id, ERROR_TAG, description[:5000])
        client.log_text(run_id, details, "error.txt")
    except Exception as logging_error:  # the original error matters more than this one
        get_logger().warning("could not record the error on the MLflow run: %s", logging_error)


def absolute_sqlite_uri(uri: str) -> str:
    """``sqlite:///relative.db`` -> ``sqlite:////abs/folder/relative.db``; other URIs unchanged."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.startswith(prefix + "/") or uri == prefix + ":memory:":
        return uri
    return prefix + str(Path(uri.removeprefix(prefix)).resolve())


def _create_sqlite_store_once(uri: str) -> None:
    """Create a new SQLite store under a file lock: workers started together must not all migrate it.

    MLflow builds a new store by running its schema migrations (about 1.3 s); the result is the same
    for every store of one MLflow version, so it is built once per machine and copied (0.04 s). The
    store is made in WAL mode: jobs that write it at once (the service's workers, parallel tuning
    workers, a resume beside a run) then never fail on a reader's lock. In SQLite's default journal
    a reader blocks the writers, and a read that turns into a write fails at once if another writer
    waits: 22 of 200 service jobs failed with "database is locked" when they ran 0.5 s each, two at a
    time, while the service was SIGKILLed and recovered theirs.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or Path(uri.removeprefix(prefix)).exists():
        return
    import fcntl

    from mlflow import MlflowClient

    path = Path(uri.removeprefix(prefix))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        template = None
        if not path.exists():
            template = store_template()
            if template is not None:
                partial = path.with_name(f".{path.name}.{os.getpid()}")
                shutil.copyfile(template, partial)
                _write_ahead_log(partial)
                os.replace(partial, path)
        MlflowClient(uri).search_experiments(max_results=1)  # migrates (no template) and adds Default
        if template is None:  # migrated in place (a copy of the template is in WAL mode already)
            _write_ahead_log(path)


def _write_ahead_log(path: Path) -> None:
    """Put the SQLite database at ``path`` in WAL mode (kept in the file: every later connection has it)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(path)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as error:  # in use in the default journal already: it keeps working so
        get_logger().debug("the MLflow store %s stays in its journal mode: %s", path, error)


def store_template() -> Path | None:
    """An empty, migrated SQLite store for this MLflow version (made on first use); None if it cannot be."""
    import fcntl

    import mlflow

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trainyard"
    template = cache / f"mlflow-{mlflow.__version__}-empty-store.db"
    if template.exists():
        return template
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / f"{template.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not template.exists():
                _build_template(template)
    except Exception as error:  # a read-only home, an MLflow without this internal: migrate in place
        get_logger().debug("no MLflow store template (%s): the store is migrated in place", error)
        return None
    return template


def _build_template(template: Path) -> None:
    """The tables after MLflow's migrations, without the Default experiment (its folder is per store)."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    partial = template.with_name(f".{template.name}.{os.getpid()}")
    engine = sqlalchemy.create_engine(f"sqlite:///{partial}")
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()
    os.replace(partial, template)


def quiet_mlflow() -> None:
    """Keep MLflow's informational chatter (table creation, registration notices) off the console."""
    import logging
    import warnings

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # a tqdm bar for every artifact read (params_from's best_params.json, say) is noise in a job's log
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Both warn about choices Trainyard makes on purpose (cloudpickle, explicit requirements).
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="mlflow")
