"""Shared fixtures: a fresh MLflow SQLite store and example data in a temporary working folder."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# No per-example deadline: on a loaded 2-core machine one example of a correct property took over
# Hypothesis's default 200 ms (DeadlineExceeded); speed is measured in benchmarks/, not in tests.
settings.register_profile("trainyard", deadline=None)
settings.load_profile("trainyard")

ROOT = Path(__file__).resolve().parents[1]
CONFS = ROOT / "confs"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tests' own cache folder (the MLflow store template), not the user's ~/.cache."""
    import os

    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt, as in a terminal, however the suite was started.

    A shell starts a background command (``pytest ... &``, ``nohup``) with SIGINT ignored, and the
    processes the tests start inherit that: the tests of Ctrl-C would then test a job that keeps
    ignoring it (which it does on purpose), and fail.
    """
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if previous is not None:  # None: a handler that C code installed, which Python cannot put back
        signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables created once (creating them takes seconds)."""
    import os

    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    cwd = Path.cwd()
    os.chdir(path.parent)  # the Default experiment's artifacts would go to ./mlruns
    try:
        MlflowClient(f"sqlite:///{path}").search_experiments()
    finally:
        os.chdir(cwd)
    return path


@pytest.fixture(scope="session")
def example_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example CSV files the configs in confs/ read."""
    from trainyard.io.examples import write_example_data

    folder = tmp_path_factory.mktemp("data")
    write_example_data(folder)
    return folder


@pytest.fixture
def workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path, example_data: Path
) -> Iterator[Path]:
    """A working folder with its own MLflow store (mlflow.db) and data/; the test runs inside it."""
    import mlflow

    shutil.copy(empty_store, tmp_path / "mlflow.db")
    shutil.copytree(example_data, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield tmp_path
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def tracking_uri(workdir: Path) -> str:
    """The working folder's store, made current, with an experiment whose artifacts stay in the folder."""
    import mlflow

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("tests")
    return uri


def write_config(folder: Path, text: str, name: str = "job.yaml") -> str:
    """Write a config file and return its path as a string."""
    path = folder / name
    path.write_text(text)
    return str(path)


def ends_within(pid: int, seconds: float = 10.0) -> bool:
    """Whether process ``pid`` is gone (or a zombie) within ``seconds`` (Linux: from /proc)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False
