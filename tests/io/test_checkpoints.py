"""The epoch writer (runtime/epoch_writer.py, its writes in io/checkpoints.py): checkpoints are
snapshots taken when asked, written in order with their epoch's metrics linked, loadable MLflow
models; a failed write, or a writer process that dies, fails the training."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.models import infer_signature
from sklearn.datasets import load_diabetes
from sklearn.linear_model import SGDRegressor

from tests.conftest import ends_within
from trainyard.errors import ModelRegistryError
from trainyard.io.savers import SklearnSaver
from trainyard.runtime.epoch_process import WriterProcess
from trainyard.runtime.epoch_writer import EpochWriter, Where


@pytest.mark.parametrize("where", ["process", "thread", "inline"])
def test_checkpoints_hold_the_model_as_it_was_asked_and_link_their_epochs_metrics(
    workdir: Path, tracking_uri: str, where: Where
) -> None:
    inputs, targets = load_diabetes(return_X_y=True)
    model = SGDRegressor(random_state=0).partial_fit(inputs, targets)
    signature = infer_signature(inputs, model.predict(inputs))
    client = mlflow.MlflowClient(tracking_uri)
    run = client.create_run(mlflow.get_experiment_by_name("tests").experiment_id)
    writer = EpochWriter(run.info.run_id, SklearnSaver(), lambda: signature, where=where)
    assert writer.where == where
    expected = []
    try:
        for epoch in (1, 2, 3):
            writer.checkpoint(epoch, model)
            expected.append(model.predict(inputs))
            writer.log(epoch, {"rmse": float(epoch)})
            model.partial_fit(inputs, targets)  # while the checkpoint may still be written
        writer.delete([1])
        writer.join()
    finally:
        writer.close()
    assert sorted(writer.checkpoints) == [2, 3]
    for epoch in (2, 3):
        logged = client.get_logged_model(writer.checkpoints[epoch])
        assert str(logged.status) == "READY" and logged.tags["trainyard.epoch"] == str(epoch)
        assert [m.key for m in logged.metrics] == ["rmse"] and logged.metrics[0].step == epoch
        loaded = mlflow.sklearn.load_model(logged.model_uri)
        assert np.array_equal(loaded.predict(inputs), expected[epoch - 1])
        info = mlflow.models.get_model_info(logged.model_uri)
        assert info.model_id == logged.model_id and info.signature == signature
    outputs = client.get_run(run.info.run_id).outputs.model_outputs
    assert sorted(output.step for output in outputs) == [1, 2, 3]
    assert client.get_run(run.info.run_id).data.tags["trainyard.epochs_done"] == "3"


@pytest.mark.parametrize("where", ["process", "thread", "inline"])
def test_a_failed_write_is_raised_to_the_training_and_stops_the_writes_after_it(
    workdir: Path, tracking_uri: str, where: Where
) -> None:
    writer = EpochWriter("0" * 32, SklearnSaver(), lambda: None, where=where)  # type: ignore[arg-type, return-value]
    try:
        with pytest.raises(ModelRegistryError, match="writing the epochs to MLflow failed"):
            writer.log(1, {"rmse": 1.0})  # a run that does not exist
            writer.join()
        with pytest.raises(ModelRegistryError):
            writer.log(2, {"rmse": 2.0})
    finally:
        writer.close()


def test_a_writer_process_that_dies_fails_the_training_with_its_exit_code(
    workdir: Path, tracking_uri: str
) -> None:
    client = mlflow.MlflowClient(tracking_uri)
    run = client.create_run(mlflow.get_experiment_by_name("tests").experiment_id)
    writer = EpochWriter(run.info.run_id, SklearnSaver(), lambda: None, where="process")  # type: ignore[arg-type, return-value]
    try:
        writer.log(1, {"rmse": 1.0})
        writer.join()
        backend = writer._backend
        assert isinstance(backend, WriterProcess)
        backend.process.kill()
        backend.process.wait()
        with pytest.raises(ModelRegistryError, match=r"epoch writer process stopped \(exit code -9\)"):
            writer.log(2, {"rmse": 2.0})
            writer.join()
    finally:
        writer.close()
    assert [m.step for m in client.get_metric_history(run.info.run_id, "rmse")] == [1]


def test_the_writer_process_dies_with_its_job(workdir: Path, tracking_uri: str) -> None:
    """A job killed with SIGKILL takes its writer with it: nothing writes the run afterwards."""
    script = (
        "import sys, time, mlflow\n"
        "from trainyard.io.savers import SklearnSaver\n"
        "from trainyard.runtime.epoch_writer import EpochWriter\n"
        f"mlflow.set_tracking_uri({tracking_uri!r})\n"
        "writer = EpochWriter(sys.argv[1], SklearnSaver(), lambda: None, where='process')\n"
        "writer.log(1, {'rmse': 1.0}); writer.join()\n"
        "print(writer._backend.process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    client = mlflow.MlflowClient(tracking_uri)
    run = client.create_run(mlflow.get_experiment_by_name("tests").experiment_id)
    job = subprocess.Popen([sys.executable, "-c", script, run.info.run_id], stdout=subprocess.PIPE, text=True)
    try:
        assert job.stdout is not None
        writer_pid = int(job.stdout.readline())
    finally:
        job.kill()
        job.wait()
    assert ends_within(writer_pid)
