"""Where a search's trials run: one small interface, and the implementation the tuning job uses today.

A ``TrialExecutor`` is given the study, the objective and the budget, and runs trials until one of
them ends the search. Its lifecycle, for whoever writes another one (a process pool, a cluster
engine's tasks, a job service's workers):

1. Made from the job's config before the search (``Searcher.executor()``); nothing runs yet.
2. ``at_once`` is read once: how many trials run at the same time in this process. Each trial's native
   thread pools are sized from it (``runtime/threads.py``) and the MLflow writer draws ahead only when
   a core is left idle.
3. ``search()`` is called once, from the job's thread. It runs trials through the study (so the
   sampler sees every finished one, and the storage records them), calls every callback after each
   trial ends, in the thread that ran it, and returns when the budget is met, the timeout passed or a
   callback called ``study.stop()`` (how a cancellation reaches it), after every trial it started has
   ended. An objective's exception fails that trial only; KeyboardInterrupt and its subclasses stop
   the search.
4. ``trials_in_other_threads`` says whether trials run outside the caller's thread: a signal handler
   then cannot interrupt them, and the search's stop-on-signal waits for them instead.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

Objective = Callable[["optuna.Trial"], "float | Sequence[float]"]
Callback = Callable[["optuna.Study", "FrozenTrial"], None]


class TrialExecutor(abc.ABC):
    """Runs a search's trials (see the module's lifecycle)."""

    @property
    @abc.abstractmethod
    def at_once(self) -> int:
        """Trials that run at the same time in this process."""

    @property
    @abc.abstractmethod
    def trials_in_other_threads(self) -> bool:
        """Whether trials run outside the thread that calls ``search``."""

    @abc.abstractmethod
    def search(
        self,
        study: optuna.Study,
        objective: Objective,
        *,
        n_trials: int | None,
        timeout: float | None,
        callbacks: Sequence[Callback],
    ) -> None:
        """Run trials until the budget, the timeout or ``study.stop()`` ends the search."""


class ThreadTrials(TrialExecutor):
    """Trials in this process: in the caller's thread (``threads`` 1), or in a pool of ``threads``."""

    def __init__(self, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.threads = threads

    def __repr__(self) -> str:
        return f"ThreadTrials({self.threads})"

    @property
    def at_once(self) -> int:
        return self.threads

    @property
    def trials_in_other_threads(self) -> bool:
        return self.threads != 1

    def search(
        self,
        study: optuna.Study,
        objective: Objective,
        *,
        n_trials: int | None,
        timeout: float | None,
        callbacks: Sequence[Callback],
    ) -> None:
        study.optimize(
            objective,
            n_trials=n_trials,
            timeout=timeout,
            n_jobs=self.threads,
            catch=(Exception,),
            callbacks=list(callbacks),
        )
