"""The MLflow writes of a training in epochs: each epoch's metrics, its checkpoints (MLflow logged
models with their step) and the deletion of old ones.

Contract. ``EpochWrites`` does each write when it is called, in the order it is called, and returns
what it left (``Written``: the checkpoints complete, epoch -> logged model id, and those deleted). It holds no thread: the epoch writer
(runtime/epoch_writer.py) calls it in the training thread, on a thread, or in a writer process.
A checkpoint is READY before the metrics of its epoch are logged (they are linked to it); a process
killed mid-write leaves at most a PENDING logged model, which a resume deletes (jobs/resuming.py).

A checkpoint is lighter than ``log_model``: no input example and no serving check; the first
checkpoint is saved by MLflow's scikit-learn flavor with the pinned requirements, and the later
ones reuse its environment files and MLmodel (with their own ids), with the model pickled once.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainyard.errors import ModelRegistryError
from trainyard.io.savers import pinned_requirements
from trainyard.records import CHECKPOINT_EPOCH_TAG, EPOCHS_DONE_TAG

if TYPE_CHECKING:
    from mlflow.models.signature import ModelSignature

CHECKPOINT_NAME = "checkpoint"
_MLMODEL = "MLmodel"

Checkpoints = dict[int, str]  # epoch -> the id of its logged model, for the complete ones


@dataclass(frozen=True)
class Written:
    """What a write leaves: the checkpoints complete after it, and those it deleted."""

    checkpoints: Checkpoints
    deleted: Checkpoints = field(default_factory=dict)


class EpochWrites:
    """The writes of run ``run_id``'s epochs; ``serialization``: the saver's (cloudpickle or
    pickle); ``checkpoints``: those a resumed run has already."""

    def __init__(self, run_id: str, serialization: str, checkpoints: Checkpoints | None = None) -> None:
        self.run_id = run_id
        self.serialization = serialization
        self.checkpoints: Checkpoints = dict(checkpoints or {})
        self._folder = Path(tempfile.mkdtemp(prefix="trainyard-checkpoints-"))
        self._template: Path | None = None  # the first checkpoint's folder, as MLflow wrote it
        self._template_model: Any = None  # its MLmodel, reused with each checkpoint's ids
        self._model_record: tuple[str, dict[str, str], dict[str, str]] | None = None

    def log(self, epoch: int, metrics: dict[str, float], now: int) -> Written:
        """Log ``metrics`` at step ``epoch`` and time ``now`` (ms), linked to the epoch's checkpoint if
        it has one, and the epochs done."""
        from mlflow import MlflowClient
        from mlflow.entities import Metric, RunTag

        model_id = self.checkpoints.get(epoch)
        MlflowClient().log_batch(
            self.run_id,
            metrics=[Metric(key, value, now, epoch, model_id=model_id) for key, value in metrics.items()],
            tags=[RunTag(EPOCHS_DONE_TAG, str(epoch))],
        )
        return Written(dict(self.checkpoints))

    def checkpoint(self, epoch: int, payload: bytes, signature: ModelSignature) -> Written:
        """Save the model pickled in ``payload`` as the checkpoint of ``epoch``."""
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
        return Written(dict(self.checkpoints))

    def delete(self, epochs: list[int]) -> Written:
        """Delete the checkpoints of ``epochs``."""
        from mlflow import MlflowClient

        client = MlflowClient()
        deleted = {}
        for epoch in epochs:
            deleted[epoch] = model_id = self.checkpoints.pop(epoch)
            client.delete_logged_model(model_id)
        return Written(dict(self.checkpoints), deleted)

    def close(self) -> None:
        """Remove the files kept between checkpoints."""
        shutil.rmtree(self._folder, ignore_errors=True)

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
        if self._template is None or self.serialization != "cloudpickle":
            import mlflow.sklearn

            model = cloudpickle.loads(payload)
            mlflow.sklearn.save_model(
                path=str(folder),
                sk_model=model,
                mlflow_model=record,
                signature=signature,
                pip_requirements=pinned_requirements(model),
                serialization_format=self.serialization,
            )
            if self.serialization == "cloudpickle":
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
