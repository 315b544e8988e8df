"""Cancellation: one request to stop, made from another thread (as a service would), never by a signal."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.jobs.test_training import QUICKSTART, only_run
from tests.jobs.test_tuning import runs_of, study_of, tuning
from trainyard.config import load_settings
from trainyard.core.models import SklearnModel
from trainyard.errors import JobCancelledError
from trainyard.records import ERROR_TAG
from trainyard.runtime.cancellation import Cancellation


def test_the_first_reason_is_kept_and_raised_afresh() -> None:
    token = Cancellation()
    token.check()  # nothing asked: no raise
    assert not token.requested and token.reason is None and not token.wait(0)
    token.cancel(JobCancelledError("cancelled by the service"))
    token.cancel(KeyboardInterrupt("later"))
    assert token.requested and token.wait(0)
    with pytest.raises(JobCancelledError, match="cancelled by the service") as raised:
        token.check()
    assert raised.value is not token.reason  # a fresh copy each time: no traceback piles up on one object


def test_a_training_job_cancelled_from_another_thread_stops_before_its_next_step(
    workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load_settings([QUICKSTART]).job
    fitted = threading.Event()
    fit = SklearnModel.fit

    def fit_then_cancel(self: SklearnModel, *args: object, **kwargs: object) -> SklearnModel:
        result = fit(self, *args, **kwargs)
        canceller = threading.Thread(target=job.cancellation.cancel, args=(JobCancelledError("cancelled"),))
        canceller.start()  # another thread, as a service's cancel request arrives
        canceller.join()
        fitted.set()
        return result

    monkeypatch.setattr(SklearnModel, "fit", fit_then_cancel)
    with pytest.raises(JobCancelledError, match="cancelled"), job:
        job.run()
    assert fitted.is_set()
    run = only_run(tracking_uri)
    assert run.info.status == "KILLED" and "cancelled" in run.data.tags[ERROR_TAG]
    assert (
        "test_rmse" not in run.data.metrics and "rmse" not in run.data.metrics
    )  # the fit's step was the last


def test_a_tuning_job_cancelled_from_another_thread_records_its_running_trial_then_stops(
    workdir: Path, tracking_uri: str
) -> None:
    job = load_settings(
        [tuning(workdir, "{KIND: random, seed: 0, n_trials: 50, space: {max_depth: 'range(1, 9)'}}")]
    ).job

    def watch() -> None:
        while not job.cancellation.wait(0.05):
            try:
                done = len(study_of(workdir).trials)
            except Exception:  # the study is not made yet
                continue
            if done >= 3:
                job.cancellation.cancel(JobCancelledError("cancelled by the test"))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(JobCancelledError, match="cancelled by the test"), job:
            job.run()
    finally:
        job.cancellation.cancel(JobCancelledError("the test ended"))
        watcher.join()
    parent, children = runs_of(tracking_uri)
    trials = study_of(workdir).trials
    assert parent.info.status == "KILLED" and "cancelled by the test" in parent.data.tags[ERROR_TAG]
    assert 3 <= len(trials) < 50
    assert all(t.state.is_finished() for t in trials)  # none left RUNNING
    assert len(children) == len(trials)  # every finished trial reached MLflow
