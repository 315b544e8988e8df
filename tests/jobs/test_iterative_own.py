"""A model of one's own in epochs, by import path (tests/jobs/own_models.py): allowed only with
--allow-import-paths, its interface checked on the class, trained, checkpointed and resumed."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from tests.conftest import write_config
from tests.jobs.test_iterative import SGD, logged_models, predictions, runs, steps
from trainyard.cli import main
from trainyard.records import RESUMED_TAG

OWN = "tests.jobs.own_models:GradientLinear"


def own_config(workdir: Path, epochs: str | None, estimator: str = OWN) -> str:
    text = SGD.replace("estimator: SGDRegressor", f"estimator: {estimator!r}").replace(
        "params: {learning_rate: constant, eta0: 0.0005, alpha: 0.001, random_state: 0}",
        "params: {rate: 0.05, seed: 3}",
    )
    return write_config(workdir, text + (f"  epochs: {epochs}\n" if epochs else ""))


def test_a_model_of_ones_own_trains_checkpoints_and_resumes_like_an_uninterrupted_run(
    workdir: Path, tracking_uri: str
) -> None:
    path = own_config(workdir, "{count: 5, checkpoint: {every: 2, keep_last: 1}}")
    assert main(["run", "--allow-import-paths", path]) == 0
    (run,) = runs(tracking_uri)
    assert steps(tracking_uri, run.info.run_id, "train_rmse") == [1, 2, 3, 4, 5]
    curve = [m.value for m in mlflow.MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "rmse")]
    assert curve[-1] < curve[0], "the model learns"
    (checkpoint,) = logged_models(tracking_uri, run, "checkpoint")
    loaded = mlflow.sklearn.load_model(checkpoint.model_uri).steps[-1][1].model
    assert type(loaded).__name__ == "GradientLinear" and loaded.rate == 0.05  # through load_state

    assert main(["run", "--allow-import-paths", path, "job.resume=true", "job.epochs.count=9"]) == 0
    (resumed,) = runs(tracking_uri)
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert steps(tracking_uri, run.info.run_id) == list(range(1, 10))
    assert "from the checkpoint of epoch 4" in resumed.data.tags[f"{RESUMED_TAG}.1"]
    assert (
        main(["run", "--allow-import-paths", path, "job.epochs.count=9", "job.mlflow.experiment=straight"])
        == 0
    )
    (straight,) = runs(tracking_uri, "straight")
    newest = max(logged_models(tracking_uri, resumed, "model"), key=lambda m: m.creation_timestamp)
    import pandas as pd

    inputs = pd.read_csv("data/diabetes.csv").drop(columns=["target"])
    assert np.array_equal(
        mlflow.sklearn.load_model(newest.model_uri).predict(inputs), predictions(tracking_uri, straight)
    )


@pytest.mark.parametrize(
    ("options", "estimator", "epochs", "message"),
    [
        ([], OWN, "{count: 2}", "import paths are not accepted here"),
        (
            ["--allow-import-paths"],
            OWN,
            None,
            f"job: epochs: {OWN} is a model of your own that trains in epochs (fit_epoch): set epochs",
        ),
        (
            ["--allow-import-paths"],
            "tests.jobs.own_models:Unfinished",
            "{count: 2}",
            "looks like a model of your own that trains in epochs, but lacks load_state: it needs "
            "fit_epoch, predict, save_state, load_state",
        ),
    ],
)
def test_a_model_of_ones_own_is_refused_before_any_run_unless_allowed_and_complete(
    workdir: Path,
    tracking_uri: str,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    estimator: str,
    epochs: str | None,
    message: str,
) -> None:
    assert main(["run", *options, own_config(workdir, epochs, estimator)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "an instance was made" not in err, err
    assert not runs(tracking_uri)
