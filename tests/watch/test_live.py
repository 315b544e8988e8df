"""A live watcher in a process of its own: files dropped in run, Ctrl-C and SIGTERM stop it cleanly."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import mlflow
import pytest

from tests.watch.conftest import LiveWatcher, drop, hash_of, quick_config, runs
from trainyard.cli import main
from trainyard.records import ERROR_TAG, WATCH_CONTENT_HASH_TAG
from trainyard.watch.ledger import Ledger

SLOW = quick_config(100_000).replace("max_iter: 100000", "max_iter: 100000, early_stopping: false")


def fitting(tracking_uri: str, timeout: float = 180) -> mlflow.entities.Run:
    """The (only) run, once its job is fitting: minutes of fit are left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = runs(tracking_uri)
        if found and "data.train_rows" in found[0].data.params:
            time.sleep(0.5)  # inside the fit
            return found[0]
        time.sleep(0.2)
    raise AssertionError("the job did not start fitting")


def test_a_config_dropped_in_runs_and_ctrl_c_lets_it_finish(
    workdir: Path, incoming: Path, tracking_uri: str, live: type[LiveWatcher]
) -> None:
    watcher = live(workdir, "incoming")
    watcher.wait_for("watching")
    dropped = drop(incoming, "dropped.yaml", quick_config(10))
    watcher.wait_for("started dropped.yaml")
    watcher.signal(signal.SIGINT)
    assert watcher.ended() == 0, watcher.output
    assert "Ctrl-C: stopping once dropped.yaml has ended (Ctrl-C again: stop it now)" in watcher.output
    assert "done dropped.yaml" in watcher.output and watcher.lines[-1].endswith("stopped")
    (run,) = runs(tracking_uri)
    assert run.info.status == "FINISHED"
    assert Ledger(incoming).entries()[hash_of(dropped)].run_id == run.info.run_id


@pytest.mark.parametrize("stop", ["ctrl-c twice", "sigterm"])
def test_a_running_job_stopped_ends_its_run_killed_and_runs_again_later(
    workdir: Path,
    incoming: Path,
    tracking_uri: str,
    live: type[LiveWatcher],
    capsys: pytest.CaptureFixture[str],
    stop: str,
) -> None:
    slow = drop(incoming, "slow.yaml", SLOW)
    watcher = live(workdir, "incoming")
    watcher.wait_for("started slow.yaml")
    run = fitting(tracking_uri)
    if stop == "sigterm":
        watcher.signal(signal.SIGTERM)
        watcher.wait_for("SIGTERM: stopping slow.yaml now (its run ends KILLED)")
    else:
        watcher.signal(signal.SIGINT)
        watcher.wait_for("Ctrl-C: stopping once slow.yaml has ended")
        watcher.signal(signal.SIGINT)
        watcher.wait_for("stopping slow.yaml now (its run ends KILLED)")
    assert watcher.ended() == 130, watcher.output
    assert "stopped slow.yaml after" in watcher.output and f"(run {run.info.run_id})" in watcher.output
    assert "pending again" in watcher.output and "Traceback" not in watcher.output
    ended = mlflow.MlflowClient(tracking_uri).get_run(run.info.run_id)
    assert ended.info.status == "KILLED" and "SIGTERM" in ended.data.tags[ERROR_TAG]
    assert ended.data.tags[WATCH_CONTENT_HASH_TAG] == hash_of(slow)
    assert Ledger(incoming).entries() == {}, "the claim is given up: it runs when a watcher next starts"
    assert main(["watch", str(incoming), "--status"]) == 0
    assert "slow.yaml │ pending" in capsys.readouterr().out


def test_a_killed_watcher_takes_its_job_down_with_its_run_ended_killed(
    workdir: Path,
    incoming: Path,
    tracking_uri: str,
    live: type[LiveWatcher],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A watcher killed at once (SIGKILL, the OOM killer) cannot stop its job: the job is sent
    SIGTERM by the system, and its claim is left for the next watcher to take over."""
    drop(incoming, "slow.yaml", SLOW)
    watcher = live(workdir, "incoming")
    watcher.wait_for("started slow.yaml")
    run = fitting(tracking_uri)
    watcher.signal(signal.SIGKILL)
    assert watcher.ended() == -signal.SIGKILL
    client = mlflow.MlflowClient(tracking_uri)
    deadline = time.monotonic() + 120
    while client.get_run(run.info.run_id).info.status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.get_run(run.info.run_id).info.status == "KILLED"
    (entry,) = Ledger(incoming).entries().values()
    assert entry.state == "running" and entry.job is not None
    while entry.alive and time.monotonic() < deadline:  # the job's process exits after its run ended
        time.sleep(0.2)
        (entry,) = Ledger(incoming).entries().values()
    assert not entry.alive
    assert main(["watch", str(incoming), "--status"]) == 0
    assert "is gone: the next watcher takes it over" in capsys.readouterr().out


def test_every_runs_the_then_jobs_on_schedule_and_a_failing_one_does_not_stop_it(
    workdir: Path, incoming: Path, live: type[LiveWatcher]
) -> None:
    (workdir / "report.yaml").write_text("job:\n  KIND: reporting\n")  # fails: no such kind
    watcher = live(workdir, "incoming", "--then", "report.yaml", "--every", "1s")
    watcher.wait_for("watching")
    assert "then report.yaml every 1 s" in watcher.output
    watcher.wait_for("failed then report.yaml", count=2)
    assert "job.KIND = 'reporting': unknown KIND" in watcher.output
    watcher.signal(signal.SIGINT)
    assert watcher.ended() == 0, watcher.output
    assert "picked up" not in watcher.output
