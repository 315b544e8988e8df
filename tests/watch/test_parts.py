"""The watcher's parts on their own: the ledger's claims, the schedules, what a failed job said."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest

from trainyard.records import process_token
from trainyard.watch.folder import is_config_name, scan
from trainyard.watch.launch import _error, job_environment
from trainyard.watch.ledger import Ledger
from trainyard.watch.schedule import Cron, Interval, parse_every


def gone() -> str:
    host, pid, _ = process_token(os.getpid()).split(":")
    return f"{host}:{pid}:0"


def test_a_content_is_claimed_once_among_many_claimants(tmp_path: Path) -> None:
    """Sixteen threads, each a watcher of its own (another token), claim one content: one wins."""
    tokens = [f"another-host:{n}:1" for n in range(16)]
    won: list[str] = []
    barrier = threading.Barrier(len(tokens))

    def claim(token: str) -> None:
        barrier.wait()
        if Ledger(tmp_path, token=token).claim("h", "a.yaml", "a.log") is not None:
            won.append(token)

    threads = [threading.Thread(target=claim, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    (entry,) = Ledger(tmp_path).entries().values()
    assert entry.state == "running" and entry.alive, "a watcher of another host is assumed alive"


def test_a_claim_is_taken_over_only_when_its_watcher_and_its_job_are_gone(tmp_path: Path) -> None:
    dead = Ledger(tmp_path, token=gone())
    assert dead.claim("h", "a.yaml", "a.log") is not None
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead.started("h", process_token(sleeper.pid))
        assert Ledger(tmp_path).claim("h", "a.yaml", "a.log") is None, "its job still runs"
    finally:
        sleeper.kill()
        sleeper.wait()
    claim = Ledger(tmp_path).claim("h", "a.yaml", "a.log")
    assert claim is not None and claim.previous is not None and claim.previous.watcher == gone()
    dead.finish("h", "stale")  # the gone watcher's late word changes nothing: the claim is not its own
    mine = Ledger(tmp_path)
    assert mine.entries()["h"].state == "running"
    mine.fail("h", "x" * 10_000, None)
    entry = mine.entries()["h"]
    assert entry.state == "failed" and len(entry.error or "") == 5000
    assert mine.claim("h", "a.yaml", "a.log") is None, "a failed content is not run again"
    mine.release("h")
    assert mine.entries()["h"].state == "failed", "only a running claim is released"


def test_reading_a_folder_without_a_ledger_makes_none(tmp_path: Path) -> None:
    assert Ledger(tmp_path).entries() == {}
    assert not (tmp_path / ".trainyard-watch").exists()


def test_the_configs_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text("b")
    (tmp_path / "a.yaml").write_text("a")
    os.utime(tmp_path / "a.yaml", (1, 1))  # older: first
    for other in (".a.yaml.swp", ".hidden.yaml", "a.yaml~", "notes.txt"):
        (tmp_path / other).write_text("x")
    (tmp_path / "sub.yaml").mkdir()
    (tmp_path / "sub.yaml" / "c.yaml").write_text("c")
    configs, unreadable = scan(tmp_path)
    assert [config.name for config in configs] == ["a.yaml", "b.yml"] and unreadable == {}
    assert configs[0].content_hash == "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
    assert not is_config_name("#a.yaml#") and is_config_name("a.yml")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("1d", 86400)]
)
def test_durations(text: str, seconds: int) -> None:
    schedule = parse_every(text)
    assert schedule == Interval(seconds)
    assert (schedule.next_after(datetime(2026, 1, 1)) - datetime(2026, 1, 1)).total_seconds() == seconds


def test_cron_expressions_name_the_next_time() -> None:
    schedule = parse_every("*/15 * * * *")
    assert schedule == Cron("*/15 * * * *")
    assert schedule.next_after(datetime(2026, 1, 1, 10, 7, 30)) == datetime(2026, 1, 1, 10, 15)
    assert parse_every("0 9 * * 1").next_after(datetime(2026, 1, 1)) == datetime(2026, 1, 5, 9, 0)


def test_the_jobs_environment_refuses_import_paths_and_keeps_other_run_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRAINYARD_ALLOW_IMPORT_PATHS", "1")
    monkeypatch.setenv("MLFLOW_RUN_CONTEXT", '{"team": "forecasting"}')
    environment = job_environment({"trainyard.watch.launch": "abc"})
    assert environment["TRAINYARD_ALLOW_IMPORT_PATHS"] == "0"
    assert environment["MLFLOW_RUN_CONTEXT"] == '{"team": "forecasting", "trainyard.watch.launch": "abc"}'


def test_what_a_failed_job_said(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text("INFO ok\nerror: invalid config (2 problems):\n  a.yaml: job.x: unknown key\n")
    assert _error(log, 2) == "invalid config (2 problems):\n  a.yaml: job.x: unknown key"
    log.write_text("Segmentation fault\n")
    assert _error(log, 139) == "exit code 139: Segmentation fault"
    assert _error(log, -9) == "the job's process was killed by SIGKILL"


def test_the_help_does_not_import_the_watcher() -> None:
    code = "import sys, trainyard.cli; trainyard.cli.build_parser(); print(sorted(sys.modules))"
    modules = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("watchfiles", "cronsim", "sqlite3", "trainyard.watch"):
        assert f"'{heavy}'" not in modules, heavy
