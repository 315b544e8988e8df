"""The study's journal file: synced when a trial ends, in Optuna's own format and lock."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from trainyard.tuning.journal import _UNSYNCED, TrialSyncedJournal

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _objective(trial: optuna.Trial) -> float:
    trial.set_user_attr("worker", "w")
    value = trial.suggest_int("a", 1, 10) + trial.suggest_float("b", 0.0, 1.0)
    trial.set_user_attr("folds", {"scores": [1.0, 2.0]})
    return value


def test_one_sync_per_finished_trial_and_none_for_running_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.fstat(fd).st_size) or real_fsync(fd))
    path = tmp_path / "journal.log"
    study = optuna.create_study(storage=JournalStorage(TrialSyncedJournal(str(path))))
    study.optimize(_objective, n_trials=10)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    must_sync = [r for r in records if r["op_code"] not in _UNSYNCED]
    assert len(synced) == len(must_sync) <= 10 + 3, "one sync per trial end, plus the study's creation"
    assert len(records) > 5 * 10, "the writes of running trials are not synced"
    assert synced[-1] == path.stat().st_size, "the last finished trial is on disk with all before it"


def test_optuna_reads_and_shares_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.log")
    ours = optuna.create_study(study_name="s", storage=JournalStorage(TrialSyncedJournal(path)))
    ours.optimize(_objective, n_trials=3)
    theirs = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(path)))
    theirs.optimize(_objective, n_trials=2)
    again = optuna.load_study(study_name="s", storage=JournalStorage(TrialSyncedJournal(path)))
    assert [t.params for t in again.trials] == [t.params for t in theirs.trials]
    assert len(again.trials) == 5 and all(t.state.is_finished() for t in again.trials)
    assert again.trials[0].user_attrs["folds"] == {"scores": [1.0, 2.0]}


def test_trials_are_created_with_their_worker(tmp_path: Path) -> None:
    from trainyard.records import WORKER_ATTR, worker_token
    from trainyard.tuning.journal import WorkerJournalStorage

    path = tmp_path / "journal.log"
    study = optuna.create_study(storage=WorkerJournalStorage(str(path)))
    trial = study.ask()  # a worker killed right now leaves a RUNNING trial that names it
    first = json.loads(path.read_text().splitlines()[-1])
    assert first["op_code"] == 4 and first["user_attrs"] == {WORKER_ATTR: worker_token()}
    study.tell(trial, 1.0)
    reread = optuna.load_study(
        study_name=study.study_name, storage=JournalStorage(JournalFileBackend(str(path)))
    )
    assert reread.trials[0].user_attrs[WORKER_ATTR] == worker_token()
    assert reread.trials[0].datetime_start is not None and reread.trials[0].state.is_finished()


def test_a_worker_killed_right_after_creating_a_trial_is_found_dead(tmp_path: Path) -> None:
    import subprocess
    import sys

    from trainyard.tuning.journal import WorkerJournalStorage
    from trainyard.tuning.studies import fail_trials_of_dead_workers

    path = str(tmp_path / "journal.log")
    optuna.create_study(study_name="s", storage=WorkerJournalStorage(path))
    asks_and_dies = (
        "import os, optuna; from trainyard.tuning.journal import WorkerJournalStorage; "
        f"optuna.load_study(study_name='s', storage=WorkerJournalStorage({path!r})).ask(); os._exit(9)"
    )
    assert subprocess.run([sys.executable, "-c", asks_and_dies]).returncode == 9
    storage = WorkerJournalStorage(path)
    study = optuna.load_study(study_name="s", storage=storage)
    assert fail_trials_of_dead_workers(storage, study) == [0]
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
