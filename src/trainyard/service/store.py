"""The job store: every accepted job, its state, progress and transitions, in one SQL database.

SQLite by default (``sqlite:///trainyard-jobs.db`` in the working folder), PostgreSQL by URL. The
schema is versioned by Alembic (``migrations/``) and brought up to date when a store is opened, so an
upgrade keeps existing jobs. Every change is one short transaction; claiming the next queued job is a
single ``UPDATE`` (``FOR UPDATE SKIP LOCKED`` in its subquery on PostgreSQL), so two workers never
claim the same job.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

DEFAULT_STORE = "sqlite:///trainyard-jobs.db"
VERSION_TABLE = "trainyard_jobs_version"  # not alembic_version: MLflow's own may share the database

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = "queued", "running", "completed", "failed", "cancelled"
STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED)
FINAL = frozenset({COMPLETED, FAILED, CANCELLED})


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(64))
    config: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(16))
    message: Mapped[str | None] = mapped_column(sa.Text)
    failure_reason: Mapped[str | None] = mapped_column(sa.Text)
    error_type: Mapped[str | None] = mapped_column(sa.String(64))
    progress: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    run_id: Mapped[str | None] = mapped_column(sa.String(64))
    model_version: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[float] = mapped_column(sa.Float)
    started_at: Mapped[float | None] = mapped_column(sa.Float)
    ended_at: Mapped[float | None] = mapped_column(sa.Float)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200), unique=True)
    worker: Mapped[str | None] = mapped_column(sa.String(200))
    process: Mapped[str | None] = mapped_column(sa.String(200))  # the job's own process (its token)
    heartbeat_at: Mapped[float | None] = mapped_column(sa.Float)
    max_runtime_s: Mapped[float | None] = mapped_column(sa.Float)
    max_retries: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    cancel_requested: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())


class TransitionRow(Base):
    __tablename__ = "transitions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(sa.String(16))
    step: Mapped[str | None] = mapped_column(sa.String(200))
    at: Mapped[float] = mapped_column(sa.Float)


@dataclass
class Transition:
    status: str
    step: str | None
    at: float


@dataclass
class JobRecord:
    """A job as the store has it (a plain copy: reading it needs no session)."""

    id: str
    kind: str
    config: dict[str, Any]
    status: str
    message: str | None
    failure_reason: str | None
    error_type: str | None
    progress: dict[str, Any]
    metrics: dict[str, Any]
    run_id: str | None
    model_version: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    idempotency_key: str | None
    worker: str | None
    process: str | None
    heartbeat_at: float | None
    max_runtime_s: float | None
    max_retries: int
    attempts: int
    cancel_requested: bool
    transitions: list[Transition] = field(default_factory=list)


def _record(row: JobRow, transitions: list[TransitionRow] | None = None) -> JobRecord:
    values = {column.key: getattr(row, column.key) for column in JobRow.__table__.columns}
    found = [Transition(t.status, t.step, t.at) for t in transitions or []]
    return JobRecord(**values, transitions=found)


JOBS: sa.Table = JobRow.__table__  # type: ignore[assignment]
TRANSITIONS: sa.Table = TransitionRow.__table__  # type: ignore[assignment]


# Built once (a statement's construction costs more than SQLite's read of one job)
_JOB_BY_ID = sa.select(JOBS).where(JOBS.c.id == sa.bindparam("job_id"))
_JOB_BY_KEY = sa.select(JOBS).where(JOBS.c.idempotency_key == sa.bindparam("key"))
_TRANSITIONS_OF = (
    sa.select(TRANSITIONS.c.status, TRANSITIONS.c.step, TRANSITIONS.c.at)
    .where(TRANSITIONS.c.job_id == sa.bindparam("job_id"))
    .order_by(TRANSITIONS.c.id)
)
_INSERT_JOB = sa.insert(JOBS)
_INSERT_TRANSITION = sa.insert(TRANSITIONS)


def _with_transitions(connection: sa.Connection, row: sa.RowMapping) -> JobRecord:
    """The record of a job's row, with its transitions read on the same connection."""
    transitions = connection.execute(_TRANSITIONS_OF, {"job_id": row["id"]}).all()
    return JobRecord(**row, transitions=[Transition(*t) for t in transitions])


def absolute_store_url(url: str, folder: Path | None = None) -> str:
    """``url`` with a relative SQLite path made absolute against ``folder`` (default: the working one)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url[len(prefix) :] not in ("", ":memory:"):
        path = Path(url[len(prefix) :])
        if not path.is_absolute():
            return prefix + str(((folder or Path.cwd()) / path).resolve())
    return url


class Store:
    """The jobs of a service, in the database at ``url`` (migrated to the current schema on open)."""

    def __init__(self, url: str = DEFAULT_STORE, *, migrate_schema: bool = True) -> None:
        """``migrate_schema`` False: the schema is known to be current (a job's process, whose
        service opened the store first)."""
        self.url = absolute_store_url(url)
        sqlite = self.url.startswith("sqlite")
        self.engine = sa.create_engine(
            self.url,
            connect_args={"timeout": 30, "check_same_thread": False} if sqlite else {},
            pool_pre_ping=not sqlite,
        )
        if sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate_schema:
            migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # -- submitting and reading ---------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        config: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        max_runtime_s: float | None = None,
        max_retries: int = 0,
    ) -> tuple[JobRecord, bool]:
        """Commit a new queued job; with a key already used, the first job instead. (job, created)."""
        now = time.time()
        values: dict[str, Any] = {column.key: None for column in JOBS.columns}  # a column added later too
        values.update(
            id=uuid.uuid4().hex, kind=kind, config=config, status=QUEUED, progress={}, metrics={},
            created_at=now, idempotency_key=idempotency_key, max_runtime_s=max_runtime_s,
            max_retries=max_retries, attempts=0, cancel_requested=False,
        )  # fmt: skip
        try:
            with self.engine.begin() as connection:  # the job first: PostgreSQL checks the key at once
                connection.execute(_INSERT_JOB, values)
                connection.execute(
                    _INSERT_TRANSITION, {"job_id": values["id"], "status": QUEUED, "step": None, "at": now}
                )
        except IntegrityError:
            if idempotency_key is None:
                raise
            first = self.by_idempotency_key(idempotency_key)
            if first is None:
                raise
            return first, False
        # what was committed, without reading it back
        return JobRecord(**values, transitions=[Transition(QUEUED, None, now)]), True

    def by_idempotency_key(self, key: str) -> JobRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(_JOB_BY_KEY, {"key": key}).mappings().first()
            return None if row is None else _with_transitions(connection, row)

    def get(self, job_id: str) -> JobRecord | None:
        """The job with its transitions, oldest first (None: no such job)."""
        # Core statements on one connection: the ORM's session and identity map cost more than the
        # two reads (this is every status request's path)
        with self.engine.connect() as connection:
            row = connection.execute(_JOB_BY_ID, {"job_id": job_id}).mappings().first()
            return None if row is None else _with_transitions(connection, row)

    def page(
        self, *, limit: int = 100, offset: int = 0, status: str | None = None, kind: str | None = None
    ) -> tuple[list[JobRecord], int]:
        """Jobs newest first (without their transitions), and how many match in all."""
        conditions = []
        if status is not None:
            conditions.append(JobRow.status == status)
        if kind is not None:
            conditions.append(JobRow.kind == kind)
        with self._sessions() as session:
            total = session.scalar(sa.select(sa.func.count()).select_from(JobRow).where(*conditions)) or 0
            rows = session.scalars(
                sa.select(JobRow)
                .where(*conditions)
                .order_by(JobRow.created_at.desc(), JobRow.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return [_record(row) for row in rows], total

    def counts(self) -> dict[str, int]:
        """How many jobs are in each status (every status named, 0 when none)."""
        with self._sessions() as session:
            found = dict(
                session.execute(sa.select(JobRow.status, sa.func.count()).group_by(JobRow.status)).all()
            )
        return {status: int(found.get(status, 0)) for status in STATUSES}

    # -- the life of a job --------------------------------------------------------------------------

    def claim(self, worker: str) -> JobRecord | None:
        """Take the oldest queued job for ``worker`` (running now), atomically; None when none waits."""
        now = time.time()
        oldest = (
            sa.select(JobRow.id)
            .where(JobRow.status == QUEUED)
            .order_by(JobRow.created_at, JobRow.id)
            .limit(1)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite's UPDATE holds the write lock
            .scalar_subquery()
        )
        with self._write() as session:
            claimed = session.execute(
                sa.update(JobRow)
                .where(JobRow.id == oldest, JobRow.status == QUEUED)
                .values(
                    status=RUNNING, worker=worker, started_at=now, heartbeat_at=now,
                    attempts=JobRow.attempts + 1, message="started",
                )
                .returning(JobRow.id)
            ).scalar()  # fmt: skip
            if claimed is None:
                return None
            session.add(TransitionRow(job_id=claimed, status=RUNNING, step=None, at=now))
        return self.get(claimed)

    def step(self, job_id: str, title: str, progress: dict[str, Any]) -> None:
        """Record that the running job started step ``title``, with its progress now."""
        now = time.time()
        with self._write() as session:
            changed = session.execute(
                sa.update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == RUNNING)
                .values(progress=progress, message=title, heartbeat_at=now)
            ).rowcount  # type: ignore[attr-defined]
            if changed:
                session.add(TransitionRow(job_id=job_id, status=RUNNING, step=title, at=now))

    def update(self, job_id: str, **values: Any) -> None:
        """Set fields of a running job (progress, run_id, metrics, model_version, message)."""
        with self._write() as session:
            session.execute(
                sa.update(JobRow).where(JobRow.id == job_id, JobRow.status == RUNNING).values(**values)
            )

    def finish(
        self,
        job_id: str,
        status: str,
        message: str,
        *,
        failure_reason: str | None = None,
        error_type: str | None = None,
        attempt: int | None = None,
        **values: Any,
    ) -> bool:
        """End a running job in a final status; False if it had already ended (or, with ``attempt``,
        if that attempt is no longer the one running: a job queued again and claimed anew)."""
        assert status in FINAL
        now = time.time()
        current = [] if attempt is None else [JobRow.attempts == attempt]
        with self._write() as session:
            changed = session.execute(
                sa.update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == RUNNING, *current)
                .values(
                    status=status, message=message, failure_reason=failure_reason,
                    error_type=error_type, ended_at=now, **values,
                )
            ).rowcount  # type: ignore[attr-defined]  # fmt: skip
            if changed:
                session.add(TransitionRow(job_id=job_id, status=status, step=None, at=now))
        return bool(changed)

    def requeue(self, job_id: str, message: str, attempt: int | None = None) -> bool:
        """Put a running job back in the queue (a retry); False if it was not running (or, with
        ``attempt``, not in that attempt)."""
        now = time.time()
        current = [] if attempt is None else [JobRow.attempts == attempt]
        with self._write() as session:
            changed = session.execute(
                sa.update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == RUNNING, *current)
                .values(status=QUEUED, message=message, worker=None, process=None, run_id=None, progress={})
            ).rowcount  # type: ignore[attr-defined]
            if changed:
                session.add(TransitionRow(job_id=job_id, status=QUEUED, step=message, at=now))
        return bool(changed)

    def set_process(self, job_id: str, attempt: int, process: str) -> None:
        """Record the process that runs ``attempt`` of the job (its worker token)."""
        with self._write() as session:
            session.execute(
                sa.update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == RUNNING, JobRow.attempts == attempt)
                .values(process=process)
            )

    def request_cancel(self, job_id: str) -> JobRecord | None:
        """A queued job is cancelled at once (it never starts); a running one is marked for its worker
        to stop. The job as it is then (None: no such job)."""
        now = time.time()
        with self._write() as session:
            cancelled = session.execute(
                sa.update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == QUEUED)
                .values(status=CANCELLED, message="cancelled before it started", ended_at=now)
            ).rowcount  # type: ignore[attr-defined]
            if cancelled:
                session.add(TransitionRow(job_id=job_id, status=CANCELLED, step=None, at=now))
            else:
                session.execute(
                    sa.update(JobRow)
                    .where(JobRow.id == job_id, JobRow.status == RUNNING)
                    .values(cancel_requested=True, message="cancelling")
                )
        return self.get(job_id)

    def cancel_requested(self, job_ids: list[str]) -> list[str]:
        """Those of ``job_ids`` whose cancellation was asked."""
        if not job_ids:
            return []
        with self._sessions() as session:
            return list(
                session.scalars(
                    sa.select(JobRow.id).where(JobRow.id.in_(job_ids), JobRow.cancel_requested.is_(True))
                )
            )

    def heartbeat(self, job_ids: list[str]) -> None:
        """The worker of these running jobs is alive."""
        if job_ids:
            with self._write() as session:
                session.execute(
                    sa.update(JobRow)
                    .where(JobRow.id.in_(job_ids), JobRow.status == RUNNING)
                    .values(heartbeat_at=time.time())
                )

    def running(self) -> list[JobRecord]:
        """Every running job, whichever worker has it."""
        with self._sessions() as session:
            rows = session.scalars(sa.select(JobRow).where(JobRow.status == RUNNING)).all()
            return [_record(row) for row in rows]

    def delete(self, job_id: str) -> bool:
        """Remove a finished job and its transitions; False if it is not finished (or not there)."""
        with self._write() as session:
            session.execute(
                sa.delete(TransitionRow).where(
                    TransitionRow.job_id == job_id,
                    TransitionRow.job_id.in_(sa.select(JobRow.id).where(JobRow.status.in_(FINAL))),
                )
            )
            deleted = session.execute(
                sa.delete(JobRow).where(JobRow.id == job_id, JobRow.status.in_(FINAL))
            ).rowcount  # type: ignore[attr-defined]
        return bool(deleted)

    # -- retention ----------------------------------------------------------------------------------

    def prune(
        self, *, keep_days: float | None = None, keep_jobs: int | None = None, now: float | None = None
    ) -> list[str]:
        """Delete the finished jobs past retention; their ids. Queued and running jobs are never touched.

        A finished job goes when it ended more than ``keep_days`` days before ``now``, or when it is
        not among the ``keep_jobs`` that ended last (newest first by end, then creation). ``None``
        leaves that rule out; with both ``None`` nothing is deleted.
        """
        if keep_days is None and keep_jobs is None:
            return []
        ended = sa.func.coalesce(JobRow.ended_at, JobRow.created_at)
        finished = JobRow.status.in_(FINAL)
        rules = []
        if keep_days is not None:
            rules.append(ended < (time.time() if now is None else now) - keep_days * 86_400)
        if keep_jobs is not None:
            kept = (
                sa.select(JobRow.id)
                .where(finished)
                .order_by(ended.desc(), JobRow.created_at.desc(), JobRow.id.desc())
                .limit(keep_jobs)
            )
            rules.append(JobRow.id.not_in(kept))
        with self._write() as session:
            doomed = list(session.scalars(sa.select(JobRow.id).where(finished, sa.or_(*rules))))
            for start in range(0, len(doomed), 500):  # bounded IN lists
                chunk = doomed[start : start + 500]
                session.execute(sa.delete(TransitionRow).where(TransitionRow.job_id.in_(chunk)))
                session.execute(sa.delete(JobRow).where(JobRow.id.in_(chunk), finished))
        return doomed


def _sqlite_pragmas(connection: Any, record: object) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cursor.execute("PRAGMA foreign_keys=ON")
    # each commit is in the WAL file before it returns: a killed service loses nothing (a power cut
    # may lose the last commits, as the WAL is synced at checkpoints only)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


_migrating = threading.Lock()  # Alembic's commands keep module-global state: one at a time


def migrate(engine: sa.Engine) -> None:
    """Bring the store's schema to the current revision (creating it in an empty database)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with _migrating, engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
