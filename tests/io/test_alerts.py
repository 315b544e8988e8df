"""Alerts: the console alert, a webhook received by a local server, and a failing webhook."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.conftest import CONFS
from tests.jobs.test_tuning import tuning
from trainyard.cli import main
from trainyard.io.alerts import ConsoleAlert, WebhookAlert, notify_all
from trainyard.io.logging import LOGGER_NAME, LoggerService


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A Slack-like webhook on 127.0.0.1 that records the JSON bodies it receives."""
    received: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def closed_port_url() -> str:
    """Port 1 (tcpmux): nothing listens there, and no test's server can be given it (a freed ephemeral
    port could go to another pytest worker's server in between)."""
    return "http://127.0.0.1:1/hook"


def test_webhook_posts_slack_json(webhook: tuple[str, list[dict[str, str]]]) -> None:
    url, received = webhook
    WebhookAlert(url=url).notify("Done", "run 123")
    assert received == [{"text": "*Done*\nrun 123"}]


def test_failing_webhook_is_logged_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    logging.getLogger(LOGGER_NAME).propagate = True
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    notify_all([WebhookAlert(url=closed_port_url(), timeout=2), ConsoleAlert()], "Done", "run 123")
    assert "alert webhook failed" in caplog.text
    assert "Done: run 123" in caplog.text, "later alerts still go out"


def test_job_succeeds_despite_failing_webhook_and_alerts_on_success(
    workdir: Path, webhook: tuple[str, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = webhook
    monkeypatch.setenv("GOOD_HOOK", url)
    monkeypatch.setenv("BAD_HOOK", closed_port_url())
    alerts = "job.alerts=[{KIND: webhook, url: '${oc.env:BAD_HOOK}', timeout: 2}, {KIND: webhook, url: '${oc.env:GOOD_HOOK}'}]"
    assert main(["run", str(CONFS / "quickstart.yaml"), alerts]) == 0
    assert (
        len(received) == 1
        and "Training finished" in received[0]["text"]
        and "version 1" in received[0]["text"]
    )


def test_job_failure_is_alerted(workdir: Path, webhook: tuple[str, list[dict[str, str]]]) -> None:
    url, received = webhook
    alerts = f"job.alerts=[{{KIND: webhook, url: '{url}'}}]"
    assert main(["run", str(CONFS / "quickstart.yaml"), alerts, "job.targets.columns=[nope]"]) == 1
    assert len(received) == 1 and "failed" in received[0]["text"] and "nope" in received[0]["text"]


def test_logger_writes_a_file_in_its_folder(tmp_path: Path) -> None:
    service = LoggerService(folder=str(tmp_path / "logs"), level="DEBUG")
    service.start().debug("hello file")
    service.stop()
    assert "DEBUG hello file" in (tmp_path / "logs" / "trainyard.log").read_text()


def test_logger_writes_plain_lines_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    service = LoggerService()
    long_message = "trial 7 failed: " + "x" * 150  # rich would wrap it at 80 columns
    service.start().warning(long_message)
    service.start().info("again")  # restarting replaces the handler: no line twice
    service.stop()
    assert capsys.readouterr().err.splitlines() == [f"WARNING  {long_message}", "INFO     again"]


def test_malformed_webhook_url_never_fails(caplog: pytest.LogCaptureFixture) -> None:
    logging.getLogger(LOGGER_NAME).propagate = True
    notify_all([WebhookAlert(url="http://127.0.0.1:1/hook with space\n", timeout=1)], "Done", "run 1")
    assert "alert webhook failed" in caplog.text


def test_tuning_success_is_alerted_with_the_best_score_and_params(
    workdir: Path, webhook: tuple[str, list[dict[str, str]]]
) -> None:
    url, received = webhook
    alerts = f"job.alerts=[{{KIND: webhook, url: '{url}'}}]"
    assert main(["run", tuning(workdir), alerts, "job.searcher.n_trials=2"]) == 0
    assert len(received) == 1
    text = received[0]["text"]
    assert "Tuning finished" in text and "best: rmse=" in text and "params: max_depth=" in text


def test_a_job_that_fails_before_its_run_starts_is_alerted(
    workdir: Path, webhook: tuple[str, list[dict[str, str]]]
) -> None:
    """The tuning job opens its study before its MLflow run: a study made for other metrics."""
    url, received = webhook
    alerts = f"job.alerts=[{{KIND: webhook, url: '{url}'}}]"
    config = tuning(workdir)
    assert main(["run", config, "job.study.name=s", "job.searcher.n_trials=1"]) == 0
    assert main(["run", config, alerts, "job.study.name=s", "job.metrics=[r2]"]) == 2
    assert len(received) == 1
    text = received[0]["text"]
    assert "tuning job failed" in text and "before its MLflow run started" in text
    assert "study 's' was made for the metrics rmse" in text


def test_an_mlflow_store_that_cannot_open_is_alerted(
    workdir: Path, webhook: tuple[str, list[dict[str, str]]]
) -> None:
    url, received = webhook
    alerts = f"job.alerts=[{{KIND: webhook, url: '{url}'}}]"
    (workdir / "blocked").write_text("a file where the store's folder should be\n")
    store = f"job.mlflow.tracking_uri=sqlite:///{workdir}/blocked/mlflow.db"
    assert main(["run", str(CONFS / "quickstart.yaml"), alerts, store]) == 1
    assert len(received) == 1 and "cannot open the MLflow store" in received[0]["text"]
