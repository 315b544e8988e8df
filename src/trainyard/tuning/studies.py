"""Optuna storage: where a tuning study lives, so it can be resumed and shared by many workers.

The default is Optuna's journal file beside the MLflow store (a trial costs about 3 ms there against
about 20 ms in SQLite, and two processes on one journal file scaled 1.84x against 1.42x; see the
tuning guide). Any database URL works too, with heartbeats that fail the trials of dead workers.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pydantic import Field, field_validator

from trainyard.core.component import Component
from trainyard.errors import ConfigurationError
from trainyard.records import (
    ERROR_ATTR,
    PARENT_ATTR,
    PARENT_CLAIM_ATTR,
    WORKER_ATTR,
    token_alive,
    worker_token,
)

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

JOURNAL_FILE = "optuna-journal.log"
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

    @field_validator("storage")
    @classmethod
    def _durable(cls, storage: str | None) -> str | None:
        """Refuse a storage that ends with its process: the study would be lost, and not shared by workers."""
        problem = not_durable(storage) if storage else None
        if problem:
            raise ValueError(problem)
        return storage

    def location(self, tracking_uri: str) -> str:
        """Where the study is stored, for logs and messages."""
        if self.storage:
            return self.storage
        store = local_file(tracking_uri) if "://" in tracking_uri else None  # a path is a file store's folder
        folder = store.parent if store is not None else Path()
        return str(folder / JOURNAL_FILE)

    def open(self, tracking_uri: str) -> BaseStorage:
        """The Optuna storage object; a new database is created safely when several workers open it at once."""
        location = self.location(tracking_uri)
        try:
            if "://" in location:
                return _open_database(location)
            from trainyard.tuning.journal import WorkerJournalStorage

            _check_journal(Path(location), location)
            Path(location).parent.mkdir(parents=True, exist_ok=True)
            return WorkerJournalStorage(location)
        except ConfigurationError:
            raise
        except Exception as error:  # drivers missing, server unreachable, folder not writable...
            raise ConfigurationError(
                f"job.study.storage: cannot open {location!r}: {type(error).__name__}: {error}".splitlines()[
                    0
                ]
            ) from error


def _sqlite_database(url: str) -> tuple[str | None, str | None]:
    """The host and database of an SQLite URL (``sqlite[+driver]://host/database?query``)."""
    rest = url.split("://", 1)[1].partition("?")[0]
    host, slash, database = rest.partition("/")
    return host or None, database if slash else None


def _is_sqlite(url: str) -> bool:
    return "://" in url and url.split("://", 1)[0].split("+", 1)[0].lower() == "sqlite"


def local_file(location: str) -> Path | None:
    """The file a storage location keeps its data in: a journal path, or an SQLite URL's database
    (without its ``?query``); None for a server's URL."""
    if "://" not in location:
        return Path(location)
    database = _sqlite_database(location)[1] if _is_sqlite(location) else None
    return Path(database) if database else None


def not_durable(storage: str) -> str | None:
    """Why ``storage`` would keep no study beyond its process (an in-memory SQLite URL), or None."""
    if not _is_sqlite(storage):
        return None
    host, database = _sqlite_database(storage)
    if host:  # SQLAlchemy refuses it, but only when the job opens the study
        return f"an SQLite URL has no host: a file takes three slashes, e.g. sqlite:///{host}"
    query = storage.partition("?")[2]
    if (
        database
        and database != ":memory:"
        and not database.startswith("file::memory:")
        and "mode=memory" not in query
    ):
        return None
    return (
        "an in-memory SQLite database lives only as long as one process, and the study with it; "
        "a study must be durable, in a file or on a server: give e.g. sqlite:///studies.db, "
        f"postgresql://host/db or a journal file path such as studies/{JOURNAL_FILE}"
    )


SQLITE_MAGIC = b"SQLite format 3\x00"
_FIRST_LINE_LIMIT = 1 << 20  # a journal's first record creates the study: its name and directions


def _check_journal(path: Path, location: str) -> None:
    """Refuse an existing file that is not an Optuna journal, before Optuna appends its records to it.

    Reads the first line only: a journal's first record is a JSON object with an ``op_code``.
    """
    if path.is_dir():
        raise ConfigurationError(
            f"job.study.storage: {location!r} is a folder; give a journal file in it, e.g. {path / JOURNAL_FILE}"
        )
    if not path.is_file():  # missing: Optuna creates it (a pipe or a device is not read here)
        return
    try:
        with path.open("rb") as file:
            first = file.readline(_FIRST_LINE_LIMIT)
    except OSError:  # unreadable: Optuna's own error names it
        return
    if not first:
        return
    if first.startswith(SQLITE_MAGIC):
        conflict = _foreign_tables(path)
        hint = (
            f"{conflict}, so give the study its own file: sqlite:///studies.db or studies/{JOURNAL_FILE}"
            if conflict
            else f"use sqlite:///{location}"
        )
        raise ConfigurationError(
            f"job.study.storage: {location!r} is an SQLite database, not an Optuna journal file "
            f"(left untouched): {hint}"
        )
    try:
        record = json.loads(first)
    except ValueError:
        what = f"a file starting {first[:40].decode('utf-8', 'replace').strip()!r}"
    else:
        if isinstance(record, dict) and isinstance(record.get("op_code"), int):
            return
        what = "JSON without Optuna's op_code records"
    raise ConfigurationError(
        f"job.study.storage: {location!r} is not an Optuna journal file ({what}) and is left untouched: "
        f"give a new or empty file, or the journal of a study (e.g. studies/{JOURNAL_FILE})"
    )


def _foreign_tables(database: Path) -> str | None:
    """Why Optuna cannot keep a study in this existing SQLite file (another program's schema), or None.

    Optuna records its schema in a table named ``alembic_version``, as MLflow and other programs do.
    """
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error:
        return None  # Optuna's own open reports what is wrong with the file
    mlflow = {"experiments", "runs"} <= tables  # perhaps with Optuna's tables, added by an older Trainyard
    if "alembic_version" in tables and (mlflow or "version_info" not in tables):
        owner = "an MLflow store" if mlflow else "another program's database"
        return f"it is {owner}, whose alembic_version table Optuna cannot share"
    return None


_CREATION_RACES = ("already exists", "duplicate", "unique constraint", "database is locked")
OPEN_ATTEMPTS = 6


def _open_database(url: str) -> BaseStorage:
    """Optuna's database storage, created safely when several workers open a new database at once.

    Optuna creates its tables and stamps their version on first open, and concurrent first opens
    collide ("table ... already exists", a duplicate version row). An SQLite file's first open is
    serialized by a lock file beside it; other databases (and SQLite without file locks) retry.
    """
    import optuna
    import sqlalchemy.exc

    database = local_file(url)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(Path(f"{database}.lock")) if database is not None else contextlib.nullcontext():
        if database is not None and database.is_file() and (conflict := _foreign_tables(database)):
            raise ConfigurationError(
                f"job.study.storage: {url!r}: {conflict}; give the study its own file, e.g. sqlite:///studies.db"
            )
        attempt = 1
        while True:
            try:
                with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's words
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=3 * HEARTBEAT_SECONDS
                    )
            except sqlalchemy.exc.DBAPIError as error:
                race = any(words in str(error.orig).lower() for words in _CREATION_RACES)
                if not race or attempt == OPEN_ATTEMPTS:
                    raise
            time.sleep(0.05 * 2**attempt * random.uniform(0.5, 1.5))  # jittered: 0.1 s to 1.6 s
            attempt += 1


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive OS lock on ``path`` (created if needed); where there are no file locks, none."""
    try:
        import fcntl

        handle: IO[str] | None = path.open("a")
    except (ImportError, OSError):  # no fcntl (Windows), a read-only folder: _open_database retries
        handle = None
    if handle is None:
        yield
        return
    with handle:  # closing the file releases the lock
        with contextlib.suppress(OSError):  # a file system without locks (some NFS mounts)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def parent_attr(tracking_uri: str, claim: bool = False) -> str:
    """The study attribute holding its parent run in one MLflow store (a study may be tracked in several)."""
    import hashlib

    store = hashlib.sha256(tracking_uri.encode()).hexdigest()[:12]
    return f"{PARENT_CLAIM_ATTR if claim else PARENT_ATTR}@{store}"


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


def running_on_this_host(study: optuna.Study, mine: str | None = None) -> dict[str, int]:
    """The other live workers of this host that have trials of ``study`` running: token -> trials.

    Workers are known by the token their trials carry (``WORKER_ATTR``), so only Trainyard's count;
    those of other hosts (another host name) share no cores with this one.
    """
    from optuna.trial import TrialState

    mine = mine or worker_token()
    host = socket.gethostname()
    running: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        token = str(trial.user_attrs.get(WORKER_ATTR, ""))
        if token and token != mine and token.split(":")[0] == host:
            running[token] = running.get(token, 0) + 1
    return {token: count for token, count in running.items() if token_alive(token)}


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
        storage.set_trial_user_attr(trial_id, ERROR_ATTR, "its worker process died")
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        failed.append(trial.number)
    return failed
