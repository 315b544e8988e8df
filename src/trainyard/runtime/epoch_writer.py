"""The epoch writer: what a training in epochs asks MLflow to write as it goes, done in order while
the training goes on.

Contract. The training thread calls ``log``, ``checkpoint`` and ``delete`` in epoch order; each
returns at once, and the writes (``EpochWrites``, io/checkpoints.py) are done in that same order,
where ``where`` says: ``process`` (a writer process on another core, runtime/epoch_process.py),
``thread`` (one background thread) or ``inline`` (in the calling thread). So a checkpoint is READY
before its epoch's metrics are logged (linked to it), and an old checkpoint is deleted only after a
newer one is READY. ``checkpoint`` pickles the model when it is called (training goes on changing
it); the pickles not yet written are bounded (PENDING_BYTES, and always one), so a slow store slows
the training instead of piling up copies. ``join`` waits for every write and raises the first error
(a ``ModelRegistryError``); after an error every call raises it. A process killed mid-write leaves
at most a PENDING logged model, which a resume deletes, and loses only metrics not yet written, which
a resume recomputes and logs.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, Protocol

from trainyard.errors import ModelRegistryError
from trainyard.io.checkpoints import Checkpoints, EpochWrites, Written
from trainyard.io.logging import get_logger
from trainyard.runtime.processes import usable_cores

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlflow.models.signature import ModelSignature

    from trainyard.io.savers import SklearnSaver

Where = Literal["process", "thread", "inline"]
PENDING_BYTES = 64 * 2**20  # the checkpoints' pickles that may wait to be written (one always may)


def where_to_write(checkpoints: bool, background: bool) -> Where:
    """Checkpoints in the background: in a writer process where a second core can take it, else on
    a thread; the epochs' metrics alone (one request an epoch) on a thread; ``inline`` if asked."""
    if not background:
        return "inline"
    return "process" if checkpoints and usable_cores() >= 2 else "thread"


class _Backend(Protocol):
    def submit(self, method: str, *args: Any) -> Future[Any]: ...

    def close(self) -> None: ...


class _Local:
    """The writes in this process: on one thread, or in the caller's (``threaded`` False). After a
    failed write the later ones fail with its error (they would be out of order)."""

    def __init__(self, writes: EpochWrites, threaded: bool) -> None:
        self.writes = writes
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="trainyard-checkpoints") if threaded else None
        self.failure: BaseException | None = None

    def submit(self, method: str, *args: Any) -> Future[Any]:
        if self.pool is not None:
            return self.pool.submit(self._call, method, args)
        future: Future[Any] = Future()
        try:
            future.set_result(self._call(method, args))
        except BaseException as error:
            future.set_exception(error)
        return future

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.writes.close()

    def _call(self, method: str, args: tuple[Any, ...]) -> Any:
        if self.failure is not None:
            raise self.failure
        try:
            return getattr(self.writes, method)(*args)
        except BaseException as error:
            self.failure = error
            raise


class EpochWriter:
    """Writes the epochs of run ``run_id`` (see the module's contract). ``checkpoints``: those a
    resumed run has, and then those complete as of the last answer read (all of them after
    ``join``); ``signature`` is called once, in the training thread, at the first checkpoint."""

    def __init__(
        self,
        run_id: str,
        saver: SklearnSaver,
        signature: Callable[[], ModelSignature],
        checkpoints: Checkpoints | None = None,
        where: Where = "thread",
    ) -> None:
        self.run_id = run_id
        self.signature = signature
        self.checkpoints: Checkpoints = dict(checkpoints or {})
        self.where = where
        self._backend = self._start(saver.serialization, where)
        self._pending: deque[Future[Any]] = deque()  # in the order asked; answers read in that order
        self._unwritten: deque[tuple[Future[Any], int]] = deque()  # checkpoints asked, their bytes
        self._error: BaseException | None = None

    def log(self, epoch: int, metrics: dict[str, float]) -> None:
        """Log ``metrics`` at step ``epoch`` (linked to the epoch's checkpoint, if it has one) and the
        epochs done."""
        self._submit("log", epoch, metrics, int(time.time() * 1000))

    def checkpoint(self, epoch: int, model: Any) -> bytes:
        """Save ``model`` as the checkpoint of ``epoch``; its pickle, taken now (a copy to keep)."""
        import cloudpickle

        signature = self.signature()
        payload = cloudpickle.dumps(model)
        while self._unwritten and self._unwritten[0][0].done():
            self._unwritten.popleft()
        while self._unwritten and sum(size for _, size in self._unwritten) + len(payload) > PENDING_BYTES:
            self._read(until=self._unwritten.popleft()[0])
        future = self._submit("checkpoint", epoch, payload, signature)
        self._unwritten.append((future, len(payload)))
        return payload

    def delete(self, epochs: list[int]) -> None:
        """Delete the checkpoints of ``epochs`` (once those asked before are written)."""
        if epochs:
            self._submit("delete", epochs)

    def join(self) -> None:
        """Wait until everything asked is written; raise the first error."""
        if self._pending:
            self._read(until=self._pending[-1])
        self._raise()

    def close(self) -> None:
        """Wait for the writes (errors are the caller's to ``join`` for) and free the writer."""
        with contextlib.suppress(ModelRegistryError):
            self.join()
        self._backend.close()

    def _start(self, serialization: str, where: Where) -> _Backend:
        if where == "process":
            from trainyard.runtime.epoch_process import Setup, WriterProcess

            try:
                return WriterProcess(Setup.here(self.run_id, serialization, self.checkpoints))
            except OSError as error:
                get_logger().debug("no epoch writer process (%s): writing on a thread", error)
                self.where = "thread"
        return _Local(EpochWrites(self.run_id, serialization, self.checkpoints), self.where == "thread")

    def _submit(self, method: str, *args: Any) -> Future[Any]:
        self._read()
        self._raise()
        future = self._backend.submit(method, *args)
        self._pending.append(future)
        self._read()  # inline: done already
        self._raise()
        return future

    def _read(self, until: Future[Any] | None = None) -> None:
        """Take in the answers that are there, in order (waiting for those up to ``until``): keep
        the first error, the checkpoints complete, and say which were deleted."""
        while self._pending and (until is not None or self._pending[0].done()):
            future = self._pending.popleft()
            error = future.exception()  # waits, for one up to ``until``
            if error is not None:
                self._error = self._error or error
            elif isinstance(written := future.result(), Written):
                self.checkpoints = written.checkpoints
                for epoch, model_id in written.deleted.items():
                    get_logger().info(
                        "deleted the checkpoint of epoch %d (%s): not among those kept", epoch, model_id
                    )
            if future is until:
                return

    def _raise(self) -> None:
        if self._error is not None:
            error = self._error
            if isinstance(error, ModelRegistryError):
                raise error
            raise ModelRegistryError(f"writing the epochs to MLflow failed: {error}") from error
