"""Every trial executor keeps the lifecycle its base class documents (add a new one to EXECUTORS)."""

from __future__ import annotations

import threading
import time

import optuna
import pytest

from trainyard.tuning.executors import ThreadTrials, TrialExecutor

EXECUTORS = [ThreadTrials(1), ThreadTrials(2)]


def _study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))


def _square(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", -1, 1) ** 2


@pytest.mark.parametrize("executor", EXECUTORS, ids=repr)
def test_it_runs_the_budget_and_calls_back_in_the_thread_that_ran_each_trial(executor: TrialExecutor) -> None:
    study = _study()
    ran_in: dict[int, int] = {}
    called_in: dict[int, int] = {}

    def objective(trial: optuna.Trial) -> float:
        ran_in[trial.number] = threading.get_ident()
        return _square(trial)

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        called_in[trial.number] = threading.get_ident()

    executor.search(study, objective, n_trials=6, timeout=None, callbacks=[callback])
    assert len(study.trials) == 6 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert called_in == ran_in
    outside = any(ident != threading.get_ident() for ident in ran_in.values())
    assert outside == executor.trials_in_other_threads


@pytest.mark.parametrize("executor", EXECUTORS, ids=repr)
def test_an_objective_error_fails_its_trial_only(executor: TrialExecutor) -> None:
    study = _study()

    def sometimes(trial: optuna.Trial) -> float:
        if trial.number % 2:
            raise ValueError("odd trial")
        return _square(trial)

    executor.search(study, sometimes, n_trials=4, timeout=None, callbacks=[])
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]


@pytest.mark.parametrize("executor", EXECUTORS, ids=repr)
def test_a_callback_stops_the_search_after_the_running_trials(executor: TrialExecutor) -> None:
    study = _study()

    def stop_after_two(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if len([t for t in study.trials if t.state.is_finished()]) >= 2:
            study.stop()

    executor.search(study, _square, n_trials=100, timeout=None, callbacks=[stop_after_two])
    assert 2 <= len(study.trials) <= 2 + executor.at_once
    assert all(t.state.is_finished() for t in study.trials), "no trial left running"


@pytest.mark.parametrize("executor", EXECUTORS, ids=repr)
def test_at_once_trials_overlap(executor: TrialExecutor) -> None:
    study = _study()
    running, most = 0, 0
    lock = threading.Lock()

    def slow(trial: optuna.Trial) -> float:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.2)
        with lock:
            running -= 1
        return _square(trial)

    executor.search(study, slow, n_trials=2 * executor.at_once, timeout=None, callbacks=[])
    assert most == executor.at_once


@pytest.mark.parametrize("executor", EXECUTORS, ids=repr)
def test_the_timeout_stops_starting_trials(executor: TrialExecutor) -> None:
    study = _study()

    def slow(trial: optuna.Trial) -> float:
        time.sleep(0.1)
        return _square(trial)

    started = time.monotonic()
    executor.search(study, slow, n_trials=None, timeout=0.5, callbacks=[])
    assert time.monotonic() - started < 5 and 1 <= len(study.trials) < 40


def test_a_pool_needs_a_thread() -> None:
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        ThreadTrials(0)
