"""The tuning job's MLflow writer: a second process that does all of the job's MLflow work.

Loading MLflow and opening its store cost the job about 1.5 s before its first trial, and a child run
about 20 ms of Python (SQLAlchemy) per trial, which a thread would take from the search through the
GIL. So the tuning job starts this process first thing, and it loads MLflow on the other core while
the job reads its data and searches: it opens the store and the study's parent run (config, params),
logs the data lineage, writes a child run per finished trial (the job sends each trial's id through a
pipe; the writer reads the trial from the study's storage, the durable record), then logs the results
and ends the parent run with the job's status. The job waits only for that last part.

The job never depends on it: when the writer is gone (it could not start, or stopped), the job does
the same steps itself (``StudyRuns``), from where the study's storage and MLflow say they are. On
Linux the writer dies with the job, so it cannot race the next run's reconciliation.
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
from dataclasses import dataclass, field
from functools import partial
from typing import IO, TYPE_CHECKING, Any

from trainyard.io.logging import get_logger
from trainyard.runtime.processes import parent_death_tie

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from trainyard.tuning.plots import Importances
    from trainyard.tuning.study_runs import Lineage, StudyRuns, StudyRunSpec


WRITER_COMMAND = [sys.executable, "-m", "trainyard.tuning.writer"]  # + the job's pid
CANNOT_OPEN = 2  # the writer's exit code when MLflow (the store, the parent run or the lineage) fails
WAIT_NOTICE_SECONDS = 15.0  # how often the job says it still waits for the writer's report
_prestarted: list[subprocess.Popen[bytes]] = []  # a writer started before the job's config was validated


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
        from trainyard.records import WORKER_ATTR

        own = sum(trial.user_attrs.get(WORKER_ATTR) == owner for trial in trials)
        self.written += own
        self.reconciled += len(trials) - own


class TrialMirror:
    """The job's side: start the writer, send it what to record, and take over if it stops."""

    def __init__(self, spec: StudyRunSpec, study: optuna.Study) -> None:
        self.spec = spec
        self.study = study
        self.process: subprocess.Popen[bytes] | None = None
        self.parent_id: str | None = None  # once a report named it
        self._lock = threading.Lock()  # n_jobs threads end trials concurrently
        self._lineage: Lineage | None = None
        self._local: StudyRuns | None = None  # the job's own MLflow side, once the writer is gone
        self._report = MirrorReport()  # what the job wrote itself
        self._cannot_open = False  # the job's own attempt to open MLflow failed
        self._ended = False  # the parent run's end was asked for (finish, fail or abandon)
        self._interrupted = False  # a first interrupt came while the writer ends the run

    def start(self) -> None:
        """Start the writer process; it opens MLflow and the parent run while the job goes on."""
        try:
            self.process = _prestarted.pop() if _prestarted else _spawn()
        except OSError as error:
            get_logger().warning("no MLflow writer process (%s): the job writes to MLflow itself", error)
            return
        self._send(("open", self.spec))

    def log_lineage(self, lineage: Lineage) -> None:
        """Log the tables the job read as inputs of the parent run."""
        self._lineage = lineage
        if not self._send(("lineage", lineage)):
            with self._lock:
                self._report.digests = self._runs().log_lineage(lineage)

    def on_trial_end(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback: have the finished trial written as a child run.

        Not once the parent run's end was asked for: a trial of another thread that ends after a
        cancellation would otherwise reopen the ended run (RUNNING again, its error tag gone). The
        study has the trial; the next run's reconciliation writes its child run.
        """
        if self._ended:
            return
        if self._send(("trial", trial._trial_id)):
            return
        with self._lock:
            runs = self._runs()
            try:
                self._report.written += runs.write(trial)
            except Exception as error:  # the study goes on; the next run's reconciliation writes it
                get_logger().warning("trial %s not written to MLflow: %s", trial.number, error)

    def finish(self, best: FrozenTrial) -> MirrorReport:
        """Wait until every trial, the results (``best``) and the parent run's end are written.

        The job computes the parameter importances (it has scikit-learn loaded; the writer never
        imports it) while the writer logs the rest, and sends them after ``finish``.
        """
        report = self._exchange(("finish", best.number), then=self._importances if self.spec.plots else None)
        if report is None:  # the writer is gone: do its remaining work here
            with self._lock:
                runs, report = self._runs(), self._report
                report.count(runs.catch_up(), self.spec.owner)
                report.status, report.error = runs.conclude(best.number)
                report.parent_id = self.parent_id = runs.parent_id
        if report.error is not None:
            from trainyard.errors import TrainingJobError

            raise TrainingJobError(f"logging the study's results to MLflow failed: {report.error}")
        return report

    def fail(self, status: str, error: tuple[str, str]) -> str | None:
        """End the parent run with ``status`` and ``error`` (after the finished trials); its id, if any.

        Nothing more when its end was already asked for (the failure came while the results were being
        logged), or when the job could not open MLflow (that is the failure, already said).
        """
        if self._ended or self._cannot_open:
            return self.parent_id
        report = self._exchange(("end", (status, error)))
        if report is not None:
            return report.parent_id
        try:
            with self._lock:
                runs = self._runs()
                runs.catch_up()
                runs.end(status, error)
                return runs.parent_id
        except Exception as tracking_error:  # the job's own error matters more; the next run repairs
            get_logger().warning("the study's MLflow run could not be ended: %s", tracking_error)
            return self._local.parent_id if self._local is not None else None

    def abandon(self) -> None:
        """The job ends before it ran: have the writer end what it began (KILLED), then stop it."""
        process, self.process = self.process, None
        if process is None:
            return
        self._ended = True
        with contextlib.suppress(OSError, ValueError):
            assert process.stdin is not None
            pickle.dump(("end", ("KILLED", ("the job ended before it ran", ""))), process.stdin)
            process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
        _reap(process, kill=True)

    # -- the pipe ----------------------------------------------------------------------------------

    def _send(self, message: tuple[str, Any]) -> bool:
        """Send ``message`` to the writer; False when there is no writer (any more)."""
        with self._lock:
            process = self.process
            if process is None or process.stdin is None:
                return False
            try:
                pickle.dump(message, process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                process.stdin.flush()
                return True
            except (OSError, ValueError):
                self._gone()
                return False

    def _importances(self) -> tuple[str, Importances | str]:
        """The parameter importances for the writer's figure, or why there are none.

        A first Ctrl-C or SIGTERM here is the first one while the writer ends the run: it is only
        announced (the figure is skipped), and the next one stops both.
        """
        from trainyard.errors import JobCancelledError
        from trainyard.tuning.plots import importances

        try:
            return ("importances", importances(self.study))
        except (KeyboardInterrupt, JobCancelledError):
            _announce_wait()
            self._interrupted = True
            return ("importances", "interrupted")
        except Exception as error:  # e.g. fewer than two completed trials: the figure is skipped
            return ("importances", str(error) or type(error).__name__)

    def _exchange(
        self, message: tuple[str, Any], then: Callable[[], tuple[str, Any]] | None = None
    ) -> MirrorReport | None:
        """Send the last message (and what ``then`` makes) and wait for the report; None when the
        writer is gone.

        A first Ctrl-C or SIGTERM while the writer ends the run only says so; a second one stops the
        writer and the job at once (the next run repairs the parent run).
        """
        process = self.process
        self._ended = True
        if process is None or not self._send(message):
            return None
        assert process.stdin is not None and process.stdout is not None
        if then is not None:  # best effort: a writer done without it has its report in the pipe already
            follow_up = then()
            with contextlib.suppress(OSError, ValueError):
                pickle.dump(follow_up, process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                process.stdin.flush()
        with self._lock:
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
            return None
        self.parent_id = report.parent_id
        for level, text in report.messages:
            get_logger().log(level, "%s", text)
        return report

    def _gone(self) -> None:
        """The writer stopped: reap it; from now on the job writes to MLflow itself."""
        process, self.process = self.process, None
        if process is not None:
            _reap(process, kill=False)  # reaped: its token is dead for the reconciliation that follows
            _stopped(process.returncode)

    def _runs(self) -> StudyRuns:
        """The job's own MLflow side, opened (and caught up) on first use. Call with the lock held."""
        if self._local is None:
            from trainyard.tuning.study_runs import StudyRuns

            started = time.perf_counter()
            local = StudyRuns(self.spec, self.study)
            try:
                local.open()
            except BaseException:
                self._cannot_open = True
                raise
            get_logger().info(
                "MLflow opened in the job (%.2f s): run %s", time.perf_counter() - started, local.parent_id
            )
            self._local = local
            self.parent_id = local.parent_id
            if self._lineage is not None:
                self._report.digests = local.log_lineage(self._lineage)
            self._report.count(local.catch_up(), self.spec.owner)
        return self._local

    def __enter__(self) -> TrialMirror:
        return self

    def __exit__(self, *exc: object) -> None:
        """Never leave a writer behind (run() asks for the run's end before it gets here)."""
        if self.process is not None:
            self.abandon()


def _await_report(replies: IO[bytes], announced: bool = False) -> Any:
    """The writer's report; a first interruption while waiting is only announced (``announced``: one
    was already)."""
    from trainyard.errors import JobCancelledError

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


# -- the writer process --------------------------------------------------------------------------


def serve(parent: int, messages: IO[bytes], replies: IO[bytes]) -> int:
    """Do what the job's messages ask until ``finish`` or ``end``; then send the report.

    The pipe ending without either means the job died: the next run reconciles what is missing. An
    error opening MLflow stops the writer (exit code 2) without a word: the job then does the same
    steps itself and reports the error as its own. What the writer logs goes back in the report.
    """
    parent_death_tie()(parent)  # Linux: killed with the job, even by kill -9
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the job's: it stops, then ends the run
    inbox = _drain(messages)
    import mlflow  # noqa: F401  (the heavy imports, while the job does its own)

    from trainyard.tuning.study_runs import StudyRuns

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
        kind, body = message
        if kind == "open":
            try:
                runs = StudyRuns(body)
                report.parent_id = runs.open()
                report.count(runs.catch_up(), body.owner)
            except Exception:
                return CANNOT_OPEN
            if body.plots:
                warm_ups = _plot_warm_ups(runs)
            continue
        assert runs is not None, "the job opens the writer first"
        if kind == "lineage":
            try:
                report.digests = runs.log_lineage(body)
            except Exception:
                return CANNOT_OPEN  # the job logs it itself, and reports the error if it is one
        elif kind == "trial":
            if os.getppid() != parent:  # the job died: the next run's reconciliation writes the rest
                return 1
            try:
                report.written += runs.write_by_id(body)
            except Exception as error:
                unwritten = True
                get_logger().warning(
                    "trial id %s not written to MLflow: %s: %s", body, type(error).__name__, error
                )
        elif kind == "finish":
            warm_ups.clear()  # too late for a head start: drawing the real figures imports what they need
            if unwritten:  # one more try before the results (a failure here leaves it to the job)
                report.count(runs.catch_up(), runs.spec.owner)
            report.status, report.error = runs.conclude(body, partial(_importances_from, inbox))
            break
        elif kind == "end":
            status, failure = body
            report.status = runs.end(status, failure)
            break
    try:
        pickle.dump(report, replies)
        replies.flush()
    except OSError:  # the job stopped waiting (a second Ctrl-C): the run is ended all the same
        return 1
    return 0


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


def _importances_from(inbox: queue.Queue[Any]) -> Importances:
    """The parameter importances the job sends after ``finish``."""
    message = inbox.get()
    if message is None:
        raise ValueError("the job sent no parameter importances")
    kind, body = message
    if kind != "importances":
        raise ValueError(f"expected the parameter importances, got {kind!r}")
    if isinstance(body, str):  # why the job could not compute them
        raise ValueError(body)
    return dict(body)


def _collect_logs(into: list[tuple[int, str]]) -> None:
    """Keep what the writer logs (a plot skipped, a run left RUNNING) for the job to log as its own."""

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            into.append((record.levelno, record.getMessage()))

    logger = get_logger()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(Collect(logging.INFO))


def _drain(messages: IO[bytes]) -> queue.Queue[tuple[str, Any] | None]:
    """Read the job's messages as they come, so that the job never waits on a full pipe.

    The writer is busy loading MLflow when the job sends it the tables it read (for the lineage):
    unread, they would fill the pipe and hold the job up until the writer is ready.
    """
    inbox: queue.Queue[tuple[str, Any] | None] = queue.Queue()

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

    from trainyard.tuning.plots import figures

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


if __name__ == "__main__":  # messages must unpickle as trainyard.tuning.writer's classes, not __main__'s
    from trainyard.tuning.writer import serve as serve_from_module

    # The replies get a descriptor of their own; what is printed (MLflow prints run URLs when runs end
    # on a tracking server) goes to stderr instead of corrupting them.
    replies_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    code = serve_from_module(int(sys.argv[1]), sys.stdin.buffer, replies_out)
    replies_out.flush()
    os._exit(code)  # everything is written and committed: skip the second-long teardown of the modules
