"""Live progress of a study on the console: trials done, best so far, time left."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from trainyard.io.console import console
from trainyard.io.logging import get_logger
from trainyard.records import ERROR_ATTR
from trainyard.tuning.studies import finished_trials

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from trainyard.core.metrics import Metric


class TrialProgress:
    """A rich progress bar on a terminal; one log line per trial elsewhere (CI, files, services)."""

    def __init__(
        self,
        study: optuna.Study,
        budget: int | None,
        objective: Metric,
        metrics: list[Metric],
        step: str = "fold",
    ) -> None:
        self.study = study
        self.step = step  # what a trial reports its intermediate values after: a fold, an epoch
        self.budget = budget
        self.objective = objective
        self.index = [m.name for m in metrics].index(objective.name)
        self.best: float | None = None
        self._progress: Any = None
        self._lock = threading.Lock()
        self._task: Any = None

    def __enter__(self) -> TrialProgress:
        from optuna.trial import TrialState

        done = len(finished_trials(self.study))
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            self._update_best(trial.values[self.index])
        if console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                TimeRemainingColumn(), console=console, transient=True,
            )  # fmt: skip
            self._progress.start()
            self._task = self._progress.add_task(self._describe(), total=self.budget, completed=done)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def on_trial_end(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback: advance the bar or log a line."""
        if trial.state.name == "COMPLETE" and trial.values:
            self._update_best(trial.values[self.index])
        if self._progress is not None:
            self._progress.update(self._task, advance=1, description=self._describe())
            if trial.state.name == "FAIL":  # printed above the bar: a failure must never go unseen
                get_logger().warning(
                    "trial %d failed: %s", trial.number, trial.user_attrs.get(ERROR_ATTR, "?")
                )
        else:
            value = f" {self.objective.name}={trial.values[self.index]:.4g}" if trial.values else ""
            if trial.state.name == "PRUNED":  # its value is a partial mean, not comparable to the best
                value = f" after {len(trial.intermediate_values)} {self.step}(s)"
            if ERROR_ATTR in trial.user_attrs:
                value = f": {trial.user_attrs['error']}"
            get_logger().info(
                "trial %d %s%s (%s)", trial.number, trial.state.name.lower(), value, self._describe()
            )

    def _update_best(self, value: float) -> None:
        better = max if self.objective.direction == "maximize" else min
        with self._lock:  # callbacks of n_jobs threads
            self.best = value if self.best is None else better(self.best, value)

    def _describe(self) -> str:
        return f"best {self.objective.name}={self.best:.4g}" if self.best is not None else "no result yet"
