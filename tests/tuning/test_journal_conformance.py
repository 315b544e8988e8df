"""WorkerJournalStorage run through Optuna's own storage test suite, on its real journal file.

Optuna's ``StorageTestCase`` asks every storage for a ``storage`` fixture; this module provides ours
and inherits every test. Two of them assert that a trial created without a template has no user
attributes at all; ours has one on purpose (the worker token, journal.py). Those two run Optuna's
assertions unchanged on a storage that first checks the token is there and then hides it, so the
rest of what they check (ids, numbers, states, datetimes, attributes set later) still holds.
"""

from __future__ import annotations

import copy
from collections.abc import Container
from pathlib import Path
from typing import Any

import pytest
from optuna.storages import BaseStorage
from optuna.testing.pytest_storages import StorageTestCase
from optuna.trial import FrozenTrial, TrialState

from trainyard.records import WORKER_ATTR, worker_token
from trainyard.tuning.journal import WorkerJournalStorage


@pytest.fixture
def storage(tmp_path: Path) -> BaseStorage:
    """A WorkerJournalStorage on a fresh journal file (TrialSyncedJournal, Optuna's lock)."""
    return WorkerJournalStorage(str(tmp_path / "journal.log"))


class _WorkerAttrChecked(WorkerJournalStorage):
    """Reads assert that every trial names this worker, and return it without that attribute.

    Only for tests whose trials are all created without a template (a template's attributes are
    kept as they are, and Optuna's template tests run on the plain storage).
    """

    def _checked(self, trial: FrozenTrial) -> FrozenTrial:
        assert trial.user_attrs.get(WORKER_ATTR) == worker_token(), "a new trial names its worker"
        trial = copy.deepcopy(trial)  # never touch the storage's own cached trial
        del trial.user_attrs[WORKER_ATTR]
        return trial

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._checked(super().get_trial(trial_id))

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return [self._checked(t) for t in super().get_all_trials(study_id, deepcopy, states)]

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        return self.get_trial(trial_id).user_attrs


class TestWorkerJournalStorage(StorageTestCase):
    """Optuna's storage contract, as every Optuna storage must keep it."""

    def test_create_new_trial(self, storage: BaseStorage, tmp_path: Path) -> None:
        """Optuna's test, but a new trial also carries its worker's token (checked, then hidden)."""
        super().test_create_new_trial(_WorkerAttrChecked(str(tmp_path / "checked.log")))

    def test_set_trial_user_attr(self, storage: BaseStorage, tmp_path: Path) -> None:
        """Optuna's test, but a new trial also carries its worker's token (checked, then hidden)."""
        super().test_set_trial_user_attr(_WorkerAttrChecked(str(tmp_path / "checked.log")))


def test_the_checked_storage_does_check(tmp_path: Path) -> None:
    """The two redefined tests would fail if a trial did not name its worker."""
    from optuna.study import StudyDirection

    checked = _WorkerAttrChecked(str(tmp_path / "journal.log"))
    study_id = checked.create_new_study(directions=[StudyDirection.MINIMIZE])
    trial_id = checked.create_new_trial(study_id)
    assert checked.get_trial(trial_id).user_attrs == {}
    unnamed = FrozenTrial(
        number=-1,
        trial_id=-1,
        state=TrialState.RUNNING,
        value=None,
        datetime_start=None,
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
    )
    other = checked.create_new_trial(study_id, template_trial=unnamed)
    with pytest.raises(AssertionError, match="names its worker"):
        checked.get_trial(other)
