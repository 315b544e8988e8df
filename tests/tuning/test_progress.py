"""The tuning job's live progress: a bar on a terminal (trials done, best so far, time left), lines elsewhere."""

from __future__ import annotations

import io

import optuna
import pytest
from rich.console import Console

from trainyard.core.metrics import Metric
from trainyard.tuning import progress as progress_module
from trainyard.tuning.progress import TrialProgress


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 10.0)
    if trial.number == 5:
        raise ValueError("a parameter combination the model refuses")
    return (x - 3.0) ** 2


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What a terminal would show: the bar's last frame stays on screen (not transient) to be read."""
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    monkeypatch.setattr(progress_module, "console", console)
    return screen


def test_the_bar_counts_trials_shows_the_best_and_reports_failures(
    terminal: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(_objective, n_trials=3)  # an earlier run of the study: counted from the start
    rmse = Metric.model_validate({"KIND": "rmse"})
    with TrialProgress(study, 12, rmse, [rmse]) as progress:
        study.optimize(_objective, n_trials=9, callbacks=[progress.on_trial_end], catch=(ValueError,))
        best = progress.best
    shown = terminal.getvalue()
    assert "trials" in shown and "12/12" in shown and f"best rmse={best:.4g}" in shown
    assert best == study.best_value
    assert "trial 5 failed: " in caplog.text, "a failure is printed above the bar"


def test_without_a_terminal_each_trial_is_one_line(caplog: pytest.LogCaptureFixture) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    r2 = Metric.model_validate({"KIND": "r2"})
    caplog.set_level("INFO")
    with TrialProgress(study, 6, r2, [r2]) as progress:
        study.optimize(
            lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=6, callbacks=[progress.on_trial_end]
        )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("trial ")]
    assert len(lines) == 6 and lines[0].startswith("trial 0 complete r2=")
    assert lines[-1].endswith(f"(best r2={study.best_value:.4g})"), "r2 is maximized"
