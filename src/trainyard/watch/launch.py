"""One job in a process of its own, run as ``trainyard run FILE`` runs it, its output in a log file.

A child process per job: a crash, a hang cut short, or a signal in one job cannot take the watcher
down, and the job gets the CLI's own handling of Ctrl-C and SIGTERM (its run ends KILLED). The child
is in a session of its own, so a Ctrl-C at the watcher's terminal reaches the watcher only, which
decides; on Linux it is sent SIGTERM should the watcher die. It never accepts import paths, whatever
the watcher's environment says: configs in a watched folder may be written by others.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainyard.core.estimators import IMPORT_PATHS_ENV
from trainyard.errors import JobCancelledError
from trainyard.runtime.cancellation import Cancellation
from trainyard.runtime.processes import parent_death_tie

RUN_CONTEXT_ENV = "MLFLOW_RUN_CONTEXT"  # MLflow adds these tags (JSON) to every run it starts
STOP_GRACE_SECONDS = 60.0  # a job asked to stop that is still running then is killed
POLL_SECONDS = 0.1
LOG_TAIL_BYTES = 64_000


@dataclass(frozen=True)
class Ended:
    """How a job's process ended: its exit code and seconds, whether the watcher stopped it, and the
    error it reported (None when it succeeded)."""

    returncode: int
    seconds: float
    stopped: bool
    error: str | None


def job_command(config: Path) -> list[str]:
    """The command that runs ``config``: this Python's ``trainyard run``."""
    return [sys.executable, "-m", "trainyard.cli", "run", str(config)]


def job_environment(tags: dict[str, str]) -> dict[str, str]:
    """The watcher's environment, import paths refused, with ``tags`` for the run MLflow starts."""
    environment = dict(os.environ)
    environment[IMPORT_PATHS_ENV] = "0"
    try:
        context = json.loads(environment.get(RUN_CONTEXT_ENV) or "{}")
    except ValueError:
        context = {}
    environment[RUN_CONTEXT_ENV] = json.dumps({**(context if isinstance(context, dict) else {}), **tags})
    environment["PYTHONUNBUFFERED"] = "1"  # the log shows each line when it is written
    return environment


def run_job(
    config: Path,
    log: Path,
    tags: dict[str, str],
    cancellation: Cancellation,
    started: Callable[[int], None],
) -> Ended:
    """Run ``config`` in a child process and wait for it; ``started`` is told its pid.

    While it runs, a stop requested by SIGTERM (a ``JobCancelledError``) stops it at once; another
    request (one that ``cancellation`` raises, a repeated Ctrl-C) too: it is sent SIGTERM, and
    again at each further request (a tuning job stops at once on the second), killed after
    ``STOP_GRACE_SECONDS``. Any other stop request lets it finish.
    """
    tie = parent_death_tie(signal.SIGTERM)
    watcher = os.getpid()
    log.parent.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()
    with log.open("wb") as output:
        process = subprocess.Popen(
            job_command(config),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=job_environment(tags),
            start_new_session=True,
            preexec_fn=lambda: tie(watcher),  # the tie loads nothing in the child
        )
    stopping: float | None = None
    try:
        started(process.pid)
    except BaseException:
        _stop(process)
        raise
    while True:
        try:
            if stopping is None and isinstance(cancellation.reason, JobCancelledError):
                stopping = _stop(process)
            returncode = process.wait(timeout=POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            if stopping is not None and time.monotonic() - stopping > STOP_GRACE_SECONDS:
                process.kill()
        except KeyboardInterrupt:  # asked again while it runs: stop it now
            stopped_at = _stop(process)
            stopping = stopping or stopped_at
    seconds = time.monotonic() - begin
    return Ended(
        returncode, seconds, stopping is not None, None if returncode == 0 else _error(log, returncode)
    )


def _stop(process: subprocess.Popen[bytes]) -> float:
    """Ask the job to stop (its run ends KILLED); when it was asked."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return time.monotonic()


def _error(log: Path, returncode: int) -> str:
    """What a failed job said: from its last ``error:`` line to the end of its output (a config's
    problems take several lines); else how it ended."""
    if returncode < 0:
        return f"the job's process was killed by {signal.Signals(-returncode).name}"
    try:
        with log.open("rb") as output:
            output.seek(max(0, log.stat().st_size - LOG_TAIL_BYTES))
            lines = output.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith("error: "):
            return "\n".join(lines[index:]).removeprefix("error: ").strip()
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    return f"exit code {returncode}" + (f": {last}" if last else "")
