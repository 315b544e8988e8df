"""Tuning in epochs: each trial trains on every fold an epoch at a time, reports the folds' mean
after each epoch, and the pruners stop bad trials mid-training; their child runs say so."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest

from tests.conftest import write_config
from tests.jobs.test_tuning import runs_of, study_of
from trainyard.cli import main
from trainyard.records import PRUNED_EPOCH_TAG

CONFIG = """
job:
  KIND: tuning
  mlflow: {experiment: tune}
  inputs: {KIND: csv, path: data/diabetes.csv, drop: [target]}
  targets: {KIND: csv, path: data/diabetes.csv, columns: [target]}
  model:
    KIND: sklearn
    estimator: SGDRegressor
    params: {learning_rate: constant, random_state: 0}
    scale: true
  metrics: [rmse]
  splitter: {KIND: kfold, n_splits: 2}
  plots: false
  epochs: {count: 8}
  searcher:
    KIND: random
    seed: 0
    n_trials: 10
    space: {eta0: 'tag(log, interval(1e-7, 1e-2))'}
    pruner: PRUNER
"""


@pytest.mark.parametrize(
    "pruner", ["{KIND: median, n_startup_trials: 2, n_warmup_steps: 1}", "{KIND: hyperband}"]
)
def test_a_pruner_stops_bad_trials_mid_training_and_their_runs_say_after_which_epoch(
    workdir: Path, tracking_uri: str, pruner: str
) -> None:
    assert main(["run", write_config(workdir, CONFIG.replace("PRUNER", pruner))]) == 0
    study = study_of(workdir)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert pruned and complete, "tiny learning rates learn too slowly and are pruned"
    assert all(1 <= len(t.intermediate_values) < 8 for t in pruned), "pruned mid-training"
    assert all(sorted(t.intermediate_values) == list(range(1, 9)) for t in complete)
    _, children = runs_of(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    by_trial = {int(c.data.tags["trainyard.trial"]): c for c in children}
    for trial in pruned:
        run = by_trial[trial.number]
        assert run.info.status == "KILLED" and run.data.tags["trainyard.state"] == "PRUNED"
        assert run.data.tags[PRUNED_EPOCH_TAG] == str(len(trial.intermediate_values))
        curve = client.get_metric_history(run.info.run_id, "rmse_epoch")
        assert [m.step for m in curve] == sorted(trial.intermediate_values)
        assert [m.value for m in curve] == [
            trial.intermediate_values[s] for s in sorted(trial.intermediate_values)
        ]
    for trial in complete:
        run = by_trial[trial.number]
        assert run.info.status == "FINISHED" and PRUNED_EPOCH_TAG not in run.data.tags
        curve = client.get_metric_history(run.info.run_id, "rmse_epoch")
        assert [m.step for m in curve] == list(range(1, 9))
        assert curve[-1].value == pytest.approx(trial.value), "a trial's score is its last epoch's"


@pytest.mark.parametrize(
    ("estimator", "space", "expected"),
    [
        (
            "KNeighborsRegressor",
            "{n_neighbors: [3, 5]}",
            "job: epochs: KNeighborsRegressor cannot learn in steps",
        ),
        (
            "RandomForestRegressor",
            "{n_estimators: [10, 50], max_depth: [2, 4]}",
            "searcher.space.n_estimators: in epochs, RandomForestRegressor's n_estimators is set by the "
            "epochs",
        ),
    ],
)
def test_tuning_in_epochs_refuses_a_model_that_cannot_learn_in_steps_or_a_space_of_what_they_grow(
    workdir: Path,
    tracking_uri: str,
    capsys: pytest.CaptureFixture[str],
    estimator: str,
    space: str,
    expected: str,
) -> None:
    text = CONFIG.replace("PRUNER", "{KIND: median}").replace(
        "{eta0: 'tag(log, interval(1e-7, 1e-2))'}", space
    )
    config = write_config(workdir, text)
    assert main(["run", config, f"job.model.estimator={estimator}", "~job.model.params"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_a_classifier_is_tuned_in_epochs_with_every_class_given_to_its_first_epoch(
    workdir: Path, tracking_uri: str
) -> None:
    text = """
job:
  KIND: tuning
  mlflow: {experiment: tune}
  inputs: {KIND: csv, path: data/breast_cancer.csv, drop: [target]}
  targets: {KIND: csv, path: data/breast_cancer.csv, columns: [target]}
  model: {KIND: sklearn, estimator: SGDClassifier, params: {loss: log_loss, random_state: 0}, scale: true}
  metrics: [log_loss]
  splitter: {KIND: stratified_kfold, n_splits: 2}
  plots: false
  epochs: {count: 3}
  searcher: {KIND: random, seed: 0, n_trials: 2, space: {alpha: 'tag(log, interval(1e-5, 1e-2))'}}
"""
    assert main(["run", write_config(workdir, text)]) == 0
    study = study_of(workdir)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(t.value is not None and t.value < 1.0 for t in study.trials)
    _, children = runs_of(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    assert all(
        [m.step for m in client.get_metric_history(c.info.run_id, "log_loss_epoch")] == [1, 2, 3]
        for c in children
    )
