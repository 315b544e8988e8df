"""The MLflow service's new SQLite stores: copied from a migrated template, or migrated in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow import MlflowClient

from trainyard.io.tracking import _create_sqlite_store_once, store_template


def _schema_version(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return str(connection.execute("select version_num from alembic_version").fetchone()[0])


def _default_experiment_folder(uri: str) -> str:
    return MlflowClient(uri).get_experiment("0").artifact_location


def test_new_stores_are_copied_from_one_migrated_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        _create_sqlite_store_once(f"sqlite:///{tmp_path / name / 'mlflow.db'}")
    template = store_template()
    assert template is not None and template.parent == tmp_path / "cache" / "trainyard"
    with sqlite3.connect(template) as connection:
        assert connection.execute("select count(*) from experiments").fetchone()[0] == 0, "no Default in it"
    for name in ("one", "two"):
        store = tmp_path / name / "mlflow.db"
        assert _schema_version(store) == _schema_version(template)
        assert _default_experiment_folder(f"sqlite:///{store}").startswith(str(tmp_path / name))
    client = MlflowClient(f"sqlite:///{tmp_path / 'two' / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("e"))
    client.log_metric(run.info.run_id, "m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}


def test_without_a_usable_cache_the_store_is_migrated_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    monkeypatch.chdir(tmp_path)
    assert store_template() is None
    _create_sqlite_store_once(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()[0].name == "Default"
