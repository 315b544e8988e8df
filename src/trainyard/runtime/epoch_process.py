"""The epoch writer process: a second process that does a training's MLflow writes of its epochs.

A checkpoint costs MLflow about 60 ms of Python (SQLAlchemy, the model's files); on a thread it
would take most of that from the training through the GIL, so the writes are done in a process of
their own, on another core. The job's side (``WriterProcess``) sends each write as a pickled
``(method, args)`` of ``EpochWrites`` (io/checkpoints.py) and gets a ``Future`` of its answer: the
checkpoints complete after it, or the error. The writer answers in order, one answer a request;
after a failed write it does no other (they would be out of order) and answers each with the
failure. It runs in a session of its own (Ctrl-C and a scheduler's SIGTERM are the job's to handle:
the job then waits for what it asked) and, on Linux, dies with the job, even by kill -9.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import IO, Any

from trainyard.errors import ModelRegistryError

WRITER_COMMAND = [sys.executable, "-m", "trainyard.runtime.epoch_process"]  # + the job's pid
METHODS = frozenset({"log", "checkpoint", "delete"})  # what a request may call; "open" comes first
_SIZE = 8  # the bytes of a request's length, before its pickle
CLOSE_SECONDS = 30.0  # how long closing waits for the writer to exit before it is killed


@dataclass(frozen=True)
class Setup:
    """What the writer needs to write as the job would: the run, the MLflow URIs, and the job's
    working folder, arguments and import path (MLflow's context tags, a model class to unpickle)."""

    run_id: str
    serialization: str
    checkpoints: dict[int, str]
    tracking_uri: str
    registry_uri: str
    cwd: str
    argv: list[str]
    path: list[str]

    @classmethod
    def here(cls, run_id: str, serialization: str, checkpoints: dict[int, str]) -> Setup:
        """The setup of this process, now."""
        import mlflow

        return cls(
            run_id,
            serialization,
            dict(checkpoints),
            mlflow.get_tracking_uri(),
            mlflow.get_registry_uri(),
            os.getcwd(),
            list(sys.argv),
            list(sys.path),
        )


class WriterProcess:
    """The job's end: ``submit`` sends a request and returns the future of its answer; once the
    writer is gone every future fails with a ``ModelRegistryError`` that says so. Made: the writer
    is started (OSError if it cannot be) and opened with ``setup``."""

    def __init__(self, setup: Setup) -> None:
        self.process = subprocess.Popen(
            [*WRITER_COMMAND, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self._waiting: deque[Future[Any]] = deque()
        self._lock = threading.Lock()
        self._gone: str | None = None  # why the writer cannot answer any more
        self._reader = threading.Thread(target=self._read, name="trainyard-epoch-answers", daemon=True)
        self._reader.start()
        self.submit("open", setup)

    def submit(self, method: str, *args: Any) -> Future[Any]:
        """Send ``method(*args)`` to the writer; the future of its answer."""
        future: Future[Any] = Future()
        with self._lock:
            if self._gone is None:
                self._waiting.append(future)
                try:
                    assert self.process.stdin is not None
                    request = pickle.dumps((method, args), protocol=pickle.HIGHEST_PROTOCOL)
                    self.process.stdin.write(len(request).to_bytes(_SIZE, "big") + request)
                    self.process.stdin.flush()
                    return future
                except (OSError, ValueError):
                    self._waiting.pop()
                    self._gone = self._stopped()
            future.set_exception(ModelRegistryError(self._gone))
        return future

    def close(self) -> None:
        """End the writer once it has answered everything (killed if it takes CLOSE_SECONDS)."""
        with self._lock, contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(CLOSE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(CLOSE_SECONDS)
        with contextlib.suppress(OSError):
            assert self.process.stdout is not None
            self.process.stdout.close()

    def _stopped(self) -> str:
        """Why the writer answers no more: its exit (it closed its pipes, so it is exiting)."""
        try:
            code: int | str = self.process.wait(CLOSE_SECONDS)
        except subprocess.TimeoutExpired:
            code = "none yet"
        return f"the epoch writer process stopped (exit code {code})"

    def _read(self) -> None:
        """Settle the futures with the writer's answers, in order; fail the rest when it is gone."""
        assert self.process.stdout is not None
        while True:
            try:
                ok, value = pickle.load(self.process.stdout)
            except Exception:
                break
            with self._lock:
                future = self._waiting.popleft()
            if ok:
                future.set_result(value)
            else:
                future.set_exception(ModelRegistryError(value))
        with self._lock:
            self._gone = self._gone or self._stopped()
            waiting, self._waiting = list(self._waiting), deque()
        for future in waiting:
            future.set_exception(ModelRegistryError(self._gone))


# -- the writer ------------------------------------------------------------------------------------


def serve(parent: int, requests: IO[bytes], answers: IO[bytes]) -> int:
    """Do the job's requests in order until the pipe ends; answer each."""
    from trainyard.runtime.processes import parent_death_tie

    parent_death_tie()(parent)  # Linux: killed with the job, even by kill -9
    inbox = _drain(requests)
    from trainyard.io.checkpoints import EpochWrites  # the heavy imports, while the job starts training

    writes: EpochWrites | None = None
    failure: str | None = None
    try:
        while (request := inbox.get()) is not None:
            method, args = pickle.loads(request)
            if failure is not None:
                _answer(answers, False, failure)
                continue
            try:
                if method == "open":
                    setup = _apply(*args)
                    writes = EpochWrites(setup.run_id, setup.serialization, setup.checkpoints)
                    result: Any = None
                elif method in METHODS and writes is not None:
                    result = getattr(writes, method)(*args)
                else:
                    raise ValueError(f"unexpected request {method!r}")
            except BaseException as error:  # every failure is the job's to raise
                failure = _describe(error)
                _answer(answers, False, failure)
                continue
            _answer(answers, True, result)
    finally:
        if writes is not None:
            writes.close()
    return 0


def _apply(setup: Setup) -> Setup:
    """Make this process write as the job would (its folder, arguments, import path, MLflow URIs)."""
    import mlflow

    os.chdir(setup.cwd)
    sys.argv[:] = setup.argv
    sys.path[:] = setup.path
    mlflow.set_tracking_uri(setup.tracking_uri)
    mlflow.set_registry_uri(setup.registry_uri)
    return setup


def _describe(error: BaseException) -> str:
    """The text of the job's error: a registry error's own, else what failed and why."""
    if isinstance(error, ModelRegistryError):
        return str(error)
    return f"writing the epochs to MLflow failed: {type(error).__name__}: {error}"


def _answer(answers: IO[bytes], ok: bool, value: Any) -> None:
    pickle.dump((ok, value), answers, protocol=pickle.HIGHEST_PROTOCOL)
    answers.flush()


def _drain(requests: IO[bytes]) -> queue.Queue[bytes | None]:
    """Read the requests as they come (the job never waits on a full pipe while MLflow loads), as
    bytes: unpickling one imports what it holds (MLflow's signature), which only the main thread may
    do while it imports MLflow itself."""
    inbox: queue.Queue[bytes | None] = queue.Queue()

    def read() -> None:
        while len(size := requests.read(_SIZE)) == _SIZE:
            length = int.from_bytes(size, "big")
            if len(request := requests.read(length)) < length:
                break
            inbox.put(request)
        inbox.put(None)  # the end of the pipe: the job is done (or gone)

    threading.Thread(target=read, name="trainyard-epoch-requests", daemon=True).start()
    return inbox


if __name__ == "__main__":  # messages must unpickle as this module's classes, not __main__'s
    from trainyard.runtime.epoch_process import serve as serve_from_module
    from trainyard.runtime.processes import serve_as_writer

    serve_as_writer(serve_from_module)
