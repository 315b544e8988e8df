"""Searchers: how a tuning job proposes parameters (grid, random, Optuna samplers) and prunes trials.

Every searcher drives an Optuna study, so grid and random searches are durable, resumable and
shareable exactly like model-based ones. Each trial's randomness is seeded by ``(seed, trial
number)``: trial numbers are unique across workers and reruns, so a shared seed never makes two
workers, or a rerun, propose the same parameters again, while one uninterrupted run stays
reproducible.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from trainyard.core.component import Component, default_kind
from trainyard.tuning.executors import ThreadTrials, TrialExecutor
from trainyard.tuning.spaces import Dimension, check_yaml_cuts, grid_size, parse_space

if TYPE_CHECKING:
    import optuna
    from optuna.samplers import BaseSampler


class Sampler(Component, abc.ABC):
    """An Optuna sampler, made once per trial from ``seed`` and the trial number."""

    KIND: str
    seed: int | None = Field(None, description="Base seed; unset draws a random one.")

    @abc.abstractmethod
    def build(self, seed: int | None) -> BaseSampler:
        """The Optuna sampler for one trial."""


class TpeSampler(Sampler):
    """Tree-structured Parzen estimator (Optuna's default); handles several objectives too."""

    KIND: Literal["tpe"] = "tpe"
    n_startup_trials: int = Field(10, ge=0, description="Random trials before the model takes over.")
    multivariate: bool | None = Field(
        None,
        description="Model parameters jointly (true) or one by one (false); default: Optuna's choice, "
        "jointly for one objective and one by one for several.",
    )

    def build(self, seed: int | None) -> BaseSampler:
        import optuna

        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=self.n_startup_trials, multivariate=self.multivariate
        )


class CmaEsSampler(Sampler):
    """CMA-ES for continuous and integer spaces (categorical parameters are sampled at random)."""

    KIND: Literal["cmaes"] = "cmaes"
    n_startup_trials: int = Field(1, ge=0, description="Random trials before CMA-ES starts.")

    def build(self, seed: int | None) -> BaseSampler:
        import optuna

        return optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=self.n_startup_trials, warn_independent_sampling=False
        )


class GpSampler(Sampler):
    """Gaussian-process Bayesian optimization (good for small budgets of expensive trials)."""

    KIND: Literal["gp"] = "gp"
    n_startup_trials: int = Field(10, ge=0, description="Random trials before the GP takes over.")

    @model_validator(mode="after")
    def _torch_installed(self) -> GpSampler:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise ValueError(
                "the gp sampler runs on PyTorch, which is not installed: pip install torch "
                "(the CPU build is enough), or choose tpe or cmaes"
            )
        return self

    def build(self, seed: int | None) -> BaseSampler:
        import optuna

        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.n_startup_trials)


class NsgaIISampler(Sampler):
    """NSGA-II, a genetic algorithm for several objectives (a Pareto front)."""

    KIND: Literal["nsga2"] = "nsga2"
    population_size: int = Field(50, ge=2, description="Individuals per generation.")

    def build(self, seed: int | None) -> BaseSampler:
        import optuna

        return optuna.samplers.NSGAIISampler(seed=seed, population_size=self.population_size)


SamplerKind = Annotated[TpeSampler | CmaEsSampler | GpSampler | NsgaIISampler, Field(discriminator="KIND")]


class Pruner(Component, abc.ABC):
    """Stops unpromising trials after a fold (single-objective studies only)."""

    KIND: str

    @abc.abstractmethod
    def build(self) -> optuna.pruners.BasePruner:
        """The Optuna pruner."""


class MedianPruner(Pruner):
    """Prune when a trial's running score is worse than the median of earlier trials at that fold."""

    KIND: Literal["median"] = "median"
    n_startup_trials: int = Field(5, ge=0, description="Trials that are never pruned.")
    n_warmup_steps: int = Field(0, ge=0, description="Folds to complete before pruning is considered.")

    def build(self) -> optuna.pruners.BasePruner:
        import optuna

        return optuna.pruners.MedianPruner(
            n_startup_trials=self.n_startup_trials, n_warmup_steps=self.n_warmup_steps
        )


class HyperbandPruner(Pruner):
    """Hyperband over folds: brackets of trials compete, the worse half stops early."""

    KIND: Literal["hyperband"] = "hyperband"
    reduction_factor: int = Field(3, ge=2, description="How aggressively each round is cut.")

    def build(self) -> optuna.pruners.BasePruner:
        import optuna

        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=self.reduction_factor)


PrunerKind = Annotated[MedianPruner | HyperbandPruner, Field(discriminator="KIND")]


class Searcher(Component, abc.ABC):
    """What to search (``space``), with what budget (trials and/or time) and how many at once."""

    KIND: str
    space: dict[str, Any] = Field(
        description="Parameter -> list of choices, {type: int|float|categorical, ...}, or a Hydra "
        "sweeper expression: choice(...), range(...), interval(...), tag(log, ...)."
    )
    n_trials: int | None = Field(None, ge=1, description="Total trials of the study (resumed runs top up).")
    timeout: float | None = Field(None, gt=0, description="Stop starting trials after this many seconds.")
    n_jobs: int = Field(1, ge=1, description="Trials run at once in this process (threads).")
    pruner: PrunerKind | None = Field(None, description="Stop bad trials after a fold (unset: never).")

    @field_validator("space", mode="before")
    @classmethod
    def _not_cut_by_yaml(cls, space: Any) -> Any:
        if isinstance(space, Mapping):  # before the keys are checked: a cut leaves numbers as keys
            check_yaml_cuts(space)
        return space

    @field_validator("space")
    @classmethod
    def _parse_space(cls, space: dict[str, Any]) -> dict[str, Any]:
        parse_space(space)  # raises ValueError naming the parameter
        return space

    @property
    def dimensions(self) -> dict[str, Dimension]:
        """The parsed search space."""
        return parse_space(self.space)

    def budget(self) -> int | None:
        """The number of trials to reach (None: until the timeout)."""
        return self.n_trials

    def executor(self) -> TrialExecutor:
        """Where the trials run: ``n_jobs`` threads of this process."""
        return ThreadTrials(self.n_jobs)

    @abc.abstractmethod
    def sampler(self) -> BaseSampler:
        """The study's sampler."""


class GridSearcher(Searcher):
    """Every combination of the space (which must be finite: choices, or ranges with a step)."""

    KIND: Literal["grid"] = "grid"
    seed: int | None = Field(
        None,
        description="Seed of the order the points are tried in (it matters when n_trials or timeout "
        "stops the search before the whole grid); unset: a random order.",
    )

    @field_validator("space")
    @classmethod
    def _finite(cls, space: dict[str, Any]) -> dict[str, Any]:
        for name, dimension in parse_space(space).items():
            try:
                dimension.grid_values()
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        return space

    def budget(self) -> int | None:
        size = grid_size(self.dimensions.values())
        return min(self.n_trials, size) if self.n_trials else size  # past the grid, points would repeat

    def sampler(self) -> BaseSampler:
        import optuna

        from trainyard.tuning.trial_seeding import TrialSeededSampler

        grid = {name: d.grid_values() for name, d in self.dimensions.items()}
        return TrialSeededSampler(lambda seed: optuna.samplers.GridSampler(grid, seed=seed), self.seed)


class RandomSearcher(Searcher):
    """Independent uniform draws from the space."""

    KIND: Literal["random"] = "random"
    seed: int | None = Field(None, description="Base seed; unset draws a random one.")

    def sampler(self) -> BaseSampler:
        import optuna

        from trainyard.tuning.trial_seeding import TrialSeededSampler

        return TrialSeededSampler(lambda seed: optuna.samplers.RandomSampler(seed=seed), self.seed)


class OptunaSearcher(Searcher):
    """A model-based Optuna sampler: TPE (default), CMA-ES, Gaussian process or NSGA-II."""

    KIND: Literal["optuna"] = "optuna"
    sampler_: Annotated[SamplerKind, default_kind("tpe")] = Field(
        default_factory=TpeSampler, alias="sampler", description="The sampler (KIND may be left out: tpe)."
    )

    def sampler(self) -> BaseSampler:
        from trainyard.tuning.trial_seeding import TrialSeededSampler

        return TrialSeededSampler(self.sampler_.build, self.sampler_.seed)


SearcherKind = Annotated[GridSearcher | RandomSearcher | OptunaSearcher, Field(discriminator="KIND")]
