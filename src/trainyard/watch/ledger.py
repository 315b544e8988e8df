"""The watch ledger: what became of each config content in a folder, shared by every watcher of it.

A SQLite file in the folder (``.trainyard-watch/ledger.sqlite``), one row per content hash: running
(the claiming watcher's and the job's worker tokens, since when), done (the run id) or failed (the
error). A content without a row is pending. Claims are made in SQLite write transactions (``BEGIN
IMMEDIATE``), so two watchers never both claim one content; a running claim whose watcher and job
are both gone is taken over by the next watcher that claims it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from trainyard.errors import TrainyardError
from trainyard.records import token_alive, worker_token

LEDGER_FOLDER = ".trainyard-watch"
LEDGER_FILE = "ledger.sqlite"
SCHEMA_VERSION = 1
LOCK_WAIT_SECONDS = 60.0
ERROR_CHARS = 5000

State = Literal["pending", "running", "done", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS contents (
    content_hash TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    watcher TEXT NOT NULL,
    job TEXT,
    started REAL NOT NULL,
    finished REAL,
    run_id TEXT,
    error TEXT,
    log TEXT NOT NULL
)
"""
_COLUMNS = "content_hash, file, state, watcher, job, started, finished, run_id, error, log"


@dataclass(frozen=True)
class Entry:
    """What the ledger holds for one content: the file that claimed it and what became of it."""

    content_hash: str
    file: str
    state: State
    watcher: str  # the worker token (host:pid:start) of the watcher that claimed it
    job: str | None  # the worker token of the job's process, once started
    started: float
    finished: float | None
    run_id: str | None
    error: str | None
    log: str  # the job's console output, relative to the folder

    @property
    def alive(self) -> bool:
        """Whether a running claim still has its watcher or its job (on another host: assumed so)."""
        if self.state != "running":
            return False
        return token_alive(self.watcher) or (self.job is not None and token_alive(self.job))


@dataclass(frozen=True)
class Claim:
    """A content this watcher may now run; ``previous`` is the claim of a watcher that is gone."""

    content_hash: str
    previous: Entry | None


class Ledger:
    """The ledger of ``folder``; ``token`` names the watcher that writes (this process by default).

    Every write names the content's hash and changes the row only while this watcher holds its claim.
    """

    def __init__(self, folder: Path, token: str | None = None) -> None:
        self.folder = folder
        self.path = folder / LEDGER_FOLDER / LEDGER_FILE
        self.token = token or worker_token()

    def entries(self) -> dict[str, Entry]:
        """Every content the ledger knows, by hash (empty when there is no ledger yet)."""
        if not self.path.exists():
            return {}
        with self._transaction(write=False) as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM contents").fetchall()
        return {row[0]: Entry(*row) for row in rows}

    def claim(self, content_hash: str, file: str, log: str) -> Claim | None:
        """Claim a content to run it: None when it is done, failed, or running in a live watcher."""
        with self._transaction(write=True) as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM contents WHERE content_hash = ?", (content_hash,))
            found = row.fetchone()
            previous = Entry(*found) if found else None
            if previous is not None and (previous.state != "running" or previous.alive):
                return None
            db.execute(
                f"INSERT OR REPLACE INTO contents ({_COLUMNS}) VALUES (?, ?, 'running', ?, NULL, ?, NULL, "
                "NULL, NULL, ?)",
                (content_hash, file, self.token, time.time(), log),
            )
        return Claim(content_hash, previous)

    def started(self, content_hash: str, job_token: str) -> None:
        """Record the process that runs the claimed content (a claim lives as long as it does)."""
        self._update(content_hash, "job = ?", (job_token,))

    def finish(self, content_hash: str, run_id: str | None) -> None:
        """The claimed content ran: done, with its MLflow run (None: not found)."""
        self._update(content_hash, "state = 'done', finished = ?, run_id = ?", (time.time(), run_id))

    def fail(self, content_hash: str, error: str, run_id: str | None) -> None:
        """The claimed content failed, with why (and its MLflow run, when it got one)."""
        values = (time.time(), error[:ERROR_CHARS], run_id)
        self._update(content_hash, "state = 'failed', finished = ?, error = ?, run_id = ?", values)

    def release(self, content_hash: str) -> None:
        """Give the claim up (the job was stopped): the content is pending again."""
        with self._transaction(write=True) as db:
            db.execute(
                "DELETE FROM contents WHERE content_hash = ? AND watcher = ? AND state = 'running'",
                (content_hash, self.token),
            )

    def _update(self, content_hash: str, assignments: str, values: tuple[object, ...]) -> None:
        with self._transaction(write=True) as db:
            db.execute(
                f"UPDATE contents SET {assignments} WHERE content_hash = ? AND watcher = ? "
                "AND state = 'running'",
                (*values, content_hash, self.token),
            )

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """A transaction on the ledger (a write one locks it at once); SQLite errors name the file."""
        try:
            if write:
                self.path.parent.mkdir(exist_ok=True)
            db = sqlite3.connect(self.path, timeout=LOCK_WAIT_SECONDS, isolation_level=None)
        except (OSError, sqlite3.Error) as error:
            raise self._error(error) from None
        try:
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise TrainyardError(
                    f"{self.path}: a watch ledger of a newer Trainyard (version {version}); "
                    "upgrade Trainyard to watch this folder"
                )
            if write and version < SCHEMA_VERSION:
                db.execute(_SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            if not write and version < SCHEMA_VERSION:
                db.execute(_SCHEMA.replace("CREATE TABLE", "CREATE TEMP TABLE"))  # empty, for the reads
            yield db
            db.execute("COMMIT")
        except sqlite3.Error as error:
            raise self._error(error) from None
        finally:
            if db.in_transaction:
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            db.close()

    def _error(self, error: BaseException) -> TrainyardError:
        return TrainyardError(
            f"{self.path}: cannot use the watch ledger ({error}); a watcher needs to read and write "
            f"it (move it away to start the folder afresh: every config then runs again)"
        )
