"""What a training in epochs writes to MLflow as it goes: each epoch's metrics, its checkpoints (MLflow
logged models with their step) and the deletion of old ones, in order, on one background thread.

Contract. The training thread calls ``log``, ``checkpoint`` and ``delete`` in epoch order and
returns at once; one writer thread does the writes in that same order, so a checkpoint is READY
before its epoch's metrics are logged (linked to it), and an old checkpoint is deleted only after a
newer one is READY. ``checkpoint`` pickles the model when it is called (training goes on changing
it), and waits first for the previous checkpoint to be written: at most one is ever pending, so a
slow store slows the training instead of piling up copies. ``join`` waits for every write and raises
the first error; after an error every call raises it. A process killed mid-write leaves at most a
PENDING logged model, which a resume deletes (jobs/resuming.py), and loses only metrics not yet
written, which a resume recomputes and logs.

A checkpoint is lighter than ``log_model``: no input example and no serving check; the first
checkpoint is saved by MLflow's scikit-learn flavor with the pinned requirements, and the later
ones reuse its environment files and MLmodel (with their own ids), with the model pickled once.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainyard.errors import ModelRegistryError
from trainyard.io.logging import get_logger
from trainyard.io.savers import SklearnSaver, pinned_requirements
from trainyard.records import CHECKPOINT_EPOCH_TAG, EPOCHS_DONE_TAG

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlflow.models.signature import ModelSignature

CHECKPOINT_NAME = "checkpoint"
_MLMODEL = "MLmodel"


class EpochWriter:
    """Writes the epochs of run ``run_id`` (see the module's contract); ``background=False`` writes
    each in the calling thread instead (the same order and records, without the overlap)."""

    def __init__(
        self,
        run_id: str,
        saver: SklearnSaver,
        signature: Callable[[], ModelSignature],
        checkpoints: dict[int, str] | None = None,
        background: bool = True,
    ) -> None:
        self.run_id = run_id
        self.saver = saver
        self.signature = signature  # made on first use, in the training thread
        self.checkpoints: dict[int, str] = dict(checkpoints or {})  # epoch -> model id, complete ones
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="trainyard-checkpoints") if background else None
        self._pending: list[Future[None]] = []
        self._last_checkpoint: Future[None] | None = None
        self._error: BaseException | None = None
        self._folder = Path(tempfile.mkdtemp(prefix="trainyard-checkpoints-"))
        self._template: Path | None = None  # the first checkpoint's folder, as MLflow wrote it
        self._template_model: Any = None  # its MLmodel, reused with each checkpoint's ids
        self._model_record: tuple[str, dict[str, str], dict[str, str]] | None = None

    def log(self, epoch: int, metrics: dict[str, float]) -> None:
        """Log ``metrics`` at step ``epoch`` (linked to the epoch's checkpoint, if it has one) and the
        epochs done."""
        self._submit(self._log, epoch, metrics, int(time.time() * 1000))

    def checkpoint(self, epoch: int, model: Any) -> bytes:
        """Save ``model`` as the checkpoint of ``epoch``; its pickle, taken now (a copy to keep)."""
        import cloudpickle

        signature = self.signature()
        if self._last_checkpoint is not None:  # at most one checkpoint pending
            self._wait(self._last_checkpoint)
        payload = cloudpickle.dumps(model)
        self._last_checkpoint = self._submit(self._write_checkpoint, epoch, payload, signature)
        return payload

    def delete(self, epochs: list[int]) -> None:
        """Delete the checkpoints of ``epochs`` (once those asked before are written)."""
        if epochs:
            self._submit(self._delete, epochs)

    def join(self) -> None:
        """Wait until everything asked is written; raise the first error."""
        for future in self._pending:
            self._wait(future)
        self._pending.clear()
        self._raise()

    def close(self) -> None:
        """Wait for the writes (errors are the caller's to ``join`` for) and free the thread and files."""
        for future in self._pending:
            with contextlib.suppress(BaseException):  # kept in self._error by _run: join raises it
                future.result()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        shutil.rmtree(self._folder, ignore_errors=True)

    def _submit(self, task: Callable[..., None], *args: Any) -> Future[None]:
        self._raise()
        self._pending = [future for future in self._pending if not future.done()]
        if self._pool is None:
            future: Future[None] = Future()
            with contextlib.suppress(Exception):  # kept in self._error: raised as the others are
                self._run(task, *args)
            future.set_result(None)
            self._raise()
            return future
        future = self._pool.submit(self._run, task, *args)
        self._pending.append(future)
        return future

    def _run(self, task: Callable[..., None], *args: Any) -> None:
        if self._error is not None:  # an earlier write failed: the later ones would be out of order
            return
        try:
            task(*args)
        except BaseException as error:
            self._error = error
            raise

    def _wait(self, future: Future[None]) -> None:
        try:
            future.result()
        except BaseException:
            self._raise()
            raise

    def _raise(self) -> None:
        if self._error is not None:
            error = self._error
            if isinstance(error, ModelRegistryError):
                raise error
            raise ModelRegistryError(f"writing the epochs to MLflow failed: {error}") from error

    # in the writer thread

    def _log(self, epoch: int, metrics: dict[str, float], now: int) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Metric, RunTag

        model_id = self.checkpoints.get(epoch)
        MlflowClient().log_batch(
            self.run_id,
            metrics=[Metric(key, value, now, epoch, model_id=model_id) for key, value in metrics.items()],
            tags=[RunTag(EPOCHS_DONE_TAG, str(epoch))],
        )

    def _write_checkpoint(self, epoch: int, payload: bytes, signature: ModelSignature) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        client = MlflowClient()
        experiment_id, params, tags = self._record(client)
        model = client.create_logged_model(
            experiment_id,
            name=CHECKPOINT_NAME,
            source_run_id=self.run_id,
            tags={**tags, CHECKPOINT_EPOCH_TAG: str(epoch)},
            params=params,
        )
        try:
            folder = self._folder / str(epoch)
            self._save(folder, model, payload, signature)
            client.log_model_artifacts(model.model_id, str(folder))
            if folder != self._template:
                shutil.rmtree(folder, ignore_errors=True)
            client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        except BaseException as error:
            client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
            raise ModelRegistryError(f"saving the checkpoint of epoch {epoch} failed: {error}") from error
        client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, step=epoch)])
        self.checkpoints[epoch] = model.model_id

    def _record(self, client: Any) -> tuple[str, dict[str, str], dict[str, str]]:
        """The experiment, params (the run's) and context tags of every checkpoint: read once."""
        if self._model_record is None:
            from mlflow.tracking.context import registry

            run = client.get_run(self.run_id)
            self._model_record = (run.info.experiment_id, dict(run.data.params), registry.resolve_tags({}))
        return self._model_record

    def _save(self, folder: Path, logged: Any, payload: bytes, signature: ModelSignature) -> None:
        """The MLflow model folder of checkpoint ``logged``: MLflow's own save the first time (or for
        a serialization other than cloudpickle), then the first one's files with this model's pickle."""
        import cloudpickle
        from mlflow.models import Model

        record = Model(
            artifact_path=logged.artifact_location,
            model_uuid=logged.model_id,
            run_id=self.run_id,
            model_id=logged.model_id,
        )
        if self._template is None or self.saver.serialization != "cloudpickle":
            import mlflow.sklearn

            model = cloudpickle.loads(payload)
            mlflow.sklearn.save_model(
                path=str(folder),
                sk_model=model,
                mlflow_model=record,
                signature=signature,
                pip_requirements=pinned_requirements(model),
                serialization_format=self.saver.serialization,
            )
            if self.saver.serialization == "cloudpickle":
                self._template = folder
            return
        if self._template_model is None:  # parsed once: about a tenth of a light checkpoint's time
            self._template_model = Model.load(str(self._template / _MLMODEL))
        template = self._template_model
        pickled = template.flavors["sklearn"]["pickled_model"]
        folder.mkdir(parents=True)
        for item in self._template.iterdir():
            if item.name not in (_MLMODEL, pickled) and item.is_file():
                shutil.copyfile(item, folder / item.name)
        (folder / pickled).write_bytes(payload)
        template.artifact_path, template.run_id = record.artifact_path, self.run_id
        template.model_uuid = template.model_id = logged.model_id
        template.utc_time_created = record.utc_time_created
        template.model_size_bytes = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        template.save(str(folder / _MLMODEL))

    def _delete(self, epochs: list[int]) -> None:
        from mlflow import MlflowClient

        client = MlflowClient()
        for epoch in epochs:
            model_id = self.checkpoints.pop(epoch)
            client.delete_logged_model(model_id)
            get_logger().info(
                "deleted the checkpoint of epoch %d (%s): not among those kept", epoch, model_id
            )
