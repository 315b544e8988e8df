"""LightGBM and XGBoost in epochs: boosting rounds per epoch, their curves, and a resume that
continues the checkpoint's booster (LightGBM's init_model, XGBoost's xgb_model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.conftest import write_config
from tests.jobs.test_iterative import logged_models, predictions, runs, steps
from trainyard.cli import main
from trainyard.records import RESUMED_TAG

BOOSTERS = {
    "LGBMRegressor": "{n_jobs: 1, verbose: -1, num_leaves: 7, learning_rate: 0.2, random_state: 0}",
    "XGBRegressor": "{n_jobs: 1, max_depth: 3, learning_rate: 0.2, random_state: 0}",
}
CONFIG = """\
job:
  KIND: training
  mlflow: {{experiment: epochs}}
  inputs: {{KIND: csv, path: data/diabetes.csv, columns: [age, sex, bmi, bp, s1, s2, s3, s4, s5, s6]}}
  targets: {{KIND: csv, path: data/diabetes.csv, columns: [target]}}
  splitter: {{KIND: train_test, test_size: 0.25, seed: 7}}
  model: {{KIND: sklearn, estimator: {estimator}, params: {params}, impute: false}}
  metrics: [rmse, r2]
  epochs: {epochs}
"""


def boosting_config(workdir: Path, estimator: str, epochs: str) -> str:
    return write_config(
        workdir, CONFIG.format(estimator=estimator, params=BOOSTERS[estimator], epochs=epochs)
    )


def rounds(model: Any) -> int:
    booster = model.steps[-1][1]
    if hasattr(booster, "booster_"):
        return int(booster.booster_.current_iteration())
    return int(booster.get_booster().num_boosted_rounds())


def final_model(tracking_uri: str, run: Any) -> Any:
    newest = max(logged_models(tracking_uri, run, "model"), key=lambda m: m.creation_timestamp)
    return mlflow.sklearn.load_model(newest.model_uri)


@pytest.mark.parametrize("estimator", sorted(BOOSTERS))
def test_a_booster_resumed_from_its_checkpoint_equals_an_uninterrupted_one(
    workdir: Path, tracking_uri: str, estimator: str
) -> None:
    path = boosting_config(workdir, estimator, "{count: 5, checkpoint: {every: 2, keep_last: 1}}")
    assert main(["run", path]) == 0
    (run,) = runs(tracking_uri)
    assert steps(tracking_uri, run.info.run_id, "train_rmse") == [1, 2, 3, 4, 5]
    assert rounds(final_model(tracking_uri, run)) == 5, "one boosting round an epoch by default"
    curve = [m.value for m in mlflow.MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "rmse")]
    assert curve[-1] < curve[0], "the booster learns"

    # the checkpoint of epoch 4 continues: epoch 5 is recomputed, not logged again
    assert main(["run", path, "job.resume=true", "job.epochs.count=8"]) == 0
    (resumed,) = runs(tracking_uri)
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert steps(tracking_uri, run.info.run_id) == list(range(1, 9))
    assert "from the checkpoint of epoch 4" in resumed.data.tags[f"{RESUMED_TAG}.1"]
    model = final_model(tracking_uri, resumed)
    assert rounds(model) == 8

    assert main(["run", path, "job.epochs.count=8", "job.mlflow.experiment=straight"]) == 0
    (straight,) = runs(tracking_uri, "straight")
    inputs = pd.read_csv("data/diabetes.csv").drop(columns=["target"])
    assert np.array_equal(model.predict(inputs), predictions(tracking_uri, straight))
    client = mlflow.MlflowClient(tracking_uri)
    assert [m.value for m in client.get_metric_history(run.info.run_id, "rmse")] == [
        m.value for m in client.get_metric_history(straight.info.run_id, "rmse")
    ]


def test_an_epoch_adds_grow_rounds_and_a_booster_classifier_logs_its_probability_metrics(
    workdir: Path, tracking_uri: str
) -> None:
    text = """\
job:
  KIND: training
  mlflow: {experiment: epochs}
  inputs: {KIND: csv, path: data/breast_cancer.csv, drop: [target]}
  targets: {KIND: csv, path: data/breast_cancer.csv, columns: [target]}
  splitter: {KIND: train_test, test_size: 0.25, stratify: true, seed: 7}
  model: {KIND: sklearn, estimator: LGBMClassifier, params: {n_jobs: 1, verbose: -1, num_leaves: 7}}
  metrics: [log_loss, accuracy]
  epochs: {count: 3, grow: 4, early_stopping: {metric: log_loss, patience: 5}}
"""
    assert main(["run", write_config(workdir, text)]) == 0
    (run,) = runs(tracking_uri)
    assert steps(tracking_uri, run.info.run_id, "log_loss") == [1, 2, 3]
    assert steps(tracking_uri, run.info.run_id, "train_accuracy") == [1, 2, 3]
    assert rounds(final_model(tracking_uri, run)) == 12
    assert run.data.metrics["accuracy"] > 0.9
