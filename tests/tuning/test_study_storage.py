"""The study's storage (job.study.storage): durable, never someone else's file, safe to create together."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest

from tests.jobs.test_tuning import tuning
from trainyard.cli import main
from trainyard.config import load_settings
from trainyard.errors import ConfigurationError
from trainyard.tuning import studies
from trainyard.tuning.studies import StudyStorage

optuna.logging.set_verbosity(optuna.logging.ERROR)

SMALL_SEARCH = """
    KIND: optuna
    sampler: {KIND: tpe, seed: 55, n_startup_trials: 2}
    n_trials: 4
    space:
      max_depth: range(2, 10)"""


def small_study(workdir: Path) -> str:
    """A 4-trial study of test_tuning's config: one space, small enough for racing workers."""
    return tuning(workdir, SMALL_SEARCH)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tables_of(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# 1. A study must outlive its process -------------------------------------------------------------

IN_MEMORY = ["sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite:///file::memory:?cache=shared"]


@pytest.mark.parametrize("url", IN_MEMORY)
def test_an_in_memory_database_is_refused_when_the_config_is_validated(
    workdir: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", small_study(workdir), f"job.study.storage={url}"]) == 2  # as typed: unquoted
    err = capsys.readouterr().err
    assert f"job.study.storage = {url!r}: an in-memory SQLite database" in err, err
    assert "must be durable" in err and "sqlite:///studies.db" in err and "journal file" in err
    assert "Traceback" not in err and "heartbeat" not in err
    assert not (workdir / "mlruns").exists() and not (workdir / studies.JOURNAL_FILE).exists()


def test_a_sqlite_url_with_two_slashes_is_refused_with_the_three_slash_form(workdir: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"job\.study\.storage = 'sqlite://studies\.db': .*three"):
        load_settings([small_study(workdir)], ["job.study.storage=sqlite://studies.db"])


@pytest.mark.parametrize(
    "storage",
    ["sqlite:///studies.db", "sqlite:////abs/studies.db", "postgresql://u@127.0.0.1/db", "studies/s.log"],
)
def test_durable_storages_are_valid(workdir: Path, storage: str) -> None:
    job = load_settings([small_study(workdir)], [f"job.study.storage={storage}"]).job
    assert job.study.storage == storage  # type: ignore[union-attr]


# 2. A file that is not an Optuna journal is refused and left untouched ---------------------------


@pytest.mark.parametrize(
    ("content", "looks_like"),
    [
        (b"x y z\n", "a file starting 'x y z'"),
        (b'{"name": "not a journal"}\n', "JSON without Optuna's op_code records"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "a file starting"),
    ],
)
def test_a_file_that_is_not_a_journal_is_refused_and_left_untouched(
    workdir: Path, content: bytes, looks_like: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "p.txt").write_bytes(content)
    assert main(["run", small_study(workdir), "job.study.storage=p.txt"]) == 2
    err = capsys.readouterr().err
    assert "job.study.storage: 'p.txt' is not an Optuna journal file" in err and looks_like in err, err
    assert "Traceback" not in err and "unexpected" not in err
    assert (workdir / "p.txt").read_bytes() == content, "Optuna appended nothing to the user's file"


def test_an_sqlite_database_given_as_a_path_is_refused_with_its_url(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    optuna.create_study(study_name="s", storage=f"sqlite:///{workdir / 'studies.db'}")
    before = digest(workdir / "studies.db")
    assert main(["run", small_study(workdir), "job.study.storage=studies.db"]) == 2
    err = capsys.readouterr().err
    assert "job.study.storage: 'studies.db' is an SQLite database, not an Optuna journal file" in err, err
    assert "use sqlite:///studies.db" in err and "UnicodeDecodeError" not in err
    assert digest(workdir / "studies.db") == before


@pytest.mark.parametrize("storage", ["mlflow.db", "sqlite:///mlflow.db"])
def test_the_mlflow_store_is_not_a_study_storage(
    workdir: Path, storage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """MLflow and Optuna both keep an alembic_version table: Optuna would add its tables, then fail."""
    tables = tables_of(workdir / "mlflow.db")
    assert main(["run", small_study(workdir), f"job.study.storage={storage}"]) == 2
    err = capsys.readouterr().err
    assert f"job.study.storage: {storage!r}" in err and "it is an MLflow store" in err, err
    assert "sqlite:///studies.db" in err and "Traceback" not in err
    assert tables_of(workdir / "mlflow.db") == tables, "no Optuna table in the MLflow store"


def test_an_empty_file_and_a_journal_are_opened(tmp_path: Path) -> None:
    journal = tmp_path / "empty.log"
    journal.touch()
    study = optuna.create_study(study_name="s", storage=StudyStorage(storage=str(journal)).open("unused"))
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    again = StudyStorage(storage=str(journal)).open("unused")
    assert len(optuna.load_study(study_name="s", storage=again).trials) == 2


def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"job\.study\.storage: '.*' is a folder; give a journal"):
        StudyStorage(storage=str(tmp_path)).open("unused")


# 3. Workers that create a new database together ---------------------------------------------------


def open_together(url: str, workers: int) -> None:
    """Open a new study storage from several threads at the same instant, and create one study in it."""
    barrier = threading.Barrier(workers)

    def open_and_create() -> None:
        barrier.wait()
        storage = StudyStorage(storage=url).open("unused")
        optuna.create_study(study_name="s", storage=storage, load_if_exists=True)

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(open_and_create) for _ in range(workers)]:
            future.result()


@pytest.mark.parametrize("file_locks", [True, False], ids=["file lock", "retries only"])
def test_threads_create_a_new_sqlite_storage_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_locks: bool
) -> None:
    if not file_locks:  # as on a system without fcntl, or on a database server
        monkeypatch.setattr(studies, "_file_lock", lambda path: contextlib.nullcontext())
    for round_ in range(4):
        database = tmp_path / f"new-{round_}.db"
        open_together(f"sqlite:///{database}", workers=4)
        assert optuna.get_all_study_names(f"sqlite:///{database}") == ["s"]


BARRIER = """
import os, sys, time
def wait_for_all(folder: str, count: int) -> None:
    open(os.path.join(folder, f"ready-{os.getpid()}"), "w").close()
    while len([name for name in os.listdir(folder) if name.startswith("ready-")]) < count:
        time.sleep(0.005)
"""
OPEN_TOGETHER = (
    BARRIER
    + """
import optuna
from trainyard.tuning.studies import StudyStorage
failed = False
for round_, url in enumerate(sys.argv[3:]):
    wait_for_all(os.path.join(sys.argv[1], str(round_)), int(sys.argv[2]))
    try:  # a failure ends no round early: the other processes wait for this one at the next
        storage = StudyStorage(storage=url).open("unused")
        optuna.create_study(study_name="s", storage=storage, load_if_exists=True)
    except Exception as error:
        print(f"round {round_}: {error}")
        failed = True
sys.exit(1 if failed else 0)
"""
)
RUN_TOGETHER = (
    BARRIER
    + """
import optuna, sqlalchemy, trainyard.jobs.tuning
from trainyard.cli import main
wait_for_all(os.path.join(sys.argv[1], "0"), int(sys.argv[2]))
sys.exit(main(sys.argv[3:]))
"""
)


def together(
    script: str, count: int, folder: Path, *args: str, rounds: int = 1
) -> list[subprocess.Popen[str]]:
    """``count`` processes that run ``script``; each round starts in all of them at one instant."""
    barrier = folder / "barrier"
    for round_ in range(rounds):
        (barrier / str(round_)).mkdir(parents=True)
    command = [sys.executable, "-c", script, str(barrier), str(count), *args]
    return [
        subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(count)
    ]


def test_processes_create_a_new_sqlite_storage_together(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / 'studies' / f'new-{round_}.db'}" for round_ in range(3)]
    processes = together(OPEN_TOGETHER, 3, tmp_path, *urls, rounds=len(urls))
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    assert all(optuna.get_all_study_names(url) == ["s"] for url in urls)


def test_two_jobs_start_a_new_database_study_together(workdir: Path) -> None:
    """The CLI in two processes released at one instant, as a shell's `&` starts them."""
    import mlflow

    url = f"sqlite:///{workdir / 'studies' / 'new.db'}"
    overrides = ["job.study.name=sq", f"job.study.storage={url}"]
    processes = together(RUN_TOGETHER, 2, workdir, "run", small_study(workdir), *overrides)
    outputs = [p.communicate(timeout=180)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    finished = [t for t in optuna.load_study(study_name="sq", storage=url).trials if t.state.is_finished()]
    assert 4 <= len(finished) <= 5, "two workers may overshoot the budget by the trial one was running"
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tune").experiment_id])
    assert len([r for r in runs if "mlflow.parentRunId" in r.data.tags]) == len(finished)


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("studies/s.log", "studies/s.log"),
        ("sqlite:///studies.db", "studies.db"),
        ("sqlite:///studies.db?timeout=5", "studies.db"),  # the query is not part of the file name
        ("sqlite+pysqlite:////abs/s.db", "/abs/s.db"),
        ("postgresql://u@127.0.0.1/db", None),
    ],
)
def test_the_local_file_of_a_storage_location(location: str, expected: str | None) -> None:
    found = studies.local_file(location)
    assert (str(found) if found is not None else None) == expected
