"""The training job against a real ``mlflow server`` process on 127.0.0.1 (started and stopped here)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from tests.conftest import CONFS
from trainyard.cli import main


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tracking server with a SQLite backend and proxied artifacts; fails (never skips) if it cannot start."""
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination", str(folder / "artifacts"), "--workers", "1",
    ]  # fmt: skip
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240  # a 2-core machine loaded to 24 took over 90 s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{(folder / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_training_job_against_a_tracking_server(workdir: Path, mlflow_server: str) -> None:
    overrides = [f"job.mlflow.tracking_uri={mlflow_server}", "job.mlflow.experiment=served"]
    assert main(["run", str(CONFS / "quickstart.yaml"), *overrides]) == 0
    client = mlflow.MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("served").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and "r2" in runs[0].data.metrics
    version = client.get_model_version_by_alias("diabetes", "challenger")
    assert version.run_id == runs[0].info.run_id
    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model("models:/diabetes@challenger")
    assert model.metadata.signature is not None
    assert not (workdir / "mlruns").exists(), "artifacts went to the server, not the working folder"


def test_tuning_job_against_a_tracking_server(
    workdir: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The writer process does the MLflow work over HTTP; what MLflow prints never mixes with its replies."""
    overrides = [
        f"job.mlflow.tracking_uri={mlflow_server}",
        "job.mlflow.experiment=served-tuning",
        "job.searcher.n_trials=4",
        "job.searcher.n_jobs=1",
    ]
    assert main(["run", str(CONFS / "tuning.yaml"), *overrides]) == 0
    err = capsys.readouterr().err
    err = " ".join(err.split())  # log lines unwrapped
    assert "writer process stopped" not in err and "4 child runs written" in err
    client = mlflow.MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("served-tuning").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and len(children) == 4
    writers = {r.data.tags["trainyard.writer"].split(":")[1] for r in children}
    assert str(os.getpid()) not in writers, "written by the writer process"
    plots = {a.path for a in client.list_artifacts(parents[0].info.run_id, "plots")}
    assert "plots/optimization_history.png" in plots
