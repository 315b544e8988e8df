"""The base of every job: services (logger, alerts, MLflow), a tracked run, and timed steps."""

from __future__ import annotations

import abc
import hashlib
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, PrivateAttr

from trainyard.core.component import Component
from trainyard.errors import DataAccessError, TrainyardError
from trainyard.io.alerts import AlertKind, ConsoleAlert, notify_all
from trainyard.io.console import console
from trainyard.io.logging import LoggerService, get_logger
from trainyard.io.sources import without_credentials
from trainyard.io.tracking import MlflowService, RunRecord, record_error
from trainyard.records import CONFIG_FILES_TAG, CONFIG_HASH_TAG, KIND_TAG
from trainyard.runtime.cancellation import Cancellation

if TYPE_CHECKING:
    import pandas as pd

    from trainyard.io.readers import Reader

Locals = dict[str, Any]
# Told what a job does as it goes: ("step", {"title", "state": started|ended|failed, "seconds"}),
# ("run", {"run_id"}) once its MLflow run exists, ("trial", {"done", "budget", "best"}) in a search.
Observer = Callable[[str, dict[str, Any]], None]
# Not logged as params: where the job runs (services), and data rules keyed by column names that
# MLflow may refuse as param keys. All of it is in the logged config.yaml.
_UNLOGGED_FIELDS = {"logger", "alerts", "mlflow", "schema"}
_PARAM_KEY_UNSAFE = re.compile(r"[^\w\-. /]")


def _default_alerts() -> list[AlertKind]:
    return [ConsoleAlert()]


class Step:
    """What a running step reports: short notes shown beside its name and duration."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        """Add a detail (shape, count, URI) to the step's log line."""
        self.notes.append(text)


class Job(Component, abc.ABC):
    """A job is a context manager (services on, then off) whose ``run()`` tells its steps."""

    KIND: str
    logger: LoggerService = Field(default_factory=LoggerService, description="Logging service.")
    alerts: list[AlertKind] = Field(
        default_factory=_default_alerts,
        description="Where success and failure are announced.",
    )
    mlflow: MlflowService = Field(default_factory=MlflowService, description="MLflow tracking service.")

    # The one request to stop: set by whoever runs the job (the CLI's signal handlers, a service, a
    # time limit); checked before every step.
    _cancellation: Cancellation = PrivateAttr(default_factory=Cancellation)
    _config_files: tuple[str, ...] = PrivateAttr(())
    _observer: Observer | None = PrivateAttr(None)

    def observe(self, observer: Observer | None) -> None:
        """Have ``observer`` told of each step, the run's id and each trial (a service's progress);
        it runs in the job's thread and must be quick; an error it raises is logged, not raised."""
        self._observer = observer

    @property
    def observed(self) -> bool:
        """Whether an observer listens (what only it needs may then be computed)."""
        return self._observer is not None

    def notify(self, event: str, **details: Any) -> None:
        """Tell the observer, if any, that ``event`` happened (see ``Observer``)."""
        if self._observer is not None:
            try:
                self._observer(event, details)
            except Exception as error:
                get_logger().warning("the job's observer failed on %s: %s", event, error)

    def use_config_files(self, paths: Iterable[str | Path]) -> None:
        """Name the files the job's config was merged from: the run's source is the last one (the
        job's own, after shared ones), and the git commit of its folder is the run's code."""
        self._config_files = tuple(str(Path(path).resolve()) for path in paths)

    def __enter__(self) -> Job:
        self.logger.start()
        try:
            self.prepare()
        except BaseException as error:  # the tuning job opens its study here: no run to end yet
            self.announce_failure(error, "before its MLflow run started")
            self.__exit__(type(error), error, None)
            raise
        try:
            self.start_tracking()
        except BaseException as error:  # Ctrl-C while MLflow loads too: the logger must stop
            store = without_credentials(self.mlflow.tracking_uri)
            failure: BaseException = (
                TrainyardError(f"cannot open the MLflow store {store}: {error}")
                if isinstance(error, Exception)
                else error
            )
            self.announce_failure(failure, "before its MLflow run started")
            self.__exit__(type(error), error, None)
            if failure is error:
                raise
            raise failure from error
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.stop()

    @property
    def cancellation(self) -> Cancellation:
        """The job's request to stop: ``cancel()`` it from any thread, and the job stops before its next
        step (a tuning job: after its running trials, which are recorded)."""
        return self._cancellation

    def _cancelled_instead(self, error: BaseException) -> KeyboardInterrupt | None:
        """The cancellation to raise in place of ``error``, when a signal asked for one that ``error`` hid.

        Compiled library code can swallow what a signal handler raises and fail with an error of its
        own: about 1 in 75 signals sent during a scikit-learn HistGradientBoosting fit came out as a
        ValueError about a "PEP 3118 buffer format string". The steps turn such an error back into
        the cancellation, so the run ends KILLED, not FAILED with a puzzling message.
        """
        asked = self._cancellation.reason
        if asked is None or isinstance(error, KeyboardInterrupt):
            return None
        return type(asked)(*asked.args)

    @classmethod
    def started_early(cls) -> AbstractContextManager[None]:
        """What this kind wants started before its config is validated; the CLI holds it open while
        it validates and runs the job (validating imports the model's library: about a second to use).
        Nothing by default."""
        return nullcontext()

    def prepare(self) -> None:
        """What a job can do before MLflow is loaded (about a second), while nothing needs it."""

    def start_tracking(self) -> None:
        """Open MLflow for the job's run (a job that hands its MLflow work to another process does not)."""
        self.mlflow.start()

    def preview(self) -> str | None:
        """What ``run`` would do, computed without changing anything, for ``--dry-run`` to print after
        the config (None: the config says it all). Called inside the job's context (MLflow open)."""
        return None

    @abc.abstractmethod
    def run(self) -> Locals:
        """Run the job's steps; return its local variables."""

    # -- helpers for run() ------------------------------------------------------------------------

    def resolved_config(self) -> dict[str, Any]:
        """The complete validated config of this job (secrets masked), as plain data."""
        return {"job": self.model_dump(mode="json", by_alias=True)}

    def run_record(self, tags: dict[str, str] | None = None) -> RunRecord:
        """The config (text and hash tag), params and tags this job's run records, made without MLflow."""
        import yaml

        config = self.resolved_config()
        text = yaml.safe_dump(config, sort_keys=False)
        digest = hashlib.sha256(text.encode()).hexdigest()  # `sha256sum config.yaml` gives the same
        params = _flatten({k: v for k, v in config["job"].items() if k not in _UNLOGGED_FIELDS})
        tags = {**(tags or {}), KIND_TAG: self.KIND, CONFIG_HASH_TAG: digest}
        if self._config_files:
            tags[CONFIG_FILES_TAG] = ", ".join(self._config_files)
        # Without files, the script that made the job, as MLflow would name it (not another process's).
        source = self._config_files[-1] if self._config_files else (sys.argv[0] or None)
        return RunRecord(text, params, tags, source)

    @contextmanager
    def tracked_run(
        self,
        tags: dict[str, str] | None = None,
        run_id: str | None = None,
        system_metrics: float | None = None,
    ) -> Iterator[Any]:
        """An MLflow run that ends FINISHED, FAILED (error recorded) or KILLED; never left RUNNING.

        ``run_id``: reopen that run (a resumed training) rather than start one. ``system_metrics``:
        MLflow samples CPU, memory, disk and network every that many seconds into the run (``system/``
        metrics; a reopened run continues their steps), until the run ends."""
        import mlflow

        try:
            run_id = self.mlflow.begin_run(
                self.run_record(tags), run_id
            )  # ended FAILED, error recorded, if it fails
        except BaseException as error:
            self.announce_failure(error, "the MLflow run could not start")
            raise
        # the active run of this thread, for the job's steps
        with _system_metrics_interval(system_metrics):
            run = mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics is not None)
        self.notify("run", run_id=run_id)
        status = "FAILED"
        try:
            yield run
            status = "FINISHED"
        except BaseException as raised:
            with self._cancellation.shielded():  # a signal now must not leave the run RUNNING
                if isinstance(raised, KeyboardInterrupt):
                    _release_interrupted_transactions()
                ending = self._cancelled_instead(raised) or raised
                status = ending_status(ending)
                record_error(run_id, describe(ending), "".join(traceback.format_exception(raised)))
                self.announce_failure(ending, f"run {run.info.run_id}")
            if ending is not raised:
                raise ending from raised
            raise
        finally:
            with self._cancellation.shielded():
                try:
                    mlflow.end_run(status)
                except Exception as error:
                    if status == "FINISHED":
                        raise
                    # the job's own ending matters more; a service's recovery ends the run later
                    get_logger().warning("the MLflow run %s could not be ended %s: %s", run_id, status, error)

    def announce_failure(self, error: BaseException, where: str) -> None:
        """Tell every alert destination that the job failed (or was cancelled), and why."""
        verb = "was cancelled" if isinstance(error, KeyboardInterrupt) else "failed"
        notify_all(self.alerts, f"Trainyard {self.KIND} job {verb}", f"{where}: {describe(error)}")

    @contextmanager
    def step(self, title: str, spinner: bool = True) -> Iterator[Step]:
        """Time a step, show it while it runs, and log it with its notes when it ends.

        ``spinner=False`` for a step that shows its own live display (a progress bar).
        """
        step = Step(title)
        start = time.perf_counter()
        status = console.status(f"{title}...") if console.is_terminal and spinner else nullcontext()
        try:
            self._cancellation.check()
            self.notify("step", title=title, state="started")
            with status:
                yield step
        except BaseException as raised:
            ending = self._cancelled_instead(raised) or raised
            verb = "stopped" if isinstance(ending, KeyboardInterrupt) else "failed"
            seconds = time.perf_counter() - start
            get_logger().error("✗ %s %s after %.2f s", title, verb, seconds)
            self.notify("step", title=title, state="failed", seconds=seconds)
            if ending is not raised:
                raise ending from raised
            raise
        details = f" — {'; '.join(step.notes)}" if step.notes else ""
        get_logger().info("✓ %s (%.2f s)%s", title, time.perf_counter() - start, details)
        self.notify("step", title=title, state="ended", seconds=time.perf_counter() - start)

    def read(self, reader: Reader, field: str) -> pd.DataFrame:
        """Read with ``reader``; a failure names the config field it came from."""
        try:
            return reader.read()
        except DataAccessError as error:
            raise DataAccessError(f"job.{field}: {error}") from error

    def report(self, title: str, summary: dict[str, str]) -> None:
        """Print the closing summary and send it to every alert destination."""
        from rich.table import Table

        table = Table(title=title, show_header=False, title_justify="left")
        for key, value in summary.items():
            table.add_row(key, value)
        console.print(table)
        notify_all(self.alerts, title, "\n".join(f"{key}: {value}" for key, value in summary.items()))


def _release_interrupted_transactions() -> None:
    """Let go of what an interrupted MLflow call left open. A signal raised inside a store write
    skips MLflow's rollback (it catches Exception, not KeyboardInterrupt): its session, unreferenced,
    keeps the SQLite write lock until it is collected, and ending the run from another connection of
    this process then waits for it and fails ("database is locked"). Collecting rolls it back."""
    import gc

    gc.collect()


_INTERVAL_VARIABLE = "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"


@contextmanager
def _system_metrics_interval(seconds: float | None) -> Iterator[None]:
    """MLflow's system metrics monitor reads its interval from the environment when a run starts:
    set it for that moment only (another job of the process, a service's worker, has its own)."""
    if seconds is None:
        yield
        return
    previous = os.environ.get(_INTERVAL_VARIABLE)
    os.environ[_INTERVAL_VARIABLE] = str(seconds)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_INTERVAL_VARIABLE, None)
        else:
            os.environ[_INTERVAL_VARIABLE] = previous


def ending_status(error: BaseException) -> str:
    """The MLflow status of a run that ``error`` ended: KILLED when cancelled, FAILED otherwise."""
    return "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"


def describe(error: BaseException) -> str:
    """The one-line account of an error that users see (and that alerts send)."""
    if isinstance(error, KeyboardInterrupt):
        return str(error) or "interrupted (Ctrl-C)"
    return str(error) if isinstance(error, TrainyardError) else f"{type(error).__name__}: {error}"


def _flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists become strings; values capped for MLflow."""
    if isinstance(data, dict):
        flat: dict[str, str] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {_PARAM_KEY_UNSAFE.sub("_", prefix.rstrip(".")): str(data)[:500]}
