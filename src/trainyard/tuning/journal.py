"""Optuna's journal file, synced to disk when a trial finishes rather than at every write.

Optuna's file backend calls fsync after each of the ~7 writes of a trial (its creation, each
parameter, each attribute, its end): 3.7 ms a trial here, against 1.1 ms without the syncs. A killed
process loses nothing either way (the writes are in the OS's cache); a power cut can lose what was
not synced. Syncing when a trial's state changes, or the study's, keeps every finished trial (and,
the file being append-only, everything written before it) on disk: 1 sync a trial instead of 7.
The file is Optuna's own format and lock, so Optuna's tools and backend read and share it.

Each trial is also created with its worker's token in the same record: a worker killed between
creating a trial and naming itself would otherwise leave a RUNNING trial that nobody can fail.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import FrozenTrial, TrialState

from trainyard.records import WORKER_ATTR, worker_token

# Writes a crash may lose without losing a finished trial: they only describe a running one.
_UNSYNCED = {
    JournalOperation.CREATE_TRIAL,
    JournalOperation.SET_TRIAL_PARAM,
    JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE,
    JournalOperation.SET_TRIAL_USER_ATTR,
    JournalOperation.SET_TRIAL_SYSTEM_ATTR,
}


class TrialSyncedJournal(JournalFileBackend):
    """A journal file backend that calls fsync only for writes that end a trial or change the study."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._file_lock = JournalFileSymlinkLock(path)  # the lock Optuna's own backend takes by default
        super().__init__(path, lock_obj=self._file_lock)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Append the records under the file lock; sync them when one of them must survive a power cut."""
        text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        self._file_lock.acquire()
        try:
            with open(self._path, "ab") as file:
                file.write(text.encode("utf-8"))
                file.flush()
                if any(log.get("op_code") not in _UNSYNCED for log in logs):
                    os.fsync(file.fileno())
        finally:
            self._file_lock.release()


class WorkerJournalStorage(JournalStorage):
    """Optuna's journal storage whose new trials carry this process's worker token from the start."""

    def __init__(self, path: str) -> None:
        super().__init__(TrialSyncedJournal(path))
        self._token = worker_token()

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        """A new RUNNING trial, named after its worker in the record that creates it."""
        if template_trial is None:
            template_trial = FrozenTrial(
                number=-1,  # both ids are assigned by the storage
                trial_id=-1,
                state=TrialState.RUNNING,
                value=None,
                datetime_start=datetime.now(tz=UTC),
                datetime_complete=None,
                params={},
                distributions={},
                user_attrs={WORKER_ATTR: self._token},
                system_attrs={},
                intermediate_values={},
            )
        return super().create_new_trial(study_id, template_trial)
