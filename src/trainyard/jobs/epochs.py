"""The epoch loop of a training job: fit an epoch, score it, log it with its step, checkpoint, prune
old checkpoints, stop early; and continue a resumed run where its last checkpoint left it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainyard.core.iterative import Best, EpochLearner, Epochs, checkpoints_to_delete, how_it_learns
from trainyard.core.metrics import Metric, class_labels
from trainyard.core.models import SklearnModel
from trainyard.errors import TrainingJobError
from trainyard.io.savers import SklearnSaver
from trainyard.records import BEST_EPOCH_TAG, FINAL_EPOCH_TAG, STOPPED_EPOCH_TAG
from trainyard.runtime.cancellation import Cancellation
from trainyard.runtime.epoch_writer import EpochWriter, Where

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models.signature import ModelSignature
    from sklearn.pipeline import Pipeline

    from trainyard.core.signers import SignerKind
    from trainyard.jobs.resuming import Resumption

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
    """Trains ``model`` for ``epochs`` into the MLflow run ``run_id``; its writes go through an
    ``EpochWriter`` (runtime/epoch_writer.py), where ``where`` says (a writer process, a thread, inline).

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
        where: Where = "thread",
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
        self._checkpointed: list[int] = []  # the epochs of the checkpoints kept
        self._best_copy: tuple[int, bytes] | None = None  # the best checkpoint's model, pickled
        self.where = where
        self._signature: ModelSignature | None = None
        self._labels: list[Any] | None = None

    def train(
        self, model: SklearnModel, rows: Rows, targets: pd.DataFrame, resumed: Resumption | None
    ) -> Outcome:
        """Run the epochs (from 1, or after ``resumed``'s checkpoint); ``targets``: all of them, for
        the classes of a classifier and of probability metrics. Every write is done when it returns
        (or raises)."""
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

        def signature() -> ModelSignature:  # made once, from the first checkpoint's model
            if self._signature is None:
                self._signature = self.signer.sign(rows.inputs_train, learner.predict(rows.inputs_valid))
            return self._signature

        writer = EpochWriter(
            self.run_id, self.saver, signature, resumed.checkpoints if resumed else None, self.where
        )
        try:
            last, stopped, fit_time, deleted = self._loop(writer, learner, model, rows, first, quiet_until)
            writer.join()  # every checkpoint is written before the final model is chosen
            return self._finish(learner, writer.checkpoints, last, stopped, fit_time, deleted)
        finally:
            writer.close()  # after a failure too: what the epochs asked is written, never half

    def _loop(
        self,
        writer: EpochWriter,
        learner: EpochLearner,
        model: SklearnModel,
        rows: Rows,
        first: int,
        quiet_until: int,
    ) -> tuple[int, int | None, float, list[int]]:
        """The epochs from ``first``: the last one, the one it stopped early at, the fit time, and
        the checkpoints deleted."""
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
            due = self._checkpoint_due(epoch)
            payload = writer.checkpoint(epoch, learner.pipeline) if due else None
            if epoch > quiet_until:  # an epoch a killed process logged already is not logged twice
                writer.log(
                    epoch, {**valid, **{TRAIN_PREFIX + k: v for k, v in train.items()}, "epoch_time": seconds}
                )
            if payload is not None:
                self._checkpointed.append(epoch)
                if self.best.update(epoch, valid[self.monitored.name]):
                    self._best_copy = (epoch, payload)
                deleted += self._prune(writer)
            self.overall.update(epoch, valid[self.monitored.name])
            if self.stopping is not None and self.epochs.early_stopping is not None:
                self.stopping.update(epoch, valid[self.monitored.name])
                if self.stopping.since >= self.epochs.early_stopping.patience:
                    stopped = epoch
                    break
        return epoch, stopped, fit_time, deleted

    def _replay(self, resumed: Resumption) -> None:
        """Restore the early-stopping and best-checkpoint state from the epochs logged up to the
        checkpoint resumed from."""
        self._checkpointed = sorted(resumed.checkpoints)
        for epoch in range(1, resumed.checkpoint + 1):
            score = resumed.history.get(epoch)
            if score is None:
                continue
            self.overall.update(epoch, score)
            if self.stopping is not None:
                self.stopping.update(epoch, score)
            if epoch in resumed.checkpoints:
                self.best.update(epoch, score)

    def _checkpoint_due(self, epoch: int) -> bool:
        checkpoint = self.epochs.checkpoint
        return checkpoint is not None and epoch % checkpoint.every == 0

    def _scores(self, learner: EpochLearner, inputs: pd.DataFrame, targets: pd.DataFrame) -> dict[str, float]:
        outputs = learner.predict(inputs)
        probas = learner.predict_proba(inputs, self._labels) if self._labels is not None else None
        return {m.name: m.score(targets, outputs, probas, self._labels) for m in self.metrics}

    def _prune(self, writer: EpochWriter) -> list[int]:
        """Delete the checkpoints no longer kept (the last ``keep_last`` and the best stay)."""
        checkpoint = self.epochs.checkpoint
        assert checkpoint is not None
        best = self.best.epoch if checkpoint.keep_best else None
        gone = checkpoints_to_delete(self._checkpointed, checkpoint.keep_last, best)
        self._checkpointed = [epoch for epoch in self._checkpointed if epoch not in gone]
        writer.delete(gone)
        return gone

    def _finish(
        self,
        learner: EpochLearner,
        checkpoints: dict[int, str],
        last: int,
        stopped: int | None,
        fit_time: float,
        deleted: list[int],
    ) -> Outcome:
        import cloudpickle
        from mlflow import MlflowClient
        from mlflow.entities import RunTag

        final_epoch, pipeline = last, learner.pipeline
        if self.epochs.final == "best" and self.best.epoch is not None:
            final_epoch = self.best.epoch
            if self._best_copy is not None and self._best_copy[0] == final_epoch:
                pipeline = cloudpickle.loads(self._best_copy[1])
            else:  # saved by the process this run resumes
                pipeline = _load(checkpoints[final_epoch])
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
