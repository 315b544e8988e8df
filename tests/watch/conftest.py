"""The watch tests' folder of configs, quick training jobs made from the quickstart, and a live watcher."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from tests.conftest import CONFS
from trainyard.records import WATCH_CONTENT_HASH_TAG
from trainyard.watch.folder import content_hash

EXPERIMENT = "quickstart"


def quick_config(max_iter: int, experiment: str = EXPERIMENT) -> str:
    """The quickstart with ``max_iter`` (a fit of a few hundredths of a second), nothing registered."""
    text = (CONFS / "quickstart.yaml").read_text()
    text = text.replace("max_iter: 200", f"max_iter: {max_iter}")
    text = text.replace(f"experiment: {EXPERIMENT}", f"experiment: {experiment}")
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("  register:"))


def drop(folder: Path, name: str, text: str) -> Path:
    """Put a config in ``folder`` as a finished file (written aside, then renamed into place)."""
    aside = folder.parent / f".{name}.part"
    aside.write_text(text)
    os.replace(aside, folder / name)
    return folder / name


def runs(tracking_uri: str, experiment: str = EXPERIMENT) -> list[mlflow.entities.Run]:
    """The runs of ``experiment`` (none when it does not exist)."""
    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def runs_by_hash(tracking_uri: str) -> dict[str, list[str]]:
    """The run ids of each content hash the watcher tagged."""
    found: dict[str, list[str]] = {}
    for run in runs(tracking_uri):
        found.setdefault(run.data.tags.get(WATCH_CONTENT_HASH_TAG, ""), []).append(run.info.run_id)
    return found


def hash_of(path: Path) -> str:
    return content_hash(path.read_bytes())


@pytest.fixture
def incoming(workdir: Path) -> Path:
    """The watched folder, in the working folder (whose data/ and mlflow.db the jobs use)."""
    folder = workdir / "incoming"
    folder.mkdir()
    return folder


class LiveWatcher:
    """``trainyard watch`` in a process of its own (as in a terminal: Ctrl-C raises), its console read
    line by line."""

    def __init__(self, workdir: Path, *arguments: str) -> None:
        command = [sys.executable, "-m", "trainyard.cli", "watch", *arguments]
        self.process = subprocess.Popen(
            command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 120, count: int = 1) -> None:
        """Until ``text`` is in ``count`` lines of the console; an error with the console otherwise."""
        deadline = time.monotonic() + timeout
        while sum(text in line for line in self.lines) < count:
            if time.monotonic() > deadline or self.process.poll() is not None:
                time.sleep(0.2)  # the last lines
                raise AssertionError(f"no {text!r} (x{count}) in the watcher's console:\n{self.output}")
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def ended(self, timeout: float = 120) -> int:
        returncode = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return returncode

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def live(workdir: Path) -> Iterator[type[LiveWatcher]]:
    """Start live watchers with ``live(workdir, "incoming", ...)``; each one is stopped at the end."""
    started: list[LiveWatcher] = []

    class Started(LiveWatcher):
        def __init__(self, folder: Path, *arguments: str) -> None:
            super().__init__(folder, *arguments)
            started.append(self)

    yield Started
    for watcher in started:
        watcher.stop()
