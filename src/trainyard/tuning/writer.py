"""The tuning job's MLflow writer: one interface, written to in this process or by a second one.

A ``RunWriter`` writes a study's MLflow side for one job: it opens the parent run, logs the data
lineage, writes a child run per finished trial, then logs the results and ends the parent run. Two
implementations: ``ProcessWriter`` (``writer_process.py``) hands all of it to a process that loads
MLflow on another core, so the job never loads it; ``InProcessWriter`` does it here.

``TrialMirror`` is what the job holds. It chooses the writer once, when the job starts (the process,
or this one when no process can start), and the job never depends on the process: when the process
writer is gone (``WriterGone``), the mirror fails over, in one place, to the in-process writer, which
carries on from where the study's storage and MLflow say the work is.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from trainyard.errors import TrainingJobError
from trainyard.io.logging import get_logger
from trainyard.records import WORKER_ATTR
from trainyard.tuning import plots
from trainyard.tuning.study_runs import StudyRuns

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from trainyard.tuning.plots import Importances
    from trainyard.tuning.study_runs import Lineage, StudyRuns, StudyRunSpec

_T = TypeVar("_T")
# The parameter importances the job computes for the writer's figure, or why it could not.
ImportancesOrReason = Callable[[], "Importances | str"]


class WriterGone(Exception):
    """The process writer stopped (or never answered): the in-process writer takes over."""


@dataclass
class MirrorReport:
    """What was written to MLflow, sent back by the writer when the job ends."""

    parent_id: str | None = None
    status: str | None = None  # the parent run's status as left: FINISHED, FAILED, KILLED or RUNNING
    written: int = 0  # child runs of this job's trials
    reconciled: int = 0  # child runs of trials that earlier runs left unwritten
    digests: dict[str, str] = field(default_factory=dict)  # of the lineage tables, by context
    messages: list[tuple[int, str]] = field(default_factory=list)  # the writer's log records (level, text)
    error: str | None = None  # the results could not be logged

    def count(self, trials: list[FrozenTrial], owner: str) -> None:
        """Count trials written by a reconciliation: this job's own, or left missing by earlier runs."""

        own = sum(trial.user_attrs.get(WORKER_ATTR) == owner for trial in trials)
        self.written += own
        self.reconciled += len(trials) - own


class RunWriter(abc.ABC):
    """Writes one job's share of a study's MLflow side.

    Lifecycle: made (the parent run opens, or starts to), then ``log_lineage`` once, ``write`` per
    finished trial, and one of ``finish`` (the results, then the run's end), ``end`` (a failure or a
    cancellation) or ``abandon`` (the job ended before it ran). Calls come one at a time (the mirror
    holds a lock). A ``ProcessWriter`` raises ``WriterGone`` from any of them once its process is gone.
    """

    parent_id: str | None = None  # once known

    @abc.abstractmethod
    def log_lineage(self, lineage: Lineage) -> None:
        """Log the tables the job read as inputs of the parent run."""

    @abc.abstractmethod
    def write(self, trial: FrozenTrial) -> None:
        """Have a finished trial written as a child run (a failure is logged: the next run repairs it)."""

    @abc.abstractmethod
    def finish(self, best: FrozenTrial, importances: ImportancesOrReason | None) -> MirrorReport:
        """Write what is missing, the results (``best``; the figure of ``importances`` when given) and
        the run's end; the report says what was written and any error logging the results."""

    @abc.abstractmethod
    def end(self, status: str, error: tuple[str, str]) -> str | None:
        """End the parent run with ``status`` and ``error`` (after the finished trials); its id, if any."""

    def abandon(self) -> None:  # noqa: B027 (optional: a writer that holds nothing has nothing to do)
        """The job ends before it ran: end what was begun (KILLED) and let go. Nothing by default."""


class InProcessWriter(RunWriter):
    """The writer in the job's process: MLflow opens on first use, and catches up with the study."""

    def __init__(self, spec: StudyRunSpec, study: optuna.Study, lineage: Lineage | None = None) -> None:
        self.spec = spec
        self.study = study
        self._lineage = lineage  # known already when this writer takes over from the process
        self._runs: StudyRuns | None = None
        self._report = MirrorReport()
        self._cannot_open = False  # opening MLflow failed: that is the job's failure, already said

    def log_lineage(self, lineage: Lineage) -> None:
        if self._runs is None:
            self._lineage = lineage
            self._opened()  # opening logs it
        else:
            self._report.digests = self._runs.log_lineage(lineage)

    def write(self, trial: FrozenTrial) -> None:
        runs = self._opened()
        try:
            self._report.written += runs.write(trial)
        except Exception as error:  # the study goes on; the next run's reconciliation writes it
            get_logger().warning("trial %s not written to MLflow: %s", trial.number, error)

    def finish(self, best: FrozenTrial, importances: ImportancesOrReason | None) -> MirrorReport:
        runs, report = self._opened(), self._report
        report.count(runs.catch_up(), self.spec.owner)
        report.status, report.error = runs.conclude(best.number)
        report.parent_id = self.parent_id
        return report

    def end(self, status: str, error: tuple[str, str]) -> str | None:
        if self._cannot_open:
            return None
        try:
            runs = self._opened()
            runs.catch_up()
            runs.end(status, error)
        except Exception as tracking_error:  # the job's own error matters more; the next run repairs
            get_logger().warning("the study's MLflow run could not be ended: %s", tracking_error)
        return self.parent_id

    def _opened(self) -> StudyRuns:
        """MLflow and the parent run, opened (with the lineage, and caught up) on first use."""
        if self._runs is None:
            started = time.perf_counter()
            runs = StudyRuns(self.spec, self.study)
            try:
                runs.open()
            except BaseException:
                self._cannot_open = True
                raise
            get_logger().info(
                "MLflow opened in the job (%.2f s): run %s", time.perf_counter() - started, runs.parent_id
            )
            self._runs = runs
            self.parent_id = runs.parent_id
            if self._lineage is not None:
                self._report.digests = runs.log_lineage(self._lineage)
            self._report.count(runs.catch_up(), self.spec.owner)
        return self._runs


class TrialMirror:
    """The job's side: choose the writer, send it what to record, and fail over if it stops."""

    def __init__(
        self,
        spec: StudyRunSpec,
        study: optuna.Study,
        preferred: Callable[[StudyRunSpec], RunWriter] | None = None,
    ) -> None:
        self.spec = spec
        self.study = study
        self.preferred = preferred  # the writer to try first (the process writer); else this process
        self.writer: RunWriter | None = None  # chosen by start()
        self._lock = threading.Lock()  # n_jobs threads end trials concurrently
        self._lineage: Lineage | None = None
        self._ended = False  # the parent run's end was asked for (finish, fail or abandon)

    @property
    def parent_id(self) -> str | None:
        """The study's parent run, once a writer named it."""
        return self.writer.parent_id if self.writer is not None else None

    def start(self) -> None:
        """Choose the writer, once: the preferred one (the process writer opens MLflow and the parent
        run while the job goes on), or this process's when it cannot start."""
        if self.preferred is not None:
            try:
                self.writer = self.preferred(self.spec)
            except OSError as error:
                get_logger().warning("no MLflow writer process (%s): the job writes to MLflow itself", error)
            except WriterGone:
                pass
        if self.writer is None:
            self.writer = InProcessWriter(self.spec, self.study)

    def log_lineage(self, lineage: Lineage) -> None:
        """Log the tables the job read as inputs of the parent run."""
        self._lineage = lineage
        self._call(lambda writer: writer.log_lineage(lineage))

    def on_trial_end(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback: have the finished trial written as a child run.

        Not once the parent run's end was asked for: a trial of another thread that ends after a
        cancellation would otherwise reopen the ended run (RUNNING again, its error tag gone). The
        study has the trial; the next run's reconciliation writes its child run.
        """
        with self._lock:  # checked under the lock: the end may be asked for while this thread waits
            if not self._ended:
                self._with_writer(lambda writer: writer.write(trial))

    def finish(self, best: FrozenTrial) -> MirrorReport:
        """Wait until every trial, the results (``best``) and the parent run's end are written.

        The job computes the parameter importances (it has scikit-learn loaded; the process writer
        never imports it) while the writer logs the rest.
        """
        self._ended = True
        importances = self._importances if self.spec.plots else None
        report = self._call(lambda writer: writer.finish(best, importances))
        if report.error is not None:
            raise TrainingJobError(f"logging the study's results to MLflow failed: {report.error}")
        return report

    def fail(self, status: str, error: tuple[str, str]) -> str | None:
        """End the parent run with ``status`` and ``error`` (after the finished trials); its id, if any.

        Nothing more when its end was already asked for (the failure came while the results were being
        logged).
        """
        if self._ended:
            return self.parent_id
        self._ended = True
        return self._call(lambda writer: writer.end(status, error))

    def abandon(self) -> None:
        """The job ends before it ran: have the writer end what it began (KILLED), then stop it."""
        self._ended = True
        if self.writer is not None:
            self.writer.abandon()

    def _call(self, action: Callable[[RunWriter], _T]) -> _T:
        with self._lock:
            return self._with_writer(action)

    def _with_writer(self, action: Callable[[RunWriter], _T]) -> _T:
        """Do ``action`` with the writer; once the process writer is gone, with the job's own (the one
        place the job fails over). Call with the lock held."""
        assert self.writer is not None, "start() chooses the writer"
        try:
            return action(self.writer)
        except WriterGone:
            self.writer = InProcessWriter(self.spec, self.study, self._lineage)
            return action(self.writer)

    def _importances(self) -> Importances | str:
        """The parameter importances for the writer's figure, or why there are none."""

        try:
            return plots.importances(self.study)
        except Exception as error:  # e.g. fewer than two completed trials: the figure is skipped
            return str(error) or type(error).__name__

    def __enter__(self) -> TrialMirror:
        return self

    def __exit__(self, *exc: object) -> None:
        """Never leave a writer behind (run() asks for the run's end before it gets here)."""
        if not self._ended:
            self.abandon()
