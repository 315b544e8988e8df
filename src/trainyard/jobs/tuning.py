"""The tuning job: a durable, resumable, shareable hyperparameter search tracked in MLflow.

The Optuna study (in its storage) is the record of truth; MLflow mirrors it: one parent run per study,
one child run per finished trial, written from the stored trial, so a trial finished in storage but
missing in MLflow (its process died in between) is written on the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import traceback
from collections.abc import Iterator
from contextlib import AbstractContextManager
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from trainyard.core.iterative import (
    OWN,
    EpochLearner,
    TrialEpochs,
    check_learns_in_steps,
    check_space_in_epochs,
    how_it_learns,
    own_needs_epochs,
)
from trainyard.core.metrics import Metric, class_labels
from trainyard.core.splitters import KFoldSplitter, SplitterKind
from trainyard.errors import ConfigurationError, JobCancelledError, TrainingJobError
from trainyard.io.logging import get_logger
from trainyard.io.system_metrics import (
    SYSTEM_METRICS_DESCRIPTION,
    SystemMetricsSampler,
    SystemMetricsSetting,
    sampling_seconds,
)
from trainyard.io.tracking import check_server_reachable
from trainyard.jobs.base import Locals, describe, ending_status
from trainyard.jobs.supervised import SupervisedJob
from trainyard.records import (
    ERROR_ATTR,
    FOLDS_ATTR,
    METRICS_ATTR,
    STUDY_TAG,
    TEST_ROWS_TAG,
    WORKER_ATTR,
    worker_token,
)
from trainyard.runtime import processes
from trainyard.runtime.threads import AUTO, NativeThreads, Threads
from trainyard.tuning.parent_watch import watch_parent_run
from trainyard.tuning.progress import TrialProgress
from trainyard.tuning.searchers import SearcherKind
from trainyard.tuning.spaces import check_space
from trainyard.tuning.studies import (
    StudyStorage,
    claim_parent,
    fail_trials_of_dead_workers,
    finished_trials,
    parent_attr,
    running_on_this_host,
)
from trainyard.tuning.study_runs import StudyRunSpec
from trainyard.tuning.writer import TrialMirror
from trainyard.tuning.writer_process import ProcessWriter, prestarted

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial

    from trainyard.core.models import Model
    from trainyard.core.splitters import Fold
    from trainyard.runtime.cancellation import Cancellation
    from trainyard.runtime.threads import NativeThreads
    from trainyard.tuning.study_runs import StudyRunSpec
    from trainyard.tuning.writer import TrialMirror

KEEP_FOLD_COPIES_UP_TO = 512 * 2**20  # bytes: larger data is sliced again for every trial


class TuningJob(SupervisedJob):
    """Search a model's parameters by cross-validation; log every trial; report the best."""

    KIND: Literal["tuning"] = "tuning"
    best_by: str | None = Field(
        None, description="With several metrics: the one that picks 'best' (default: first)."
    )
    splitter: SplitterKind = Field(
        default_factory=KFoldSplitter, description="Folds of the cross-validation."
    )
    searcher: SearcherKind = Field(description="What to search, how, with what budget.")
    study: StudyStorage = Field(default_factory=StudyStorage, description="Where the study is stored.")
    plots: bool = Field(True, description="Log optimization history, importances and parallel coordinates.")
    threads: Threads = Field(
        AUTO,
        description="Native threads (OpenMP, BLAS) of each trial's fits; auto: the usable cores divided "
        "among the trials running at once on this host (n_jobs here, and the running trials of other "
        "workers of the study on this host), at least 1.",
    )
    system_metrics: SystemMetricsSetting = Field(
        False,
        description=SYSTEM_METRICS_DESCRIPTION + " On the study's parent run, from this worker's host.",
    )

    epochs: TrialEpochs | None = Field(
        None,
        description="Train each trial's model in epochs on every fold, reporting the folds' mean "
        "validation score after each epoch, so that the pruner can stop a bad trial mid-training; the "
        "trial's score is its last epoch's (unset: one fit per fold). See docs/iterative.md.",
    )

    _opened: tuple[Any, Any] | None = PrivateAttr(None)  # the study and its MLflow writer

    @field_validator("best_by")
    @classmethod
    def _best_by_is_a_metric(cls, value: str | None, info: ValidationInfo) -> str | None:
        names = [m.name for m in info.data.get("metrics", [])]
        if value is not None and names and value not in names:
            raise ValueError(f"{value!r} is not one of the metrics: {', '.join(names)}")
        return value

    @model_validator(mode="after")
    def _searchable(self) -> TuningJob:
        if len(self.metrics) > 1 and self.searcher.pruner is not None:
            raise ValueError(
                "pruning works with one metric only (Optuna cannot prune multi-objective trials)"
            )
        if self.searcher.budget() is None and self.searcher.timeout is None:
            raise ValueError("give the searcher a budget: n_trials, timeout, or both")
        if self.model.params_from is not None:
            raise ValueError("model.params_from is for training jobs; a tuning job searches its parameters")
        unknown = self.model.unknown_params(self.searcher.space)
        if unknown:
            raise ValueError(
                f"searcher.space names {', '.join(map(repr, unknown))}, not parameters of {self.model.estimator}; "
                f"valid: {', '.join(sorted(self.model.parameter_names()))}"
            )
        check_space(self.model, self.searcher.space, at=("searcher", "space"))
        if self.epochs is not None:
            check_learns_in_steps(self.model.estimator)
            check_space_in_epochs(self.model.estimator, self.searcher.space)
        elif how_it_learns(self.model.estimator) == OWN:
            raise ValueError(own_needs_epochs(self.model.estimator))
        return self

    @property
    def objective(self) -> Metric:
        """The metric that picks the best trial."""
        return next(m for m in self.metrics if m.name == (self.best_by or self.metrics[0].name))

    def study_name(self) -> str:
        """The configured name, or the experiment and a hash of what is searched (not of the budget).

        Only settings that differ from their defaults (and every ``KIND``) are hashed: writing a default
        out, or a new Trainyard version adding a field or changing a default, keeps the name, so a
        rerun resumes its study.
        """
        if self.study.name:
            return self.study.name
        searched = {
            name: _explicit(getattr(self, name))
            for name in ("inputs", "targets", "model", "metrics", "splitter", "searcher")
        }
        for budget in ("n_trials", "timeout", "n_jobs"):
            searched["searcher"].pop(budget, None)
        if self.epochs is not None:  # only then: the names of studies without epochs stay
            searched["epochs"] = _explicit(self.epochs)
        digest = hashlib.sha256(json.dumps(searched, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.mlflow.experiment}-{digest}"

    @classmethod
    def started_early(cls) -> AbstractContextManager[None]:
        """The MLflow writer process: it loads MLflow while the config is validated."""

        return prestarted()

    def prepare(self) -> None:
        """Open the study, claim its parent run and start the MLflow writer: the job never loads MLflow."""
        import optuna

        self.check_data()  # a missing, empty or folder path stops the job before the study is opened
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials are reported by TrialProgress
        # The writer would find out only after the trials (MLflow retries a dead server for minutes).
        check_server_reachable(self.mlflow.tracking_uri)
        name = self.study_name()
        tracking_uri = self.mlflow.resolved_tracking_uri
        with self.step("open study") as step:
            storage = self.study.open(tracking_uri)
            study = optuna.create_study(
                study_name=name,
                storage=storage,
                load_if_exists=True,
                directions=[m.direction for m in self.metrics],
                sampler=self.searcher.sampler(),
                pruner=self.searcher.pruner.build() if self.searcher.pruner else optuna.pruners.NopPruner(),
            )
            self._check_metrics(study)
            self._check_space(study)
            dead = fail_trials_of_dead_workers(storage, study)
            step.note(f"{name} in {self.study.location(tracking_uri)}: {_count_finished(study)} finished")
            if dead:
                step.note(f"trials {dead} of dead workers marked failed")
        previous_claim = study.user_attrs.get(parent_attr(tracking_uri, claim=True))
        claimed_at = claim_parent(study, tracking_uri)
        mirror = TrialMirror(self._run_spec(name, claimed_at, previous_claim), study, preferred=ProcessWriter)
        mirror.start()
        self._opened = (study, mirror)

    def start_tracking(self) -> None:
        """Nothing: the writer process (or, without it, ``TrialMirror`` in this one) opens MLflow."""

    def __exit__(self, *exc: object) -> None:
        if self._opened is not None:  # entered, never run: stop the writer started by prepare()
            self._opened[1].abandon()
            self._opened = None
        super().__exit__(*exc)

    def run(self) -> Locals:

        if self._opened is None:
            self.prepare()
        assert self._opened is not None
        study, mirror = self._opened
        self._opened = None  # the job's exit has nothing left to stop: run() ends the writer
        name = study.study_name
        # a service's observer gets the parent run's id as soon as the writer has made the run, and
        # the system metrics are sampled into it from then on
        sampler = SystemMetricsSampler(
            sampling_seconds(self.system_metrics), self.mlflow.resolved_tracking_uri
        )

        def found(run_id: str) -> None:
            sampler.start(run_id)
            if self.observed:
                self.notify("run", run_id=run_id)

        told = found if self.observed or sampler.seconds is not None else None
        with mirror, sampler, watch_parent_run(study, self.mlflow.resolved_tracking_uri, told):
            try:
                inputs, targets = self.read_inputs_and_targets()
                mirror.log_lineage([(self.inputs, inputs, "inputs"), (self.targets, targets, "targets")])
                if self.holdout is not None:  # its definition is in the run's params and config
                    with self.step("hold out test rows") as step:
                        inputs, targets, tags = self.hold_out(inputs, targets)
                        step.note(f"{tags[TEST_ROWS_TAG]} test rows set aside, {len(inputs)} left")
                with self.step("make folds") as step:
                    folds = self.splitter.folds(inputs, targets)
                    step.note(f"{len(folds)} folds, test sizes {[len(test) for _, test in folds]}")
                budget = self.searcher.budget()
                with self.step("search", spinner=False) as step:
                    self._search(study, inputs, targets, folds, mirror, budget)
                    step.note(f"{_count_finished(study)} trials finished in the study")
                with self.step("log results") as step:
                    best = self._best_trial(study)
                    report = mirror.finish(best)
                    step.note(f"MLflow run {report.parent_id}: {report.written} child runs written")
                    if report.reconciled:
                        step.note(
                            f"{report.reconciled} finished trials were missing in MLflow and are written now"
                        )
                    step.note("lineage " + ", ".join(f"{k} digest {v}" for k, v in report.digests.items()))
                    step.note(f"best trial {best.number}: {_format(best.params)}")
            except BaseException as error:
                details = "".join(traceback.format_exception(error))
                parent = mirror.fail(ending_status(error), (describe(error), details))
                self.announce_failure(error, f"run {parent}" if parent else f"study {name}")
                raise
        scores = dict(zip([m.name for m in self.metrics], best.values, strict=True))
        summary = {
            "run": str(report.parent_id)
            + ("" if report.status != "RUNNING" else " (another worker still uses it)"),
            "study": f"{name} ({_count_finished(study)} trials)",
            "best": ", ".join(f"{k}={v:.4g}" for k, v in scores.items()),
            "params": _format(best.params),
            "look": self.mlflow.ui_command(),
        }
        self.report("Tuning finished", summary)
        return locals()

    def _run_spec(self, name: str, claimed_at: float | None, previous_claim: object = None) -> StudyRunSpec:

        return StudyRunSpec(
            mlflow=self.mlflow.model_dump(),
            storage=self.study.model_dump(),
            study_name=name,
            claimed_at=claimed_at,
            owner=worker_token(),
            record=self.run_record({STUDY_TAG: name}),  # its source: the job's, not the writer's
            metric_names=[m.name for m in self.metrics],
            plots=self.plots,
            spare_core=processes.usable_cores() > self.searcher.executor().at_once,
            previous_claim=str(previous_claim) if previous_claim else None,
        )

    def _check_metrics(self, study: optuna.Study) -> None:
        """Refuse metrics other than those the study was made for (their values would be mixed up).

        The names are recorded in the study when it is made; a study made before that is checked
        by its directions only.
        """
        names = [m.name for m in self.metrics]
        recorded = study.user_attrs.get(METRICS_ATTR)
        if not study.get_trials(deepcopy=False):  # nothing scored yet: this run's metrics are the study's
            if recorded is None or list(recorded) != names:
                study.set_user_attr(METRICS_ATTR, names)
        elif recorded is not None and list(recorded) != names:
            raise ConfigurationError(
                f"job.metrics: study {study.study_name!r} was made for the metrics {', '.join(recorded)}; "
                f"these ({', '.join(names)}) need another study: set job.study.name, or leave it unset "
                "to name the study after what is searched"
            )
        directions = [d.name.lower() for d in study.directions]
        if directions != [m.direction for m in self.metrics]:
            raise ConfigurationError(
                f"job.study: study {study.study_name!r} was made for {len(directions)} objective(s) "
                f"({', '.join(directions)}); these metrics ({', '.join(m.name for m in self.metrics)}) "
                "need another study: set job.study.name, or leave it unset to name the study after "
                "what is searched"
            )

    def _check_space(self, study: optuna.Study) -> None:
        """Refuse a space the study's earlier trials cannot share: Optuna would fail every new trial.

        Within a study a parameter keeps its type, its log scale, and (categorical) its choices;
        a range may move. Reported for every parameter that changed, with what the study has.
        """
        recorded: dict[str, BaseDistribution] = {}
        for trial in study.get_trials(deepcopy=False):
            for name, distribution in trial.distributions.items():
                recorded.setdefault(name, distribution)
        problems = []
        for name, dimension in self.searcher.dimensions.items():
            if name in recorded:
                problem = _incompatible(recorded[name], dimension.to_optuna())
                if problem:
                    problems.append(f"job.searcher.space.{name}: {problem}")
        if problems:
            raise ConfigurationError(
                f"study {study.study_name!r} searched other values for these parameters, and its new "
                "trials would all fail:\n  " + "\n  ".join(problems) + "\nKeep the space the study "
                "has, or set job.study.name to start another study"
            )

    def _search(
        self,
        study: optuna.Study,
        inputs: pd.DataFrame,
        targets: pd.DataFrame,
        folds: list[Fold],
        mirror: TrialMirror,
        budget: int | None,
    ) -> None:

        remaining = None if budget is None else max(0, budget - _count_finished(study))
        if remaining == 0:
            return
        earlier = {trial.number for trial in study.get_trials(deepcopy=False)}
        executor = self.searcher.executor()
        stop = _StopAfterRunningTrials(study, self.cancellation, threads=executor.trials_in_other_threads)
        with (
            # each trial's threads: the cores shared by this job's trials and other workers' trials
            NativeThreads(
                self.threads,
                executor.at_once,
                elsewhere=partial(running_on_this_host, study),
                cells=max(len(train) for train, _ in folds) * inputs.shape[1],
            ) as threads,
            TrialProgress(
                study, budget, self.objective, self.metrics, "epoch" if self.epochs else "fold"
            ) as progress,
            self.cancellation.graceful(stop),
        ):

            def on_trial_end(study: optuna.Study, trial: FrozenTrial) -> None:
                # One callback: Optuna deep-copies the finished trial for each callback it calls.
                mirror.on_trial_end(study, trial)
                if budget is not None and len(study.get_trials(deepcopy=False)) >= budget:
                    study.stop()  # the study's budget: this worker's, other workers' and earlier runs' trials
                progress.on_trial_end(study, trial)
                if self.observed:  # a service's progress: trials done and the best so far
                    self.notify("trial", done=_count_finished(study), budget=budget, best=progress.best)
                stop.on_trial_end(study, trial)

            executor.search(
                study,
                _Objective(self, inputs, targets, folds, threads),
                n_trials=remaining,
                timeout=self.searcher.timeout,
                callbacks=[on_trial_end],
            )
        stop.raise_if_stopped()
        _check_not_all_failed(study, earlier)

    def _best_trial(self, study: optuna.Study) -> FrozenTrial:
        from optuna.trial import TrialState

        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not completed:
            failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            first = next(
                (t.user_attrs.get(ERROR_ATTR) for t in failed if t.user_attrs.get(ERROR_ATTR)),
                "no error recorded",
            )
            raise TrainingJobError(
                f"no trial of study {study.study_name} completed ({len(failed)} failed); first error: {first}"
            )
        if len(self.metrics) == 1:
            return study.best_trial
        index = [m.name for m in self.metrics].index(self.objective.name)
        front = study.best_trials
        return (max if self.objective.direction == "maximize" else min)(front, key=lambda t: t.values[index])


class _StopAfterRunningTrials:
    """A request to stop during the search: finish the running trials, record them, then stop.

    Raising inside Optuna's loop can land between a trial's end and its record (leaving it RUNNING),
    so the first request (a signal's, a service's) only asks the study to stop; a second signal
    interrupts at once. Optuna takes that request only from a thread that runs trials: with ``n_jobs``
    above 1 a signal reaches the main thread, which waits for them, so the next trial to end passes
    it on (``on_trial_end``).
    """

    def __init__(self, study: optuna.Study, cancellation: Cancellation, threads: bool = False) -> None:
        self.study = study
        self.cancellation = cancellation
        self.threads = threads  # n_jobs above 1

    def first_request(self, reason: KeyboardInterrupt) -> KeyboardInterrupt:
        """Ask the study to stop after its running trials; the reason says they were recorded."""
        if self.threads:  # the main thread only waits: trials in other threads cannot be interrupted
            get_logger().warning(
                "stopping after the running trials (threads cannot be interrupted: the process "
                "ends when they do, whatever signals follow)"
            )
        else:
            get_logger().warning("stopping after the running trial(s); send the signal again to stop now")
        with contextlib.suppress(RuntimeError):  # not in the thread that runs the trials (n_jobs > 1)
            self.study.stop()
        return type(reason)(f"{reason} after the running trials were recorded")

    def repeated_request(self) -> KeyboardInterrupt:
        """Stop now (with threads: as soon as Optuna's pool has joined them)."""
        if self.threads:  # Optuna's pool still joins its threads: the process ends after them
            return JobCancelledError("stopped (second signal); trials running in threads end first")
        return JobCancelledError("stopped at once (second signal)")

    def on_trial_end(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Pass a request to stop on to Optuna, from a thread that runs trials."""
        if self.cancellation.requested:
            study.stop()

    def raise_if_stopped(self) -> None:
        """After the search: raise the cancellation that was asked for (a signal's, or another's)."""
        self.cancellation.check()


class _Objective:
    """Cross-validate the model with a trial's parameters; per-fold scores go to the trial's attrs."""

    def __init__(
        self,
        job: TuningJob,
        inputs: pd.DataFrame,
        targets: pd.DataFrame,
        folds: list[Fold],
        threads: NativeThreads | None = None,
    ) -> None:
        self.job = job
        self.threads = threads
        self.folds = _FoldSlices(inputs, targets, folds)
        # every class, for the probabilities and scores of folds that lack one
        self.labels = class_labels(targets) if any(m.needs_proba for m in job.metrics) else None
        self.classes = class_labels(targets) if job.epochs is not None and job.model.is_classifier else None
        self.dimensions = job.searcher.dimensions
        # The journal storage names the worker in the record that creates a trial; a database does not.
        self.names_worker = "://" in job.study.location(job.mlflow.resolved_tracking_uri)

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        import numpy as np
        import optuna

        if self.names_worker:
            trial.set_user_attr(WORKER_ATTR, worker_token())
        metrics = self.job.metrics
        scores: dict[str, list[float]] = {m.name: [] for m in metrics}
        timing = {"fit_time": 0.0}
        curves: dict[str, list[float]] | None = None
        threads: int | None = None
        try:
            params = {name: _suggest(trial, name, dimension) for name, dimension in self.dimensions.items()}
            model: Model = self.job.model.model_copy(update={"params": {**self.job.model.params, **params}})
            if self.job.epochs is not None:
                curves = {m.name: [] for m in metrics}
                threads = self._in_epochs(trial, model, scores, curves, timing)
            else:
                threads = self._in_folds(trial, model, scores, timing)
        except (optuna.TrialPruned, KeyboardInterrupt):
            raise
        except Exception as error:
            trial.set_user_attr(ERROR_ATTR, f"{type(error).__name__}: {error}"[:2000])
            raise
        finally:  # one storage write per trial, whatever its end (each write costs about 1 ms)
            folds: dict[str, Any] = {"scores": scores, "fit_time": timing["fit_time"]}
            if curves is not None:  # the folds' mean of each metric after each epoch
                folds["epochs"] = curves
            trial.set_user_attr(FOLDS_ATTR, folds if threads is None else {**folds, "threads": threads})
        means = [float(np.mean(scores[m.name])) for m in metrics]
        return means[0] if len(means) == 1 else means

    def _in_folds(
        self, trial: optuna.Trial, model: Model, scores: dict[str, list[float]], timing: dict[str, float]
    ) -> int | None:
        """Fit once per fold, scoring it (reported per fold for the pruner); the native threads used."""
        import time

        import numpy as np
        import optuna

        metrics = self.job.metrics
        threads = None
        for fold, (train_inputs, train_targets, test_inputs, test_targets) in enumerate(self.folds):
            if self.threads is not None:  # in the trial's own thread: OpenMP's limit is per thread
                threads = self.threads.before_fit()
            start = time.perf_counter()
            model.fit(train_inputs, train_targets)
            timing["fit_time"] += time.perf_counter() - start
            outputs = model.predict(test_inputs)
            probas = model.predict_proba(test_inputs, self.labels) if self.labels is not None else None
            for metric in metrics:
                scores[metric.name].append(metric.score(test_targets, outputs, probas, self.labels))
            if self.job.searcher.pruner is not None:
                trial.report(float(np.mean(scores[metrics[0].name])), fold)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after fold {fold}")
        return threads

    def _in_epochs(
        self,
        trial: optuna.Trial,
        model: Model,
        scores: dict[str, list[float]],
        curves: dict[str, list[float]],
        timing: dict[str, float],
    ) -> int | None:
        """Train one learner per fold an epoch at a time; after each epoch report the folds' mean of
        the first metric at step ``epoch`` (from 1) for the pruner. ``scores``: the last epoch's per
        fold; ``curves``: every metric's folds' mean per epoch. The native threads used."""
        import time

        import numpy as np
        import optuna

        from trainyard.core.models import SklearnModel

        epochs = self.job.epochs
        assert epochs is not None and isinstance(model, SklearnModel)
        how = how_it_learns(model.estimator)
        assert how is not None  # the job's validation refused others
        classes = self.classes if model.is_classifier else None
        folds = list(self.folds)
        learners = []
        for train_inputs, *_ in folds:
            learner = EpochLearner(model.build(train_inputs), how, epochs.growth(how), classes)
            learner.fit_preprocessing(train_inputs)
            learners.append(learner)
        threads = None
        metrics = self.job.metrics
        for epoch in range(1, epochs.count + 1):
            if self.threads is not None:
                threads = self.threads.before_fit()
            for name in scores:
                scores[name].clear()
            for learner, (train_inputs, train_targets, test_inputs, test_targets) in zip(
                learners, folds, strict=True
            ):
                start = time.perf_counter()
                learner.epoch(epoch, train_inputs, train_targets)
                timing["fit_time"] += time.perf_counter() - start
                outputs = learner.predict(test_inputs)
                probas = learner.predict_proba(test_inputs, self.labels) if self.labels is not None else None
                for metric in metrics:
                    scores[metric.name].append(metric.score(test_targets, outputs, probas, self.labels))
            for metric in metrics:
                curves[metric.name].append(float(np.mean(scores[metric.name])))
            if self.job.searcher.pruner is not None:
                trial.report(curves[metrics[0].name][-1], epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {epoch}")
        return threads


class _FoldSlices:
    """The train and test rows of every fold: sliced once for all trials when the copies are small.

    Slicing a DataFrame costs about 0.1 ms a call, four calls a fold: 2 s of a 500-trial, 3-fold
    study of 5,000 rows (measured with py-spy). The copies hold as many rows as the data has, per fold.
    """

    def __init__(self, inputs: pd.DataFrame, targets: pd.DataFrame, folds: list[Fold]) -> None:
        self.inputs, self.targets, self.folds = inputs, targets, folds
        copies = (inputs.memory_usage(deep=False).sum() + targets.memory_usage(deep=False).sum()) * len(folds)
        self._kept = [self._slice(fold) for fold in folds] if copies <= KEEP_FOLD_COPIES_UP_TO else None

    def _slice(self, fold: Fold) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        train, test = fold
        return (
            self.inputs.iloc[train],
            self.targets.iloc[train],
            self.inputs.iloc[test],
            self.targets.iloc[test],
        )

    def __iter__(self) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
        if self._kept is not None:
            return iter(self._kept)
        return (self._slice(fold) for fold in self.folds)


def _explicit(value: Any) -> Any:
    """``value`` as plain data without the fields left at their defaults (a component's KIND stays)."""
    from pydantic import BaseModel
    from pydantic_core import to_jsonable_python

    if isinstance(value, BaseModel):
        explicit = {}
        for name, field in type(value).model_fields.items():
            setting = getattr(value, name)
            if name == "KIND" or setting != field.get_default(call_default_factory=True):
                explicit[field.alias or name] = _explicit(setting)
        return explicit
    if isinstance(value, dict):
        return {str(key): _explicit(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_explicit(item) for item in value]
    return to_jsonable_python(value)


def _check_not_all_failed(study: optuna.Study, earlier: set[int]) -> None:
    """Fail the job when every trial it ran failed, although the study's earlier trials completed.

    (When no trial of the study ever completed, the log results step says so, with the first error.)
    """
    from optuna.trial import TrialState

    token = worker_token()
    trials = study.get_trials(deepcopy=False)
    mine = [t for t in trials if t.number not in earlier and t.user_attrs.get(WORKER_ATTR) == token]
    if (
        mine
        and all(trial.state == TrialState.FAIL for trial in mine)
        and any(trial.state == TrialState.COMPLETE for trial in trials)
    ):
        first = next(
            (t.user_attrs[ERROR_ATTR] for t in mine if t.user_attrs.get(ERROR_ATTR)), "no error recorded"
        )
        raise TrainingJobError(
            f"all {len(mine)} trials of this run failed (the study's earlier trials stand); first error: {first}"
        )


def _incompatible(old: BaseDistribution, new: BaseDistribution) -> str | None:
    """Why Optuna refuses ``new`` for a parameter its study recorded as ``old`` (None: it does not)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if type(old) is not type(new):
        kinds = {CategoricalDistribution: "choices", IntDistribution: "integers", FloatDistribution: "floats"}
        return f"the study searched {kinds.get(type(old), type(old).__name__)}, not {kinds.get(type(new))}"
    numeric = IntDistribution | FloatDistribution
    if isinstance(old, numeric) and isinstance(new, numeric) and old.log != new.log:
        return f"the study searched it on a {'log scale, not a linear' if old.log else 'linear scale, not a log'} one"
    if isinstance(old, CategoricalDistribution) and isinstance(new, CategoricalDistribution) and old != new:
        return f"the study's choices are {list(old.choices)}, not {list(new.choices)} (choices cannot change)"
    return None


def _suggest(trial: optuna.Trial, name: str, dimension: Any) -> Any:
    if dimension.kind == "categorical":
        return trial.suggest_categorical(name, list(dimension.choices))
    if dimension.kind == "int":
        return trial.suggest_int(
            name, int(dimension.low), int(dimension.high), step=int(dimension.step or 1), log=dimension.log
        )
    return trial.suggest_float(name, dimension.low, dimension.high, step=dimension.step, log=dimension.log)


def _count_finished(study: optuna.Study) -> int:

    return len(finished_trials(study))


def _format(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
