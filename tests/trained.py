"""A store holding trained, registered models, made once per test module and copied into each test.

``train_store`` runs the example training jobs (confs/quickstart.yaml registers diabetes version 1 as
@challenger, confs/classification.yaml breast-cancer version 1 as @challenger) in a folder of their
own; their artifacts stay there, and a copy of the store's database in a test's working folder finds
them by their absolute paths.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest

from tests.conftest import CONFS
from trainyard.cli import main

QUICKSTART = str(CONFS / "quickstart.yaml")
CLASSIFICATION = str(CONFS / "classification.yaml")


def train_store(folder: Path, empty_store: Path, example_data: Path) -> Path:
    """Train and register both example models in ``folder``; the path of its mlflow.db."""
    shutil.copy(empty_store, folder / "mlflow.db")
    shutil.copytree(example_data, folder / "data")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert main(["run", QUICKSTART]) == 0
        assert main(["run", CLASSIFICATION]) == 0
    while mlflow.active_run() is not None:
        mlflow.end_run()
    return folder / "mlflow.db"


def use_store(trained: Path, workdir: Path) -> str:
    """Put a copy of the trained store in ``workdir`` and make it current; its tracking URI."""
    shutil.copy(trained, workdir / "mlflow.db")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri
