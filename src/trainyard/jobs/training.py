"""The training job: read, validate, split, fit, score, sign, save, register, notify."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from trainyard.core.estimators import is_import_path
from trainyard.core.iterative import OWN, Epochs, check_learns_in_steps, how_it_learns, own_needs_epochs
from trainyard.core.metrics import class_labels
from trainyard.core.models import SklearnModel
from trainyard.core.signers import InferSigner, SignerKind
from trainyard.core.splitters import (
    KFoldSplitter,
    Splitter,
    SplitterKind,
    StratifiedKFoldSplitter,
    TrainTestSplitter,
)
from trainyard.errors import ConfigurationError
from trainyard.io.logging import get_logger
from trainyard.io.registers import RegisterKind
from trainyard.io.savers import SaverKind, SklearnSaver
from trainyard.io.system_metrics import SYSTEM_METRICS_DESCRIPTION, SystemMetricsSetting, sampling_seconds
from trainyard.jobs.base import Locals
from trainyard.jobs.epochs import EpochTraining, Rows
from trainyard.jobs.resuming import Resumption, find_resumption, resume_hash
from trainyard.jobs.supervised import SupervisedJob
from trainyard.records import EPOCHS_TAG, RESUME_HASH_TAG, TEST_ROWS_TAG, TRAINER_TAG, worker_token
from trainyard.runtime.epoch_writer import where_to_write
from trainyard.runtime.threads import AUTO, NativeThreads, Threads
from trainyard.tuning.tuned import load_tuned_params


class TrainingJob(SupervisedJob):
    """Train one model, measure it on held-out rows, and log and register it in MLflow."""

    KIND: Literal["training"] = "training"
    splitter: SplitterKind = Field(
        default_factory=TrainTestSplitter,
        description="How rows are held out: train_test or time_series (k-fold splitters are for tuning).",
    )
    signer: SignerKind = Field(default_factory=InferSigner, description="How the model signature is made.")
    saver: SaverKind = Field(default_factory=SklearnSaver, description="How the model is logged.")
    model_register: RegisterKind | None = Field(
        None, alias="register", description="Register the model (unset: log it only)."
    )
    threads: Threads = Field(
        AUTO,
        description="Native threads (OpenMP, BLAS) of the fit and the predictions; auto: every usable "
        "core (as the libraries do by default, unless the environment sets fewer).",
    )
    epochs: Epochs | None = Field(
        None,
        description="Train in epochs, logging learning curves (unset: one fit). For estimators with "
        "partial_fit (SGD, MLP, Perceptron, GaussianNB), that grow with warm_start (forests, "
        "gradient boosting), LightGBM and XGBoost (boosting rounds), or a model of your own by import "
        "path (fit_epoch). See docs/iterative.md.",
    )
    resume: bool | str = Field(
        False,
        description="Continue a run trained in epochs that did not finish them, in the same MLflow run: "
        "true for the newest one of this config, or its run id (needs epochs.checkpoint).",
    )

    system_metrics: SystemMetricsSetting = Field(False, description=SYSTEM_METRICS_DESCRIPTION)

    @field_validator("splitter")
    @classmethod
    def _one_hold_out(cls, splitter: Splitter) -> Splitter:
        if isinstance(splitter, KFoldSplitter | StratifiedKFoldSplitter):
            share = f"test_size: {1 / splitter.n_splits:.2g}"
            stratify = ", stratify: true" if isinstance(splitter, StratifiedKFoldSplitter) else ""
            raise ValueError(
                f"{splitter.KIND} makes {splitter.n_splits} folds, for a tuning job's cross-validation; a "
                f"training job fits once on one split, and takes train_test or time_series: for the "
                f"same share of rows held out, {{KIND: train_test, {share}{stratify}}}"
            )
        return splitter

    @model_validator(mode="after")
    def _epochs_fit_model(self) -> TrainingJob:
        epochs = self.epochs
        if epochs is None:
            if self.resume is not False:
                raise ValueError("resume: only a training in epochs resumes; set epochs with a checkpoint")
            if how_it_learns(self.model.estimator) == OWN:
                raise ValueError(own_needs_epochs(self.model.estimator))
            return self
        check_learns_in_steps(self.model.estimator)
        names = [metric.name for metric in self.metrics]
        if epochs.early_stopping is not None and epochs.early_stopping.metric not in names:
            raise ValueError(
                f"epochs: early_stopping.metric {epochs.early_stopping.metric!r} is not among job.metrics "
                f"({', '.join(names)})"
            )
        if epochs.final == "best" and (epochs.checkpoint is None or not epochs.checkpoint.keep_best):
            raise ValueError(
                "epochs: final: best is the best checkpoint: set epochs.checkpoint with keep_best"
            )
        if self.resume is not False and epochs.checkpoint is None:
            raise ValueError("resume: a run continues from a checkpoint: set epochs.checkpoint")
        return self

    def run(self) -> Locals:
        import mlflow

        resumed = self.find_resumed()
        tags = self.epoch_tags(resumed)
        run_id = resumed.run_id if resumed else None
        every = sampling_seconds(self.system_metrics)
        with (
            self.tracked_run(tags, run_id, every) as run,
            NativeThreads(self.threads, unit="fit") as threads,
        ):
            model = self.model
            if model.params_from is not None:
                with self.step("take tuned parameters") as step:
                    model = _with_tuned_params(model, self.mlflow.resolved_tracking_uri)
                    mlflow.log_params({f"tuned.{k}": str(v)[:500] for k, v in model.params.items()})
                    step.note(", ".join(f"{k}={v}" for k, v in model.params.items()))
            inputs, targets = self.read_data(resumed.check_data if resumed else None)
            if resumed is not None:  # recorded once the data is known to be the run's
                mlflow.set_tags(resumed.tags)
            if self.holdout is not None:
                with self.step("hold out test rows") as step:
                    inputs, targets, tags = self.hold_out(inputs, targets)
                    mlflow.set_tags(tags)
                    step.note(f"{tags[TEST_ROWS_TAG]} test rows set aside, {len(inputs)} left")
            with self.step("split") as step:
                train_index, test_index = self.splitter.split(inputs, targets)
                inputs_train, inputs_test = inputs.iloc[train_index], inputs.iloc[test_index]
                targets_train, targets_test = targets.iloc[train_index], targets.iloc[test_index]
                step.note(f"train {inputs_train.shape}, test {inputs_test.shape}")
                threads.sized(*inputs_train.shape)
                mlflow.log_params({"data.train_rows": len(train_index), "data.test_rows": len(test_index)})
            if self.epochs is None:
                with self.step("fit"):
                    fit_start = time.perf_counter()
                    model.fit(inputs_train, targets_train)
                    fit_time = time.perf_counter() - fit_start
                    mlflow.log_metric("fit_time", fit_time)
            else:
                with self.step("fit in epochs") as step:
                    rows = Rows(inputs_train, targets_train, inputs_test, targets_test)
                    checkpoint = self.epochs.checkpoint
                    where = where_to_write(
                        checkpoint is not None, checkpoint is None or checkpoint.background
                    )
                    training = EpochTraining(
                        self.epochs,
                        self.metrics,
                        self.saver,
                        self.signer,
                        self.cancellation,
                        run.info.run_id,
                        where,
                    )
                    outcome = training.train(model, rows, targets, resumed)
                    model = model.with_pipeline(outcome.pipeline)
                    step.note(outcome.summary())
            with self.step("predict") as step:
                outputs = model.predict(inputs_test)
                needs_proba = any(metric.needs_proba for metric in self.metrics)
                labels = class_labels(targets) if needs_proba else None  # the test rows may lack one
                probas = model.predict_proba(inputs_test, labels) if needs_proba else None
                step.note(f"outputs {outputs.shape}")
            with self.step("score") as step:
                scores = {m.name: m.score(targets_test, outputs, probas, labels) for m in self.metrics}
                if self.epochs is None:  # in epochs, every epoch logged them with its step
                    mlflow.log_metrics(scores)
                step.note(", ".join(f"{name}={value:.4g}" for name, value in scores.items()))
            with self.step("sign") as step:
                signature = self.signer.sign(inputs_train, outputs)
                step.note(
                    f"inputs {len(signature.inputs.inputs)} columns -> {signature.outputs.input_names()}"
                )
            with self.step("save") as step:
                model_info = self.saver.save(model.fitted(), signature, inputs_train)
                step.note(model_info.model_uri)
            version = None
            if self.model_register is not None:
                with self.step("register") as step:
                    version = self.model_register.register(model_info)
                    alias = f" as @{self.model_register.alias}" if self.model_register.alias else ""
                    step.note(f"{self.model_register.name} version {version.version}{alias}")
            self.report(
                "Training finished",
                _summary(run.info.run_id, scores, model_info.model_uri, version, self),
            )
        return locals()

    def find_resumed(self) -> Resumption | None:
        """The run ``resume`` continues, and from where (None: a new run); a step when resuming."""
        if self.resume is False or self.epochs is None:
            return None
        with self.step("find the run to resume") as step:
            monitored = self.epochs.monitored([metric.name for metric in self.metrics])
            resumed = find_resumption(
                self.resume,
                self.resolved_config(),
                self.epochs.count,
                monitored,
                self.mlflow.experiment_id(),
                self.mlflow.resolved_tracking_uri,
            )
            step.note(f"run {resumed.run_id}, after the checkpoint of epoch {resumed.checkpoint}")
        return resumed

    def epoch_tags(self, resumed: Resumption | None) -> dict[str, str]:
        """The tags of a training in epochs: the resume digest, this process, and for a new run the
        epochs asked (a resumed run records them with what it changed, after its data is checked)."""
        if self.epochs is None:
            return {}
        tags = {RESUME_HASH_TAG: resume_hash(self.resolved_config()), TRAINER_TAG: worker_token()}
        return tags if resumed else {**tags, EPOCHS_TAG: str(self.epochs.count)}


def _with_tuned_params(model: SklearnModel, tracking_uri: str) -> SklearnModel:
    """``model`` with the tuned parameters under its own, validated like any config."""
    from pydantic import ValidationError

    assert model.params_from is not None
    tuned = load_tuned_params(model.params_from, tracking_uri)
    for difference in _differences(model, tuned.model):
        get_logger().warning("job.model.params_from: %s", difference)
    # the tuning job's fixed params, then the tuned ones, then this job's own
    params = {**tuned.fixed_params, **tuned.params, **model.params}
    data = {**model.model_dump(), "params": params, "params_from": None}
    try:
        # the estimator is the one already validated: an import path there was allowed for this run
        allowed = {"allow_import_paths": is_import_path(model.estimator)}
        return SklearnModel.model_validate(data, context=allowed)
    except ValidationError as error:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in error.errors())
        raise ConfigurationError(
            f"job.model.params_from: the tuned parameters do not fit: {problems}"
        ) from None


_PREPROCESSING = ("categorical", "encoding", "impute", "scale")


def _differences(model: SklearnModel, tuned_with: dict[str, Any] | None) -> list[str]:
    """How ``model`` differs from the model its parameters were tuned with (estimator, preprocessing)."""
    if not tuned_with:
        return []
    found = []
    if tuned_with.get("estimator") not in (None, model.estimator):
        found.append(
            f"the parameters were tuned for {tuned_with['estimator']}, this job trains {model.estimator}"
        )
    for name in _PREPROCESSING:
        if name in tuned_with and tuned_with[name] != getattr(model, name):
            found.append(
                f"tuned with model.{name}={tuned_with[name]!r}, this job has {getattr(model, name)!r}: "
                "the tuned parameters may not suit it"
            )
    return found


def _summary(
    run_id: str, scores: dict[str, float], model_uri: str, version: object, job: TrainingJob
) -> dict[str, str]:
    summary = {
        "run": run_id,
        "metrics": ", ".join(f"{name}={value:.4g}" for name, value in scores.items()),
        "model": model_uri,
    }
    if version is not None and job.model_register is not None:
        alias = f" (@{job.model_register.alias})" if job.model_register.alias else ""
        summary["registered"] = f"{job.model_register.name} version {version.version}{alias}"  # type: ignore[attr-defined]
    summary["look"] = job.mlflow.ui_command()
    return summary
