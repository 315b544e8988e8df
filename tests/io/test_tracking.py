"""The MLflow service's new SQLite stores: copied from a migrated template, or migrated in place."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import CONFS
from trainyard.cli import main
from trainyard.io.tracking import _create_sqlite_store_once, check_server_reachable, store_template


def _schema_version(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return str(connection.execute("select version_num from alembic_version").fetchone()[0])


def _journal_mode(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return str(connection.execute("PRAGMA journal_mode").fetchone()[0])


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
        assert _journal_mode(store) == "wal", "writers at once never fail on a reader's lock"
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
    assert _journal_mode(tmp_path / "mlflow.db") == "wal"


@pytest.mark.parametrize("config", ["quickstart.yaml", "tuning.yaml"])
def test_a_tracking_server_that_does_not_answer_fails_at_once(
    workdir: Path, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """MLflow alone retries for minutes; the tuning job would run all its trials first."""
    start = time.monotonic()
    overrides = ["job.mlflow.tracking_uri=http://127.0.0.1:1", "job.searcher.n_trials=2"][
        : 1 + (config == "tuning.yaml")
    ]
    assert main(["run", str(CONFS / config), *overrides]) == 1
    err = capsys.readouterr().err
    assert "no MLflow tracking server answers at http://127.0.0.1:1" in err and "Traceback" not in err
    assert "trial 0" not in err, "no trial ran"
    assert time.monotonic() - start < 60


def test_any_http_answer_counts_as_a_server(tmp_path: Path) -> None:
    """A proxy's 401, or a server without /health: MLflow's own errors say the rest."""
    import http.server
    import threading

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(401, "login first")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check_server_reachable(f"http://127.0.0.1:{server.server_port}")
        # credentials in the URI are MLflow's to send (the probe sends none: any answer will do)
        check_server_reachable(f"http://alice:s3cret@127.0.0.1:{server.server_port}/prefix")
        # a TLS handshake that fails is MLflow's to judge, with its own certificate settings
        check_server_reachable(f"https://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    check_server_reachable(f"sqlite:///{tmp_path}/mlflow.db")  # not a server: nothing to check


def test_a_password_in_the_tracking_uri_is_never_shown(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            ["run", str(CONFS / "quickstart.yaml"), "job.mlflow.tracking_uri=http://alice:s3cret@127.0.0.1:1"]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "no MLflow tracking server answers at http://127.0.0.1:1" in err and "s3cret" not in err


def test_ctrl_c_while_mlflow_opens_leaves_no_handler_behind(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    from trainyard.io.tracking import MlflowService

    def interrupted(self: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(MlflowService, "start", interrupted)
    assert main(["run", str(CONFS / "quickstart.yaml")]) == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
