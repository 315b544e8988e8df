"""The process writer: a second process that does all of the tuning job's MLflow work.

Loading MLflow and opening its store cost the job about 1.5 s before its first trial, and a child run
about 20 ms of Python (SQLAlchemy) per trial, which a thread would take from the search through the
GIL. So the CLI starts this process first thing (``prestarted``), and it loads MLflow on the other
core while the job validates its config, reads its data and searches: it opens the store and the
study's parent run (config, params), logs the data lineage, writes a child run per finished trial (the
job sends each trial's id; the writer reads the trial from the study's storage, the durable record),
then logs the results and ends the parent run with the job's status. The job waits only for that
last part. On Linux the writer dies with the job, so it cannot race the next run's reconciliation.

The job and the writer speak in the typed messages below, pickled through a pipe; the writer answers
once, with a ``MirrorReport``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import IO, TYPE_CHECKING, Any

from trainyard.errors import JobCancelledError
from trainyard.io.logging import get_logger
from trainyard.runtime.processes import parent_death_tie
from trainyard.tuning.plots import figures
from trainyard.tuning.study_runs import StudyRuns
from trainyard.tuning.writer import ImportancesOrReason, MirrorReport, RunWriter, WriterGone

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from trainyard.tuning.plots import Importances
    from trainyard.tuning.study_runs import Lineage, StudyRuns, StudyRunSpec


WRITER_COMMAND = [sys.executable, "-m", "trainyard.tuning.writer_process"]  # + the job's pid
CANNOT_OPEN = 2  # the writer's exit code when MLflow (the store, the parent run or the lineage) fails
WAIT_NOTICE_SECONDS = 15.0  # how often the job says it still waits for the writer's report
_prestarted: list[subprocess.Popen[bytes]] = []  # a writer started before the job's config was validated


# -- the messages, in the order a job sends them ---------------------------------------------------


@dataclass(frozen=True)
class Open:
    """Open the store and the study's parent run (always the first message)."""

    spec: StudyRunSpec


@dataclass(frozen=True)
class LogLineage:
    """Log the tables the job read as inputs of the parent run."""

    lineage: Lineage


@dataclass(frozen=True)
class WriteTrial:
    """Write the child run of a finished trial, read from the study's storage by its id."""

    trial_id: int


@dataclass(frozen=True)
class Finish:
    """Log the results of the best trial and end the parent run; ``ParamImportances`` may follow."""

    best_number: int


@dataclass(frozen=True)
class ParamImportances:
    """The parameter importances the job computed for the figure, or why it has none (``reason``)."""

    values: Importances | None = None
    reason: str | None = None


@dataclass(frozen=True)
class End:
    """End the parent run with ``status`` and ``error`` (its description and details)."""

    status: str
    error: tuple[str, str]


Message = Open | LogLineage | WriteTrial | Finish | ParamImportances | End


# -- the job's side --------------------------------------------------------------------------------


@contextlib.contextmanager
def prestarted(wanted: bool = True) -> Iterator[None]:
    """Start a writer before the job exists, so that it loads MLflow while the config is validated.

    Validating a config imports the model's library (about a second for scikit-learn); the writer
    then gets its first message that much sooner. The tuning job made inside the block takes it; one
    nobody took (the config was invalid) is stopped when the block ends.
    """
    if wanted and not _prestarted:
        with contextlib.suppress(OSError):
            _prestarted.append(_spawn())
    try:
        yield
    finally:
        while _prestarted:
            _reap(_prestarted.pop(), kill=True)


def _spawn() -> subprocess.Popen[bytes]:
    """The writer, in a session of its own: signals sent to the job's terminal or process group
    (Ctrl-C, a scheduler's SIGTERM) are the job's to handle; it dies with the job all the same."""
    return subprocess.Popen(
        [*WRITER_COMMAND, str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )


def _reap(process: subprocess.Popen[bytes], kill: bool) -> None:
    """Wait for the writer to exit (kill it first if asked) and close its pipes."""
    if kill and process.poll() is None:
        process.kill()
    process.wait()
    for pipe in (process.stdin, process.stdout):
        with contextlib.suppress(OSError):
            if pipe is not None:
                pipe.close()


class ProcessWriter(RunWriter):
    """The job's end of the pipe. Made: the writer (prestarted, or spawned now: OSError if it cannot
    be) is asked to open the parent run. Every call raises ``WriterGone`` once the process is gone."""

    def __init__(self, spec: StudyRunSpec) -> None:
        self.process: subprocess.Popen[bytes] | None = _prestarted.pop() if _prestarted else _spawn()
        self._interrupted = False  # a first interrupt came while the writer ends the run
        self._send(Open(spec))

    def log_lineage(self, lineage: Lineage) -> None:
        self._send(LogLineage(lineage))

    def write(self, trial: FrozenTrial) -> None:
        self._send(WriteTrial(trial._trial_id))

    def finish(self, best: FrozenTrial, importances: ImportancesOrReason | None) -> MirrorReport:
        """The job computes the importances (the writer never imports scikit-learn) while the writer
        logs the rest, and sends them after ``Finish``."""
        return self._exchange(Finish(best.number), then=partial(self._importances, importances))

    def end(self, status: str, error: tuple[str, str]) -> str | None:
        return self._exchange(End(status, error)).parent_id

    def abandon(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert process.stdin is not None
            pickle.dump(End("KILLED", ("the job ended before it ran", "")), process.stdin)
            process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
        _reap(process, kill=True)

    def _send(self, message: Message) -> None:
        """Send ``message`` to the writer; WriterGone when it is gone."""
        process = self.process
        if process is None or process.stdin is None:
            raise WriterGone
        try:
            pickle.dump(message, process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            process.stdin.flush()
        except (OSError, ValueError):
            self._gone()
            raise WriterGone from None

    def _importances(self, importances: ImportancesOrReason | None) -> ParamImportances | None:
        """What follows ``Finish``: the importances, or why there are none; nothing without plots.

        A first Ctrl-C or SIGTERM here is the first one while the writer ends the run: it is only
        announced (the figure is skipped), and the next one stops both.
        """

        if importances is None:
            return None
        try:
            values = importances()
        except (KeyboardInterrupt, JobCancelledError):
            _announce_wait()
            self._interrupted = True
            return ParamImportances(reason="interrupted")
        return ParamImportances(reason=values) if isinstance(values, str) else ParamImportances(values)

    def _exchange(self, message: Message, then: Callable[[], Message | None] | None = None) -> MirrorReport:
        """Send the last message (and what ``then`` makes) and wait for the report; WriterGone when
        the writer is gone before it answers.

        A first Ctrl-C or SIGTERM while the writer ends the run only says so; a second one stops the
        writer and the job at once (the next run repairs the parent run).
        """
        self._send(message)
        process = self.process
        assert process is not None and process.stdin is not None and process.stdout is not None
        follow_up = then() if then is not None else None
        if follow_up is not None:  # best effort: a writer done without it has its report in the pipe
            with contextlib.suppress(OSError, ValueError):
                pickle.dump(follow_up, process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                process.stdin.flush()
        report, received = None, False
        try:
            with contextlib.suppress(OSError):
                process.stdin.close()
            report = _await_report(process.stdout, announced=self._interrupted)
            received = True
        finally:
            self.process = None
            _reap(process, kill=not received)
        if not isinstance(report, MirrorReport):
            _stopped(process.returncode)
            raise WriterGone
        self.parent_id = report.parent_id
        for level, text in report.messages:
            get_logger().log(level, "%s", text)
        return report

    def _gone(self) -> None:
        """The writer stopped: reap it (its token is dead for the reconciliation that follows)."""
        process, self.process = self.process, None
        if process is not None:
            _reap(process, kill=False)
            _stopped(process.returncode)


def _await_report(replies: IO[bytes], announced: bool = False) -> Any:
    """The writer's report; a first interruption while waiting is only announced (``announced``: one
    was already)."""

    if not announced:
        try:
            _wait_for_answer(replies)
            return pickle.load(replies)
        except (KeyboardInterrupt, JobCancelledError):
            _announce_wait()
        except Exception:  # it stopped before answering: the job does the rest
            return None
    try:
        return pickle.load(replies)
    except (KeyboardInterrupt, JobCancelledError):
        raise
    except Exception:
        return None


def _stopped(code: int | None) -> None:
    """Say that the writer stopped; the job now does the MLflow work itself."""
    if code == CANNOT_OPEN:  # the job meets the same error opening MLflow, and reports it as its own
        get_logger().debug("the MLflow writer could not open MLflow: the job tries itself")
        return
    get_logger().warning(
        "the MLflow writer process stopped (exit code %s): the job writes to MLflow itself", code
    )


def _announce_wait() -> None:
    get_logger().warning("the MLflow writer is ending the run (a second or so); interrupt again to stop now")


def _wait_for_answer(replies: IO[bytes]) -> None:
    """Return once the writer starts answering; say every WAIT_NOTICE_SECONDS that the job still waits
    (a tracking server that does not answer keeps the writer in MLflow's retries)."""
    started = time.monotonic()
    try:
        while not select.select([replies.fileno()], [], [], WAIT_NOTICE_SECONDS)[0]:
            get_logger().info(
                "still waiting for the MLflow writer to log the results (%.0f s)", time.monotonic() - started
            )
    except (OSError, ValueError):  # not a pipe select() can watch: the read that follows just blocks
        return


# -- the writer process ----------------------------------------------------------------------------


def serve(parent: int, messages: IO[bytes], replies: IO[bytes]) -> int:
    """Do what the job's messages ask until ``Finish`` or ``End``; then send the report.

    The pipe ending without either means the job died: the next run reconciles what is missing. An
    error opening MLflow stops the writer (exit code 2) without a word: the job then does the same
    steps itself and reports the error as its own. What the writer logs goes back in the report.
    """
    parent_death_tie()(parent)  # Linux: killed with the job, even by kill -9
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the job's: it stops, then ends the run
    inbox = _drain(messages)
    import mlflow  # noqa: F401  (the heavy imports, while the job does its own)

    report = MirrorReport()
    _collect_logs(report.messages)
    runs: StudyRuns | None = None
    unwritten = False  # a trial could not be written: one more try before the results
    warm_ups: list[Callable[[], None]] = []  # done one at a time, when no trial waits to be written
    while True:
        if warm_ups and inbox.empty():
            warm_ups.pop(0)()
            continue
        message = inbox.get()
        if message is None:
            return 1
        if isinstance(message, Open):
            try:
                runs = StudyRuns(message.spec)
                report.parent_id = runs.open()
                report.count(runs.catch_up(), message.spec.owner)
            except Exception:
                return CANNOT_OPEN
            if message.spec.plots:
                warm_ups = _plot_warm_ups(runs)
            continue
        assert runs is not None, "the job opens the writer first"
        match message:
            case LogLineage(lineage):
                try:
                    report.digests = runs.log_lineage(lineage)
                except Exception:
                    return CANNOT_OPEN  # the job logs it itself, and reports the error if it is one
            case WriteTrial(trial_id):
                if os.getppid() != parent:  # the job died: the next run's reconciliation writes the rest
                    return 1
                try:
                    report.written += runs.write_by_id(trial_id)
                except Exception as error:
                    unwritten = True
                    get_logger().warning(
                        "trial id %s not written to MLflow: %s: %s", trial_id, type(error).__name__, error
                    )
            case Finish(best_number):
                warm_ups.clear()  # too late for a head start: the real figures import what they need
                if unwritten:  # one more try before the results (a failure here leaves it to the job)
                    report.count(runs.catch_up(), runs.spec.owner)
                report.status, report.error = runs.conclude(best_number, partial(_importances_from, inbox))
                break
            case End(status, error):
                report.status = runs.end(status, error)
                break
            case _:
                raise AssertionError(f"unexpected message {message!r}")
    try:
        pickle.dump(report, replies)
        replies.flush()
    except OSError:  # the job stopped waiting (a second Ctrl-C): the run is ended all the same
        return 1
    return 0


def _importances_from(inbox: queue.Queue[Message | None]) -> Importances:
    """The parameter importances the job sends after ``Finish``."""
    message = inbox.get()
    if message is None:
        raise ValueError("the job sent no parameter importances")
    if not isinstance(message, ParamImportances):
        raise ValueError(f"expected the parameter importances, got {type(message).__name__}")
    if message.values is None:  # why the job could not compute them
        raise ValueError(message.reason or "no parameter importances")
    return dict(message.values)


def _collect_logs(into: list[tuple[int, str]]) -> None:
    """Keep what the writer logs (a plot skipped, a run left RUNNING) for the job to log as its own."""

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            into.append((record.levelno, record.getMessage()))

    logger = get_logger()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(Collect(logging.INFO))


def _drain(messages: IO[bytes]) -> queue.Queue[Message | None]:
    """Read the job's messages as they come, so that the job never waits on a full pipe.

    The writer is busy loading MLflow when the job sends it the tables it read (for the lineage):
    unread, they would fill the pipe and hold the job up until the writer is ready.
    """
    inbox: queue.Queue[Message | None] = queue.Queue()

    def read() -> None:
        while True:
            try:
                inbox.put(pickle.load(messages))
            except Exception:  # the end of the pipe (the job is gone or done), or a broken message
                inbox.put(None)
                return

    threading.Thread(target=read, name="trainyard-writer-inbox", daemon=True).start()
    return inbox


def _plot_warm_ups(runs: StudyRuns) -> list[Callable[[], None]]:
    """Steps that import matplotlib and draw the figures of a tiny study, for idle moments.

    Importing takes about 0.4 s of the writer's time, and the first figures a process draws cost
    about 0.1 s more than later ones (fonts, matplotlib's caches). Done while the search runs, in
    steps between trials, they are not paid once the last trial is known, and the trials' child
    runs never wait behind them. (The importances' forest is the job's: the writer never imports
    scikit-learn, a second of its time.) The drawing is extra work: it is skipped when the job's
    trials use every core (n_jobs) or another worker runs trials of the study.
    """

    def import_matplotlib() -> None:
        import matplotlib.figure  # noqa: F401
        from matplotlib.backends import backend_agg  # noqa: F401
        from matplotlib.collections import LineCollection  # noqa: F401

    def draw_a_tiny_study() -> None:  # extra work, worth it only on a core the trials leave idle
        if runs.spec.spare_core and not runs.shared():
            _draw_a_tiny_study()

    return [import_matplotlib, draw_a_tiny_study]


def _draw_a_tiny_study() -> None:
    """Draw the three figures of a 3-trial study once, and throw them away."""
    import io

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line for the throw-away
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        study.optimize(
            lambda trial: trial.suggest_float("x", 0, 1) + trial.suggest_int("y", 0, 3), n_trials=3
        )
        for make in figures(study, "warm-up", lambda: {"x": 0.75, "y": 0.25}).values():
            make().savefig(io.BytesIO(), format="png")
    except Exception as error:  # only a head start: the real figures report their own errors
        get_logger().debug("plots not warmed up: %s", error)


if __name__ == "__main__":  # messages must unpickle as this module's classes, not __main__'s
    from trainyard.runtime.processes import serve_as_writer
    from trainyard.tuning.writer_process import serve as serve_from_module

    serve_as_writer(serve_from_module)
