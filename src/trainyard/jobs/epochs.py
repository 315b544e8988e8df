"""The epoch loop of a training job: fit an epoch, score it, log it with its step, checkpoint, prune
old checkpoints, stop early; and continue a resumed run where its last checkpoint left it."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainyard.core.iterative import Best, EpochLearner, Epochs, checkpoints_to_delete, how_it_learns
from trainyard.core.metrics import Metric, class_labels
from trainyard.core.models import SklearnModel
from trainyard.errors import TrainingJobError
from trainyard.io.logging import get_logger
from trainyard.io.savers import SklearnSaver
from trainyard.records import (
    BEST_EPOCH_TAG,
    CHECKPOINT_EPOCH_TAG,
    EPOCHS_DONE_TAG,
    FINAL_EPOCH_TAG,
    STOPPED_EPOCH_TAG,
)
from trainyard.runtime.cancellation import Cancellation

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models.signature import ModelSignature
    from sklearn.pipeline import Pipeline

    from trainyard.core.signers import SignerKind
    from trainyard.jobs.resuming import Resumption

CHECKPOINT_NAME = "checkpoint"
TRAIN_PREFIX = "train_"


@dataclass
class Rows:
    """The train rows and the validation rows (the splitter's held-out part)."""

    inputs_train: pd.DataFrame
    targets_train: pd.DataFrame
    inputs_valid: pd.DataFrame
    targets_valid: pd.DataFrame


@dataclass
class Outcome:
    """What the epochs made: the final pipeline, its epoch, and what happened on the way."""

    pipeline: Pipeline
    final_epoch: int
    last_epoch: int
    best_epoch: int | None
    stopped_epoch: int | None
    fit_time: float
    deleted: list[int]

    def summary(self) -> str:
        """One line for the step's log."""
        stopped = f", stopped early at {self.stopped_epoch}" if self.stopped_epoch is not None else ""
        best = f", best {self.best_epoch}" if self.best_epoch is not None else ""
        return f"{self.last_epoch} epochs{stopped}{best}; final model: epoch {self.final_epoch}"


class EpochTraining:
    """Trains ``model`` for ``epochs`` into the MLflow run ``run_id``.

    Every epoch logs each metric on the validation rows (``rmse``) and on the train rows
    (``train_rmse``), and ``epoch_time``, at ``step=epoch`` (from 1), with the epochs done as a tag,
    in one request. A checkpoint is a logged model named ``checkpoint`` with the epoch as its step
    and tag, and the epoch's metrics linked to it. A resumed run continues after its checkpoint:
    the epochs it had logged beyond it are recomputed without being logged again.
    """

    def __init__(
        self,
        epochs: Epochs,
        metrics: list[Metric],
        saver: SklearnSaver,
        signer: SignerKind,
        cancellation: Cancellation,
        run_id: str,
    ) -> None:
        self.epochs = epochs
        self.metrics = metrics
        self.saver = saver
        self.signer = signer
        self.cancellation = cancellation
        self.run_id = run_id
        monitored = epochs.monitored([m.name for m in metrics])
        self.monitored = next(m for m in metrics if m.name == monitored)
        stopping = epochs.early_stopping
        self.stopping = Best(self.monitored.direction, stopping.min_delta) if stopping else None
        self.best = Best(self.monitored.direction)  # among the checkpoints
        self.overall = Best(self.monitored.direction)  # among all epochs
        self.checkpoints: dict[int, str] = {}  # epoch -> logged model id
        self._best_copy: tuple[int, Pipeline] | None = None
        self._signature: ModelSignature | None = None
        self._labels: list[Any] | None = None

    def train(
        self, model: SklearnModel, rows: Rows, targets: pd.DataFrame, resumed: Resumption | None
    ) -> Outcome:
        """Run the epochs (from 1, or after ``resumed``'s checkpoint); ``targets``: all of them, for
        the classes of a classifier and of probability metrics."""
        how = how_it_learns(model.estimator)
        assert how is not None  # the job's validation refused other estimators
        classes = class_labels(targets) if model.is_classifier else None
        self._labels = classes if any(m.needs_proba for m in self.metrics) else None
        if resumed is None:
            learner = EpochLearner(model.build(rows.inputs_train), how, self.epochs.growth(how), classes)
            learner.fit_preprocessing(rows.inputs_train)
            first, quiet_until = 1, 0
        else:
            learner = EpochLearner(
                _load(resumed.checkpoints[resumed.checkpoint]), how, self.epochs.growth(how), classes
            )
            self._replay(resumed)
            first, quiet_until = resumed.checkpoint + 1, resumed.logged_up_to
        fit_time, epoch, stopped, deleted = 0.0, first - 1, None, []
        for epoch in range(first, self.epochs.count + 1):
            self.cancellation.check()
            start = time.perf_counter()
            try:
                learner.epoch(epoch, rows.inputs_train, rows.targets_train)
            except (TypeError, ValueError) as error:
                raise TrainingJobError(f"{model.estimator} failed to fit epoch {epoch}: {error}") from error
            seconds = time.perf_counter() - start
            fit_time += seconds
            valid = self._scores(learner, rows.inputs_valid, rows.targets_valid)
            train = self._scores(learner, rows.inputs_train, rows.targets_train)
            model_id = None
            if self._checkpoint_due(epoch):
                model_id = self._save_checkpoint(learner, rows, epoch)
            if epoch > quiet_until:  # an epoch a killed process logged already is not logged twice
                metrics = {**valid, **{TRAIN_PREFIX + k: v for k, v in train.items()}, "epoch_time": seconds}
                self._log(epoch, metrics, model_id)
            if model_id is not None:
                if self.best.update(epoch, valid[self.monitored.name]):
                    self._best_copy = (epoch, copy.deepcopy(learner.pipeline))
                deleted += self._prune()
            self.overall.update(epoch, valid[self.monitored.name])
            if self.stopping is not None and self.epochs.early_stopping is not None:
                self.stopping.update(epoch, valid[self.monitored.name])
                if self.stopping.since >= self.epochs.early_stopping.patience:
                    stopped = epoch
                    break
        return self._finish(learner, epoch, stopped, fit_time, deleted)

    def _replay(self, resumed: Resumption) -> None:
        """Restore the early-stopping and best-checkpoint state from the epochs logged up to the
        checkpoint resumed from."""
        self.checkpoints = dict(resumed.checkpoints)
        for epoch in range(1, resumed.checkpoint + 1):
            score = resumed.history.get(epoch)
            if score is None:
                continue
            self.overall.update(epoch, score)
            if self.stopping is not None:
                self.stopping.update(epoch, score)
            if epoch in self.checkpoints:
                self.best.update(epoch, score)

    def _checkpoint_due(self, epoch: int) -> bool:
        checkpoint = self.epochs.checkpoint
        return checkpoint is not None and epoch % checkpoint.every == 0

    def _scores(self, learner: EpochLearner, inputs: pd.DataFrame, targets: pd.DataFrame) -> dict[str, float]:
        outputs = learner.predict(inputs)
        probas = learner.predict_proba(inputs, self._labels) if self._labels is not None else None
        return {m.name: m.score(targets, outputs, probas, self._labels) for m in self.metrics}

    def _log(self, epoch: int, metrics: dict[str, float], model_id: str | None) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Metric as MlflowMetric
        from mlflow.entities import RunTag

        now = int(time.time() * 1000)
        MlflowClient().log_batch(
            self.run_id,
            metrics=[MlflowMetric(k, v, now, epoch, model_id=model_id) for k, v in metrics.items()],
            tags=[RunTag(EPOCHS_DONE_TAG, str(epoch))],
        )

    def _save_checkpoint(self, learner: EpochLearner, rows: Rows, epoch: int) -> str:
        if self._signature is None:
            self._signature = self.signer.sign(rows.inputs_train, learner.predict(rows.inputs_valid))
        info = self.saver.save(
            learner.pipeline,
            self._signature,
            rows.inputs_train,
            name=CHECKPOINT_NAME,
            step=epoch,
            tags={CHECKPOINT_EPOCH_TAG: str(epoch)},
        )
        assert info.model_id is not None  # MLflow 3 logs a model as a logged model
        self.checkpoints[epoch] = info.model_id
        return info.model_id

    def _prune(self) -> list[int]:
        """Delete the checkpoints no longer kept (the last ``keep_last`` and the best stay)."""
        from mlflow import MlflowClient

        checkpoint = self.epochs.checkpoint
        assert checkpoint is not None
        best = self.best.epoch if checkpoint.keep_best else None
        gone = checkpoints_to_delete(self.checkpoints, checkpoint.keep_last, best)
        client = MlflowClient()
        for epoch in gone:
            model_id = self.checkpoints.pop(epoch)
            client.delete_logged_model(model_id)
            get_logger().info(
                "deleted the checkpoint of epoch %d (%s): not among those kept", epoch, model_id
            )
        return gone

    def _finish(
        self, learner: EpochLearner, last: int, stopped: int | None, fit_time: float, deleted: list[int]
    ) -> Outcome:
        from mlflow import MlflowClient
        from mlflow.entities import RunTag

        final_epoch, pipeline = last, learner.pipeline
        if self.epochs.final == "best" and self.best.epoch is not None:
            final_epoch = self.best.epoch
            if self._best_copy is not None and self._best_copy[0] == final_epoch:
                pipeline = self._best_copy[1]
            else:  # saved by the process this run resumes
                pipeline = _load(self.checkpoints[final_epoch])
        best = self.overall.epoch
        tags = {FINAL_EPOCH_TAG: str(final_epoch)}
        if best is not None:
            tags[BEST_EPOCH_TAG] = str(best)
        if stopped is not None:
            tags[STOPPED_EPOCH_TAG] = str(stopped)
        MlflowClient().log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        return Outcome(pipeline, final_epoch, last, best, stopped, fit_time, deleted)


def _load(model_id: str) -> Pipeline:
    """A checkpoint's pipeline, from its logged model."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(f"models:/{model_id}")
