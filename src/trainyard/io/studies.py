"""Optuna storage: where a tuning study lives, so it can be resumed and shared by many workers.

The default is Optuna's journal file beside the MLflow store (a trial costs about 3 ms there against
about 20 ms in SQLite, and two processes on one journal file scaled 1.84x against 1.42x; see the
tuning guide). Any database URL works too, with heartbeats that fail the trials of dead workers.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from trainyard.component import Component
from trainyard.errors import ConfigurationError

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

JOURNAL_FILE = "optuna-journal.log"
WORKER_ATTR = "trainyard.worker"
HEARTBEAT_SECONDS = 10


class StudyStorage(Component):
    """The study's name and storage."""

    name: str | None = Field(
        None, description="Study name (default: the experiment and a hash of what is searched)."
    )
    storage: str | None = Field(
        None,
        description="A database URL (sqlite:///..., postgresql://...) or a journal file path "
        f"(default: {JOURNAL_FILE} beside the MLflow store).",
    )

    def location(self, tracking_uri: str) -> str:
        """Where the study is stored, for logs and messages."""
        if self.storage:
            return self.storage
        folder = (
            Path(tracking_uri.removeprefix("sqlite:///")).parent
            if tracking_uri.startswith("sqlite:///")
            else Path()
        )
        return str(folder / JOURNAL_FILE)

    def open(self, tracking_uri: str) -> BaseStorage:
        """The Optuna storage object."""
        import optuna

        location = self.location(tracking_uri)
        try:
            if "://" in location:
                if location.startswith("sqlite:///"):
                    Path(location.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
                with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's words
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        location, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=3 * HEARTBEAT_SECONDS
                    )
            from trainyard.io.journal import WorkerJournalStorage

            Path(location).parent.mkdir(parents=True, exist_ok=True)
            return WorkerJournalStorage(location)
        except Exception as error:  # drivers missing, server unreachable, folder not writable...
            raise ConfigurationError(
                f"job.study.storage: cannot open {location!r}: {type(error).__name__}: {error}".splitlines()[
                    0
                ]
            ) from error


_PARENT_ATTR = "trainyard.parent_run_id"
_CLAIM_ATTR = "trainyard.parent_claim"


def parent_attr(tracking_uri: str, claim: bool = False) -> str:
    """The study attribute holding its parent run in one MLflow store (a study may be tracked in several)."""
    import hashlib

    store = hashlib.sha256(tracking_uri.encode()).hexdigest()[:12]
    return f"{_CLAIM_ATTR if claim else _PARENT_ATTR}@{store}"


SETTLE_SECONDS = 0.5
WAIT_FOR_PARENT_SECONDS = 60.0


def claim_parent(study: optuna.Study, tracking_uri: str) -> float | None:
    """Claim the creation of the study's parent run when it has none, before MLflow is loaded.

    The election's settle wait then overlaps loading MLflow instead of following it. Returns when
    the claim was written (``time.monotonic()``), or None when no claim was needed or another live
    worker holds one.
    """
    if study.user_attrs.get(parent_attr(tracking_uri)):
        return None  # recorded: shared_parent_run() checks that MLflow still has it
    claim = study.user_attrs.get(parent_attr(tracking_uri, claim=True))
    if claim is not None and token_alive(str(claim)):
        return None
    study.set_user_attr(parent_attr(tracking_uri, claim=True), worker_token())
    return time.monotonic()


def shared_parent_run(
    study: optuna.Study,
    tracking_uri: str,
    exists: Callable[[str], bool],
    claimed_at: float | None = None,
    token: str | None = None,
) -> str | None:
    """The MLflow parent run of ``study`` in that store; None when this worker is the one to create it.

    Workers that start a new study together elect one creator: each claims the study, waits for the
    claims to settle, and the last claim stands (the storage orders writes); the others wait for the
    creator's run id. A parent that MLflow no longer has, or a creator that died, is replaced.
    ``claimed_at`` is the time of this worker's claim_parent() claim, if it made one; ``token`` the
    worker's token (default: this process's), for a writer process that acts for its job.
    """
    parent = study.user_attrs.get(parent_attr(tracking_uri))
    if parent and exists(str(parent)):
        return str(parent)
    token = token or worker_token()
    claim = study.user_attrs.get(parent_attr(tracking_uri, claim=True))
    if claimed_at is None and (claim is None or not token_alive(str(claim))):
        study.set_user_attr(parent_attr(tracking_uri, claim=True), token)
        claimed_at = time.monotonic()
    if claimed_at is not None:
        time.sleep(max(0.0, SETTLE_SECONDS - (time.monotonic() - claimed_at)))
        claim = study.user_attrs.get(parent_attr(tracking_uri, claim=True))
    if claim == token:
        return None
    deadline = time.monotonic() + WAIT_FOR_PARENT_SECONDS
    while time.monotonic() < deadline and token_alive(str(claim)):
        parent = study.user_attrs.get(parent_attr(tracking_uri))
        if parent and exists(str(parent)):
            return str(parent)
        time.sleep(0.2)
    return None


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that will not change any more: complete, pruned or failed (they count toward the budget)."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))


def others_running(study: optuna.Study, mine: str | None = None) -> bool:
    """Whether a live worker other than ``mine`` (default: this process) has a trial of ``study`` running."""
    from optuna.trial import TrialState

    mine = mine or worker_token()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        token = str(trial.user_attrs.get(WORKER_ATTR, ""))
        if token and token != mine and token_alive(token):
            return True
    return False


def worker_token() -> str:
    """Identifies this process across time: host, pid and the pid's start time."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def fail_trials_of_dead_workers(storage: BaseStorage, study: optuna.Study) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker was a process of this host that no longer exists."""
    from optuna.trial import TrialState

    failed = []
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        token = str(trial.user_attrs.get(WORKER_ATTR, ""))
        if token.split(":")[0] != host or token_alive(token):
            continue
        study_id = storage.get_study_id_from_name(study.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, "error", "its worker process died")
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        failed.append(trial.number)
    return failed


def token_alive(token: str) -> bool:
    """Whether the worker of ``token`` may still run (workers of other hosts are assumed alive)."""
    parts = token.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return True
    return _alive(int(parts[1]), parts[2])


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _start_time(pid) == start


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"
