"""Training in epochs: learning curves, early stopping, checkpoints, final best or last, and resume
(after a SIGKILL, to extend the epochs, and every refusal)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.conftest import CONFS, write_config
from trainyard.cli import main
from trainyard.records import (
    BEST_EPOCH_TAG,
    EPOCHS_DONE_TAG,
    EPOCHS_TAG,
    FINAL_EPOCH_TAG,
    RESUMED_TAG,
    STOPPED_EPOCH_TAG,
)

EXPERIMENT = "epochs"
SGD = """\
job:
  KIND: training
  mlflow: {experiment: epochs}
  inputs: {KIND: csv, path: data/diabetes.csv, columns: [age, sex, bmi, bp, s1, s2, s3, s4, s5, s6]}
  targets: {KIND: csv, path: data/diabetes.csv, columns: [target]}
  splitter: {KIND: train_test, test_size: 0.25, seed: 7}
  model:
    KIND: sklearn
    estimator: SGDRegressor
    params: {learning_rate: constant, eta0: 0.0005, alpha: 0.001, random_state: 0}
    scale: true
  metrics: [rmse, r2]
"""


def config(workdir: Path, epochs: str, name: str = "job.yaml") -> str:
    return write_config(workdir, SGD + f"  epochs: {epochs}\n", name)


def runs(tracking_uri: str, experiment: str = EXPERIMENT) -> list[Any]:
    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def steps(tracking_uri: str, run_id: str, key: str = "rmse") -> list[int]:
    return [m.step for m in mlflow.MlflowClient(tracking_uri).get_metric_history(run_id, key)]


def logged_models(tracking_uri: str, run: Any, name: str) -> list[Any]:
    client = mlflow.MlflowClient(tracking_uri)
    found = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}' AND name = '{name}'"
    )
    return sorted(found, key=lambda model: int(model.tags.get("trainyard.epoch", "0")))


def predictions(tracking_uri: str, run: Any) -> np.ndarray:
    """What the run's final model predicts for every row of the data."""
    (model,) = logged_models(tracking_uri, run, "model")
    inputs = pd.read_csv("data/diabetes.csv").drop(columns=["target"])
    return mlflow.sklearn.load_model(model.model_uri).predict(inputs)  # type: ignore[no-any-return]


def test_each_epoch_logs_validation_and_train_metrics_at_its_step(workdir: Path, tracking_uri: str) -> None:
    assert main(["run", config(workdir, "{count: 5}")]) == 0
    (run,) = runs(tracking_uri)
    assert run.info.status == "FINISHED"
    for key in ("rmse", "r2", "train_rmse", "train_r2", "epoch_time"):
        assert steps(tracking_uri, run.info.run_id, key) == [1, 2, 3, 4, 5], key
    curve = [m.value for m in mlflow.MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "rmse")]
    assert curve[-1] < curve[0], "the model learns"
    assert run.data.tags[EPOCHS_TAG] == "5" and run.data.tags[EPOCHS_DONE_TAG] == "5"
    assert run.data.tags[FINAL_EPOCH_TAG] == "5" and "fit_time" not in run.data.metrics
    assert logged_models(tracking_uri, run, "model") and not logged_models(tracking_uri, run, "checkpoint")


def test_a_warm_start_ensemble_grows_by_the_configured_amount(workdir: Path, tracking_uri: str) -> None:
    path = config(workdir, "{count: 3, grow: 4}")
    forest = [
        "job.model.estimator=RandomForestRegressor",
        "~job.model.params",
        "job.model.params.random_state=0",
    ]
    assert main(["run", path, *forest]) == 0
    (run,) = runs(tracking_uri)
    assert steps(tracking_uri, run.info.run_id) == [1, 2, 3]
    (model,) = logged_models(tracking_uri, run, "model")
    forest = mlflow.sklearn.load_model(model.model_uri).steps[-1][1]
    assert len(forest.estimators_) == 12


def test_a_classifier_learns_in_epochs_with_its_classes_and_probabilities(
    workdir: Path, tracking_uri: str
) -> None:
    text = """\
job:
  KIND: training
  mlflow: {experiment: epochs}
  inputs: {KIND: csv, path: data/breast_cancer.csv, drop: [target]}
  targets: {KIND: csv, path: data/breast_cancer.csv, columns: [target]}
  splitter: {KIND: train_test, test_size: 0.25, stratify: true, seed: 7}
  model: {KIND: sklearn, estimator: SGDClassifier, params: {loss: log_loss, random_state: 0}, scale: true}
  metrics: [accuracy, log_loss]
  epochs: {count: 3}
"""
    assert main(["run", write_config(workdir, text)]) == 0
    (run,) = runs(tracking_uri)
    assert steps(tracking_uri, run.info.run_id, "log_loss") == [1, 2, 3]
    assert run.data.metrics["accuracy"] > 0.9


def test_early_stopping_ends_after_patience_epochs_without_improvement(
    workdir: Path, tracking_uri: str
) -> None:
    # no score beats the first by 1000: the training stops `patience` epochs after it
    epochs = "{count: 20, early_stopping: {metric: rmse, patience: 2, min_delta: 1000}}"
    assert main(["run", config(workdir, epochs)]) == 0
    (run,) = runs(tracking_uri)
    assert steps(tracking_uri, run.info.run_id) == [1, 2, 3]
    assert run.data.tags[STOPPED_EPOCH_TAG] == "3" and run.data.tags[EPOCHS_DONE_TAG] == "3"
    assert run.data.tags[BEST_EPOCH_TAG] == "3", "the best score (no margin) is the last, still improving"


@pytest.mark.parametrize(("final", "final_epoch"), [("best", "2"), ("last", "6")])
def test_checkpoints_keep_the_last_and_the_best_and_the_final_model_is_as_configured(
    workdir: Path, tracking_uri: str, final: str, final_epoch: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # a fast rate: the validation error is lowest at epoch 2, then rises a little
    epochs = f"{{count: 6, checkpoint: {{every: 1, keep_last: 2}}, final: {final}}}"
    assert main(["run", config(workdir, epochs), "job.model.params.eta0=0.005"]) == 0
    (run,) = runs(tracking_uri)
    assert run.data.tags[BEST_EPOCH_TAG] == "2" and run.data.tags[FINAL_EPOCH_TAG] == final_epoch
    checkpoints = logged_models(tracking_uri, run, "checkpoint")
    assert [m.tags["trainyard.epoch"] for m in checkpoints] == ["2", "5", "6"]
    assert "deleted the checkpoint of epoch 1 (" in capsys.readouterr().err
    chosen = next(m for m in checkpoints if m.tags["trainyard.epoch"] == final_epoch)
    # the epoch's metrics are linked to its checkpoint, so MLflow compares checkpoints
    assert {m.key for m in chosen.metrics} >= {"rmse", "train_rmse"}
    inputs = pd.read_csv("data/diabetes.csv").drop(columns=["target"])
    expected = mlflow.sklearn.load_model(chosen.model_uri).predict(inputs)
    assert np.array_equal(predictions(tracking_uri, run), expected)


def test_a_run_killed_mid_training_resumes_into_the_same_run_as_if_uninterrupted(
    workdir: Path, tracking_uri: str
) -> None:
    # the writer process may lag behind the training by many epochs (it starts while they run): enough
    # of them that it cannot have written them all between the poll that sees epoch 7 and the kill
    count = 60
    path = config(workdir, f"{{count: {count}, checkpoint: {{every: 3, keep_last: 1}}}}")
    command = [sys.executable, "-m", "trainyard.cli", "run", path]
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client = mlflow.MlflowClient(tracking_uri)
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and process.poll() is None and done < 7:
        found = runs(tracking_uri)
        done = int(found[0].data.tags.get(EPOCHS_DONE_TAG, "0")) if found else 0
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    (killed,) = runs(tracking_uri)
    logged = steps(tracking_uri, killed.info.run_id)
    assert killed.info.status == "RUNNING" and 7 <= len(logged) < count, "killed mid-training"

    assert main(["run", path, "job.resume=true"]) == 0
    (run,) = runs(tracking_uri)
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    for key in ("rmse", "train_rmse", "epoch_time"):
        assert steps(tracking_uri, run.info.run_id, key) == list(range(1, count + 1)), key
    record = run.data.tags[f"{RESUMED_TAG}.1"]
    assert "from the checkpoint of epoch" in record and f"epochs {count} -> {count}" in record
    assert run.data.tags[EPOCHS_DONE_TAG] == str(count)

    assert main(["run", path, "job.mlflow.experiment=straight"]) == 0
    (straight,) = runs(tracking_uri, "straight")
    assert np.array_equal(predictions(tracking_uri, run), predictions(tracking_uri, straight))
    history = client.get_metric_history(run.info.run_id, "rmse")
    straight_history = client.get_metric_history(straight.info.run_id, "rmse")
    assert [m.value for m in history] == [m.value for m in straight_history]


def test_a_resume_extends_the_epochs_of_a_finished_run(workdir: Path, tracking_uri: str) -> None:
    # the last checkpoint is at 4, epoch 5 was logged after it: recomputed, not logged again
    path = config(workdir, "{count: 5, checkpoint: {every: 2, keep_last: 1}}")
    assert main(["run", path]) == 0
    assert main(["run", path, "job.resume=true", "job.epochs.count=7"]) == 0
    (run,) = runs(tracking_uri)
    assert steps(tracking_uri, run.info.run_id) == [1, 2, 3, 4, 5, 6, 7]
    record = run.data.tags[f"{RESUMED_TAG}.1"]
    assert "epochs 5 -> 7" in record and "epochs 5..5 were logged after that checkpoint" in record
    assert run.data.tags[EPOCHS_TAG] == "7" and len(logged_models(tracking_uri, run, "model")) == 2
    assert main(["run", path, "job.epochs.count=7", "job.mlflow.experiment=straight"]) == 0
    (straight,) = runs(tracking_uri, "straight")
    newest = max(logged_models(tracking_uri, run, "model"), key=lambda m: m.creation_timestamp)
    inputs = pd.read_csv("data/diabetes.csv").drop(columns=["target"])
    resumed = mlflow.sklearn.load_model(newest.model_uri).predict(inputs)
    assert np.array_equal(resumed, predictions(tracking_uri, straight))


def test_a_finished_run_is_not_resumed_without_more_epochs(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(workdir, "{count: 2, checkpoint: {every: 1}}")
    assert main(["run", path]) == 0
    (run,) = runs(tracking_uri)
    assert main(["run", path, "job.resume=true"]) == 1
    err = capsys.readouterr().err
    assert f"no run of this config is left to resume: {run.info.run_id} finished its 2 epochs" in err
    assert "raise job.epochs.count above 2" in err and "Traceback" not in err


def test_resume_refuses_a_run_that_does_not_exist(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(workdir, "{count: 2, checkpoint: {every: 1}}")
    assert main(["run", path, "job.resume=0123abcd"]) == 1
    assert "job.resume: no run 0123abcd in sqlite:///" in capsys.readouterr().err
    assert main(["run", path, "job.resume=true"]) == 1
    err = capsys.readouterr().err
    assert "no run to resume has this config in the experiment: none was trained in epochs there" in err
    assert not runs(tracking_uri)


def test_resume_refuses_a_run_without_a_checkpoint(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(workdir, "{count: 3, checkpoint: {every: 5}}")
    assert main(["run", path]) == 0
    (run,) = runs(tracking_uri)
    assert main(["run", path, "job.resume=true", "job.epochs.count=6"]) == 1
    err = capsys.readouterr().err
    assert f"job.resume: run {run.info.run_id} has no complete checkpoint to continue from" in err
    assert mlflow.MlflowClient(tracking_uri).get_run(run.info.run_id).info.status == "FINISHED"


def test_resume_refuses_another_model(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(workdir, "{count: 2, checkpoint: {every: 1}}")
    assert main(["run", path]) == 0
    (run,) = runs(tracking_uri)
    other = ["job.epochs.count=4", "job.model.estimator=MLPRegressor", "~job.model.params"]
    assert main(["run", path, f"job.resume={run.info.run_id}", *other]) == 2
    err = capsys.readouterr().err
    assert (
        f"job.resume: run {run.info.run_id} has another config: job.model.estimator: 'SGDRegressor' then, 'MLPRegressor' now"
        in err
    )
    assert (
        "a resume may change only job.epochs.count, job.epochs.checkpoint.background, job.resume, job.system_metrics"
        in err
    )
    assert main(["run", path, "job.resume=true", *other]) == 1
    assert (
        f"the newest run trained in epochs, {run.info.run_id}, has another config" in capsys.readouterr().err
    )
    assert len(runs(tracking_uri)) == 1


def test_resume_refuses_other_data_at_the_same_path(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(workdir, "{count: 2, checkpoint: {every: 1}}")
    assert main(["run", path]) == 0
    data = pd.read_csv("data/diabetes.csv")
    data.iloc[:-1].to_csv("data/diabetes.csv", index=False)
    assert main(["run", path, "job.resume=true", "job.epochs.count=4"]) == 2
    err = capsys.readouterr().err
    assert "was trained on other data (inputs digest" in err and "start a new run" in err
    (run,) = runs(tracking_uri)
    assert steps(tracking_uri, run.info.run_id) == [1, 2] and run.info.status == "FAILED"
    assert f"{RESUMED_TAG}.1" not in run.data.tags and run.data.tags[EPOCHS_TAG] == "2"
    data.to_csv("data/diabetes.csv", index=False)  # the data back: the run resumes
    assert main(["run", path, "job.resume=true", "job.epochs.count=4"]) == 0
    assert steps(tracking_uri, run.info.run_id) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "job.model.estimator=KNeighborsRegressor ~job.model.params",
            "job: epochs: KNeighborsRegressor cannot learn in steps (it has no partial_fit, does not grow "
            "with warm_start and is no LightGBM or XGBoost booster); estimators that can: ",
        ),
        (
            "job.epochs.early_stopping.metric=mae",
            "job: epochs: early_stopping.metric 'mae' is not among job.metrics (rmse, r2)",
        ),
        ("job.epochs.final=best", "job: epochs: final: best is the best checkpoint: set epochs.checkpoint"),
        ("job.resume=true", "job: resume: a run continues from a checkpoint: set epochs.checkpoint"),
        ("job.epochs.count=0", "job.epochs.count = 0: Input should be greater than or equal to 1"),
    ],
)
def test_a_config_in_epochs_that_cannot_work_is_refused_before_any_run(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    assert main(["run", config(workdir, "{count: 3}"), *override.split()]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    if "KNeighbors" in override:
        assert "SGDRegressor" in err and "GradientBoostingRegressor" in err and "LGBMRegressor" in err
    assert not runs(tracking_uri)


def test_resume_without_epochs_is_refused(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", write_config(workdir, SGD), "job.resume=true"]) == 2
    assert "resume: only a training in epochs resumes" in capsys.readouterr().err


def test_the_example_config_stops_early_and_saves_its_best_checkpoint(
    workdir: Path, tracking_uri: str
) -> None:
    assert main(["run", str(CONFS / "iterative.yaml"), "job.register=null"]) == 0
    (run,) = runs(tracking_uri, "iterative")
    stopped = int(run.data.tags[STOPPED_EPOCH_TAG])
    assert 10 < stopped < 60 and steps(tracking_uri, run.info.run_id) == list(range(1, stopped + 1))
    kept = [int(m.tags["trainyard.epoch"]) for m in logged_models(tracking_uri, run, "checkpoint")]
    final = int(run.data.tags[FINAL_EPOCH_TAG])
    assert final in kept and len(kept) <= 3 and final % 5 == 0
