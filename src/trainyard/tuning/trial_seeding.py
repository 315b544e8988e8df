"""A sampler wrapper that seeds every trial from (base seed, trial number)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from trainyard.tuning.spaces import on_step


def trial_seed(base: int | None, number: int) -> int | None:
    """The seed of trial ``number``: distinct per trial, fixed for a given base seed."""
    return None if base is None else (base * 1_000_003 + number) % 2**32


class TrialSeededSampler(BaseSampler):
    """Delegates each trial to a fresh inner sampler seeded with ``trial_seed(seed, trial.number)``.

    Optuna's samplers keep their history in the study storage, not in the sampler, so a fresh one
    per trial proposes from the same knowledge; only the random stream differs, and it differs
    between any two trials of the study, whichever worker or rerun runs them.

    Values of stepped float ranges are put exactly on their step (0.009, not Optuna's
    0.009000000000000001) before Optuna stores them.
    """

    def __init__(self, factory: Callable[[int | None], BaseSampler], seed: int | None) -> None:
        self._factory = factory
        self._seed = seed
        self._inner: dict[int, BaseSampler] = {}
        self._lock = threading.Lock()
        self._template = factory(seed)

    def _for(self, trial: FrozenTrial) -> BaseSampler:
        with self._lock:
            if trial.number not in self._inner:
                self._inner[trial.number] = self._factory(trial_seed(self._seed, trial.number))
            return self._inner[trial.number]

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        values = self._for(trial).sample_relative(study, trial, search_space)
        return {name: _on_step(search_space.get(name), value) for name, value in values.items()}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        value = self._for(trial).sample_independent(study, trial, param_name, param_distribution)
        return _on_step(param_distribution, value)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        with self._lock:
            inner = self._inner.pop(trial.number, None)
        (inner or self._template).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Seeds come from trial numbers: nothing to reseed (Optuna calls this for threads)."""


def _on_step(distribution: BaseDistribution | None, value: Any) -> Any:
    """A stepped float value exactly on its step; any other value as it is."""
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        return on_step(value, distribution.low, distribution.high, distribution.step)
    return value
