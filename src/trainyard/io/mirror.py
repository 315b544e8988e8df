"""A writer process that mirrors a study's trials into MLflow while the search runs.

Writing a child run costs about 20 ms of Python (SQLAlchemy) per trial, and a thread would take that
from the search through the GIL; a process runs it on another core instead. The job sends it the id of
every trial it finishes (a few bytes through a pipe); the writer reads the trial from the study's
storage, the durable record, and writes its child run. At the end it logs the study's results.

It starts only when trials are short (see ``TrialMirror``): next to long trials a child run
is a few percent of the work, and a second process loading MLflow would compete with the trials for
busy cores. The job never depends on it: if the writer stops, the job writes what is left itself, and a trial it
never wrote is written by the next run's reconciliation. On Linux the writer dies with the job (a
killed job must not leave a writer behind that races the next run's reconciliation).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from trainyard.io.logging import get_logger

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from trainyard.io.trials import TrialLogger


WRITER_COMMAND = [sys.executable, "-m", "trainyard.io.mirror"]  # + the job's pid
WRITER_FOR_TRIALS_UNDER_S = 0.25  # a child run (~20 ms) is then more than 8 % of a trial
READY = "ready"  # the writer's first answer: it has started and caught up with the study


@dataclass(frozen=True)
class MirrorSpec:
    """What the writer needs: where to write, which study to read, and whose trials are its own."""

    tracking_uri: str
    storage: dict[str, Any]  # StudyStorage settings
    study_name: str
    parent_id: str
    experiment_id: str
    metric_names: list[str]
    owner: str  # worker token of the job process: the trials it runs are this writer's to write
    plots: bool


@dataclass
class MirrorReport:
    """What the writer did, sent back when it finishes."""

    written: int = 0
    reconciled: int = 0
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def count(self, trials: list[FrozenTrial], owner: str) -> None:
        """Count trials written by a reconciliation: this job's own, or left missing by earlier runs."""
        from trainyard.io.studies import WORKER_ATTR

        own = sum(trial.user_attrs.get(WORKER_ATTR) == owner for trial in trials)
        self.written += own
        self.reconciled += len(trials) - own


class TrialMirror:
    """The job's side: start the writer when the first trial shows it pays, then feed it trial ids.

    A child run costs the job about 20 ms. Next to short trials that is a large share, and the writer
    takes it to another core; next to long ones it is a few percent, less than the writer's own start
    (importing MLflow, Optuna and the plotting stack again: about 4 s of CPU, measured), which slows the trials when every core is busy (several
    workers, or n_jobs). So the writer starts only when the first trial took under
    ``WRITER_FOR_TRIALS_UNDER_S`` (the second one: the first also pays for importing the model's
    code); otherwise the job writes its child runs itself.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # n_jobs threads end trials concurrently
        self._deciding = threading.Lock()
        self._decided = False
        self._fallback: TrialLogger | None = None
        self._spec: MirrorSpec | None = None
        self._study: optuna.Study | None = None
        self._written_here = 0  # trials the job wrote itself (long trials, or the writer stopped)
        self._writer_ready = False
        self._done = False  # finished or closed
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, spec: MirrorSpec, study: optuna.Study) -> None:
        """Where to write: the parent run, the study, and the job's worker token."""
        self._spec, self._study = spec, study

    def on_trial_end(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback: hand the finished trial to the writer, or write it here."""
        if not self._decided and self._written_here > 0:  # the first trial also paid for imports
            self._decide(trial)
        if self.process is not None and self._send(("trial", trial._trial_id)):
            return
        try:
            self._logger().write(trial)
            self._written_here += 1
        except Exception as error:  # the study goes on; the next run's reconciliation writes it
            get_logger().warning("trial %s not written to MLflow: %s", trial.number, error)

    def _decide(self, sample: FrozenTrial) -> None:
        with self._deciding:
            if self._decided:
                return
            self._decided = True
            seconds = sample.duration.total_seconds() if sample.duration is not None else 0.0
            if self._spec is not None and seconds < WRITER_FOR_TRIALS_UNDER_S:
                self.process = subprocess.Popen(
                    [*WRITER_COMMAND, str(os.getpid())], stdin=subprocess.PIPE, stdout=subprocess.PIPE
                )
                self._send(("start", self._spec))  # it first writes what earlier runs left missing

    def finish(self, best: FrozenTrial | None) -> MirrorReport:
        """Wait for every trial to be written, then for the results (with ``best``) on the parent run.

        A writer still starting when the search ends (a short study) is stopped: the job, which has
        MLflow loaded already, writes faster than the writer could finish starting.
        """
        if not self._ready():
            self._abandon()
        report = self._exchange(("finish", None if best is None else best.number))
        if report is None:  # the writer stopped: do its remaining work here
            assert self._study is not None
            report = MirrorReport()
            report.count(self._logger().reconcile(self._study, self._owner()), self._owner())
            if best is not None:
                self._logger().log_results(self._study, best)
        report.written += self._written_here  # the first trial, or those after the writer stopped
        self._done = True
        for warning in report.warnings:
            get_logger().warning("%s", warning)
        if report.error is not None:
            from trainyard.errors import TrainingJobError

            raise TrainingJobError(f"logging the study's results to MLflow failed: {report.error}")
        return report

    def close(self) -> None:
        """Stop the writer after it has written the trials it was given (the job failed or stopped)."""
        if self._done:
            return
        self._done = True
        if not self._ready():
            self._abandon()
        if self.process is not None and self._exchange(("close", None)) is not None:
            return
        if self._study is None or self._spec is None:
            return  # stopped before the parent run existed: nothing to mirror yet
        try:  # the writer stopped or never started: write what it was given here
            self._logger().reconcile(self._study, self._spec.owner)
        except Exception as error:  # the job's own error matters more; the next run reconciles
            get_logger().warning("finished trials not written to MLflow: %s", error)

    def __enter__(self) -> TrialMirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pipe ----------------------------------------------------------------------------------

    def _ready(self) -> bool:
        """Whether the writer has started (its first answer); never waits."""
        import select

        process = self.process
        if self._writer_ready or process is None or process.stdout is None:
            return self._writer_ready
        if select.select([process.stdout], [], [], 0)[0]:
            try:
                self._writer_ready = pickle.load(process.stdout) == READY
            except Exception:  # it died: the caller finds it stopped
                self._writer_ready = False
        return self._writer_ready

    def _abandon(self) -> None:
        """Stop a writer that is not ready (a child run it was writing is left RUNNING, then rewritten)."""
        process, self.process = self.process, None
        if process is None:
            return
        code = process.poll()
        if code is None:
            process.kill()
            process.wait()  # reaped: its token is dead for the reconciliation that follows
            get_logger().debug("the MLflow writer was not ready when the search ended: writing here")
        elif code != 0:
            get_logger().warning(
                "the MLflow writer process stopped (exit code %s); writing the trials from the job", code
            )
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def _send(self, message: tuple[str, Any]) -> bool:
        process = self.process
        if process is None or process.stdin is None:
            return False
        with self._lock:
            try:
                pickle.dump(message, process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                process.stdin.flush()
                return True
            except (BrokenPipeError, OSError, ValueError):
                self._stopped()
                return False

    def _exchange(self, message: tuple[str, Any]) -> MirrorReport | None:
        """Send a last message, read the report, and reap the process; None if it had stopped."""
        process = self.process
        report = None
        if process is not None and self._send(message):
            assert process.stdin is not None and process.stdout is not None
            with self._lock:
                process.stdin.close()
            try:
                report = pickle.load(process.stdout)
                if report == READY:
                    report = pickle.load(process.stdout)
            except Exception:  # it died before answering, or answered garbage: do its work here
                report = None
        if process is not None:
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
            if report is None and process.returncode != 0:
                get_logger().warning(
                    "the MLflow writer process stopped (exit code %s); writing the rest from the job",
                    process.returncode,
                )
        self.process = None
        return report if isinstance(report, MirrorReport) else None

    def _stopped(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            code = process.poll()
            get_logger().warning(
                "the MLflow writer process stopped (exit code %s); writing the trials from the job", code
            )

    def _logger(self) -> TrialLogger:
        from trainyard.io.trials import TrialLogger

        if self._fallback is None:
            assert self._spec is not None
            spec = self._spec
            self._fallback = TrialLogger(
                spec.parent_id, spec.experiment_id, spec.study_name, spec.metric_names, spec.plots
            )
        return self._fallback

    def _owner(self) -> str:
        assert self._spec is not None
        return self._spec.owner


# -- the writer process --------------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """Linux: be killed when the job process dies, even by SIGKILL; elsewhere, stop at the pipe's end."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(0)


def serve(parent: int, messages: IO[bytes], replies: IO[bytes]) -> int:
    """Read messages until ``finish`` or ``close``; an end of the pipe without one means the job died."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the job's: it stops, then closes the writer
    import mlflow.entities  # noqa: F401  (the heavy imports, while the job does its own)
    import optuna  # noqa: F401

    report = MirrorReport()
    writer: TrialLogger | None = None
    study: optuna.Study | None = None
    written: set[int] = set()
    while True:
        try:
            kind, body = pickle.load(messages)
        except EOFError:
            return 1  # the job is gone: the next run reconciles what is missing
        try:
            if kind == "start":
                writer, study = _open(body)
                report.count(writer.reconcile(study, body.owner, written), body.owner)
                pickle.dump(READY, replies)
                replies.flush()
                if body.plots:
                    _warm_plots()
            elif kind == "trial" and writer is not None and study is not None:
                if os.getppid() != parent:  # the job died: the next run's reconciliation writes the rest
                    return 1
                trial = study._storage.get_trial(body)
                if trial.number not in written:
                    writer.write(trial)
                    written.add(trial.number)
                    report.written += 1
            elif kind in ("finish", "close"):
                if kind == "finish" and writer is not None and study is not None and body is not None:
                    best = next(t for t in study.get_trials(deepcopy=False) if t.number == body)
                    writer.log_results(study, best)
                pickle.dump(report, replies)
                replies.flush()
                return 0
        except Exception as error:
            if kind in ("finish", "start"):
                report.error = f"{type(error).__name__}: {error}"
                if kind == "finish":
                    pickle.dump(report, replies)
                    replies.flush()
                    return 0
                return 1  # could not start: the job writes everything itself
            report.warnings.append(f"trial {body} not written to MLflow: {type(error).__name__}: {error}")


def _open(spec: MirrorSpec) -> tuple[TrialLogger, optuna.Study]:
    import mlflow
    import optuna

    from trainyard.io.studies import StudyStorage
    from trainyard.io.tracking import quiet_mlflow
    from trainyard.io.trials import TrialLogger

    quiet_mlflow()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    mlflow.set_tracking_uri(spec.tracking_uri)
    storage = StudyStorage.model_validate(spec.storage).open(spec.tracking_uri)
    study = optuna.load_study(study_name=spec.study_name, storage=storage)
    writer = TrialLogger(spec.parent_id, spec.experiment_id, spec.study_name, spec.metric_names, spec.plots)
    return writer, study


def _warm_plots() -> None:
    """Import the plotting stack while the search runs, not after it (about half a second)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot
    import optuna.visualization.matplotlib  # noqa: F401
    import sklearn.ensemble  # noqa: F401  (the importance evaluator's forest)


if __name__ == "__main__":  # messages must unpickle as trainyard.io.mirror's classes, not __main__'s
    from trainyard.io.mirror import serve as serve_from_module

    code = serve_from_module(int(sys.argv[1]), sys.stdin.buffer, sys.stdout.buffer)
    sys.stdout.flush()
    os._exit(code)  # everything is written and committed: skip the second-long teardown of the modules
