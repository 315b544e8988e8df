"""A real job service in a subprocess on 127.0.0.1, in a temporary folder with the example data."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
import yaml

from tests.conftest import CONFS
from trainyard.service.client import JobServiceClient

TOKEN = "test-token"
QUICKSTART: dict[str, Any] = yaml.safe_load((CONFS / "quickstart.yaml").read_text())


def quick_job(**changes: Any) -> dict[str, Any]:
    """The quickstart training job (a second or two), unregistered, in experiment "service"."""
    document = copy.deepcopy(QUICKSTART)
    document["job"]["register"] = None
    document["job"]["mlflow"] = {"experiment": "service"}
    document["job"]["model"]["params"] = {"max_iter": 20}
    document["job"].update(changes)
    return document


def slow_job() -> dict[str, Any]:
    """A training job whose fit takes a minute: to be stopped while it runs."""
    document = quick_job()
    document["job"]["model"]["params"] = {
        "max_iter": 100_000,
        "learning_rate": 0.001,
        "early_stopping": False,
    }
    return document


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """A ``trainyard serve`` process and how to reach it."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes]
    token: str | None = TOKEN
    arguments: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, token: str | None = None) -> JobServiceClient:
        return JobServiceClient(self.url, self.token if token is None else token)

    def http(self, token: str | None = None) -> httpx.Client:
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)  # a loaded machine

    def output(self) -> str:
        return (self.folder / "serve.out").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def mlflow_runs(self, job_id: str, experiment: str = "service") -> list[Any]:
        client = mlflow.MlflowClient(f"sqlite:///{self.folder / 'mlflow.db'}")
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        return list(client.search_runs([found.experiment_id], f"tags.`trainyard.service_job` = '{job_id}'"))


def start_service(
    folder: Path, *arguments: str, token: str | None = TOKEN, port: int | None = None
) -> Service:
    """Start ``trainyard serve`` in ``folder`` and wait until it answers /health."""
    port = port or free_port()
    env = {key: value for key, value in os.environ.items() if key != "TRAINYARD_TOKEN"}
    if token:
        env["TRAINYARD_TOKEN"] = token
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [
        sys.executable,
        "-m",
        "trainyard.cli",
        "serve",
        "--port",
        str(port),
        "--grace",
        "3",
        *arguments,
    ]
    with (folder / "serve.out").open("ab") as out:
        process = subprocess.Popen(command, cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=env)
    service = Service(folder, port, process, token, list(arguments))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the service exited {process.returncode}:\n{service.output()}")
        try:
            if httpx.get(f"{service.url}/health", timeout=1).status_code == 200:
                return service
        except httpx.HTTPError:
            time.sleep(0.1)
    service.stop()
    raise AssertionError(f"the service did not answer in 60 s:\n{service.output()}")


def service_folder(folder: Path, empty_store: Path, example_data: Path) -> Path:
    """A working folder for a service: an MLflow store and the example data in data/."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(empty_store, folder / "mlflow.db")
    shutil.copytree(example_data, folder / "data")
    return folder


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, empty_store: Path, example_data: Path
) -> Iterator[Service]:
    """One service (2 workers) shared by a module's tests."""
    folder = service_folder(tmp_path_factory.mktemp("service"), empty_store, example_data)
    running = start_service(folder, "--workers", "2")
    yield running
    running.stop()


@pytest.fixture
def own_folder(tmp_path: Path, empty_store: Path, example_data: Path) -> Path:
    """A folder for a test that starts (and kills) its own service."""
    return service_folder(tmp_path / "service", empty_store, example_data)
