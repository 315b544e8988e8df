"""Candidates: the models an evaluation scores and a promotion chooses among, found in MLflow.

Two kinds: the runs of an experiment (``runs``: filtered on MLflow's search syntax, finished ones,
the newest N) and registered versions (``registered``: a model name, with versions or aliases). Each
candidate is one run and the model it logged; a registered version names both.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from trainyard.core.component import Component
from trainyard.errors import ConfigurationError, ResourceNotFoundError, did_you_mean
from trainyard.io.model_refs import ResolvedModel, model_of_run
from trainyard.records import KIND_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


@dataclass(frozen=True)
class Candidate:
    """One model to score: its run, its logged model, and its registered version if it has one."""

    run_id: str
    model_uri: str  # what MLflow loads: models:/<model id>, or the registered version's source
    model_id: str | None = None  # the MLflow 3 logged model, whose metrics the scores also become
    name: str | None = None  # registered model name
    version: str | None = None  # registered version
    aliases: tuple[str, ...] = ()  # the version's aliases when selected
    run: Run | None = field(default=None, compare=False, repr=False)  # as found, when it was searched

    def model(self) -> ResolvedModel:
        """Its model, as a model reference resolves one: ``load()`` it to predict."""
        return ResolvedModel(
            uri=self.model_uri,
            load_uri=self.model_uri,
            field=self.label,
            name=self.name,
            version=self.version,
            run_id=self.run_id,
            model_id=self.model_id,
        )

    @property
    def label(self) -> str:
        """How messages and tables name it: ``diabetes v3`` or ``run 1a2b3c4d``."""
        if self.name is not None:
            return f"{self.name} v{self.version}"
        return f"run {self.run_id[:8]}"


class Candidates(Component, abc.ABC):
    """How to find the candidates."""

    KIND: str

    @abc.abstractmethod
    def select(self, client: MlflowClient, experiment: str) -> list[Candidate]:
        """The candidates, newest first; ``experiment`` is the job's own (the default place to look).
        Raises ResourceNotFoundError naming what does not exist, or when nothing matches."""


class RunCandidates(Candidates):
    """Finished runs of an experiment that logged a model (training runs by default)."""

    KIND: Literal["runs"] = "runs"
    experiment: str | None = Field(None, description="Experiment to search (unset: the job's own).")
    filter: str | None = Field(
        None,
        description="An MLflow search filter, e.g. \"params.`model.estimator` = 'Ridge'\" or "
        '"metrics.r2 > 0.4" (combined with the kind and status below by AND).',
    )
    kinds: list[str] = Field(
        ["training"], min_length=1, description="Job kinds of the runs (tag trainyard.kind)."
    )
    status: Literal["FINISHED", "any"] = Field("FINISHED", description="Run status (any: every status).")
    newest: int | None = Field(None, ge=1, description="Keep the newest N (unset: all that match).")
    run_ids: list[str] = Field(default_factory=list, description="These runs only (besides the filter).")

    def select(self, client: MlflowClient, experiment: str) -> list[Candidate]:
        name = self.experiment or experiment
        found = client.get_experiment_by_name(name)
        if found is None:
            names = [e.name for e in client.search_experiments()]
            raise ResourceNotFoundError(
                f"job.candidates.experiment: no experiment {name!r}.{did_you_mean(name, names)}"
            )
        # MLflow's filter takes one value per tag clause: several kinds are filtered here.
        clauses = [f"tags.`{KIND_TAG}` = '{self.kinds[0]}'"] if len(self.kinds) == 1 else []
        if self.status != "any":
            clauses.append(f"attributes.status = '{self.status}'")
        if self.filter:
            clauses.append(f"({self.filter})" if " or " in self.filter.lower() else self.filter)
        query = " AND ".join(clauses) or None
        try:
            runs = list(
                client.search_runs(
                    [found.experiment_id],
                    query or "",
                    order_by=["attributes.start_time DESC"],
                    max_results=50_000,
                )
            )
        except Exception as error:  # MLflow's own message names what it could not parse
            raise ConfigurationError(f"job.candidates.filter: MLflow refused {query!r}: {error}") from None
        runs = [run for run in runs if run.data.tags.get(KIND_TAG) in self.kinds]
        if self.run_ids:
            wanted = set(self.run_ids)
            runs = [run for run in runs if run.info.run_id in wanted]
            missing = wanted - {run.info.run_id for run in runs}
            if missing:
                raise ResourceNotFoundError(
                    f"job.candidates.run_ids: no {self.status.lower()} {'/'.join(self.kinds)} run "
                    f"{', '.join(sorted(missing))} in experiment {name!r}"
                )
        runs = runs[: self.newest] if self.newest else runs
        if not runs:
            raise ResourceNotFoundError(
                f"job.candidates: no run in experiment {name!r} matches {query!r}: train some first, "
                "or loosen job.candidates.filter"
            )
        return [_run_candidate(client, run) for run in runs]


class RegisteredCandidates(Candidates):
    """Versions of a registered model: those listed, those the aliases point at, or all of them."""

    KIND: Literal["registered"] = "registered"
    name: str = Field(min_length=1, description="Registered model name.")
    versions: list[int] = Field(default_factory=list, description="Versions to score.")
    aliases: list[str] = Field(default_factory=list, description="Aliases whose versions to score.")

    def select(self, client: MlflowClient, experiment: str) -> list[Candidate]:
        from mlflow.exceptions import MlflowException

        try:
            model = client.get_registered_model(self.name)
        except MlflowException:
            names = [m.name for m in client.search_registered_models(max_results=1000)]
            raise ResourceNotFoundError(
                f"job.candidates.name: no registered model {self.name!r}.{did_you_mean(self.name, names)}"
                + (f" Registered: {', '.join(sorted(names))}" if names else " None is registered yet.")
            ) from None
        held = dict(model.aliases or {})  # alias -> version
        unknown = [alias for alias in self.aliases if alias not in held]
        if unknown:
            have = ", ".join(f"@{a} (v{v})" for a, v in sorted(held.items())) or "none"
            raise ResourceNotFoundError(
                f"job.candidates.aliases: {self.name!r} has no alias {', '.join(map(repr, unknown))}; "
                f"its aliases: {have}"
            )
        every = client.search_model_versions(f"name = '{self.name}'", max_results=10_000)
        by_number = {str(v.version): v for v in every}
        wanted = [str(v) for v in self.versions] + [str(held[a]) for a in self.aliases]
        missing = [v for v in wanted if v not in by_number]
        if missing:
            raise ResourceNotFoundError(
                f"job.candidates.versions: {self.name!r} has no version {', '.join(missing)}; "
                f"its versions: {', '.join(sorted(by_number, key=int))}"
            )
        chosen = list(dict.fromkeys(wanted)) if wanted else sorted(by_number, key=int, reverse=True)
        if not chosen:
            raise ResourceNotFoundError(f"job.candidates: {self.name!r} has no versions")
        aliases_of: dict[str, list[str]] = {}
        for alias, number in held.items():
            aliases_of.setdefault(str(number), []).append(alias)
        unrun = [number for number in chosen if not by_number[number].run_id]
        if unrun:
            raise ResourceNotFoundError(
                f"job.candidates: {self.name!r} version {', '.join(unrun)} was registered without a run: "
                "its test rows cannot be known"
            )
        return [
            Candidate(
                run_id=str(by_number[number].run_id),
                model_uri=f"models:/{self.name}/{number}",
                model_id=getattr(by_number[number], "model_id", None),
                name=self.name,
                version=number,
                aliases=tuple(sorted(aliases_of.get(number, []))),
            )
            for number in chosen
        ]


CandidatesKind = Annotated[RunCandidates | RegisteredCandidates, Field(discriminator="KIND")]


def _run_candidate(client: MlflowClient, run: Run) -> Candidate:
    """The run and the model it logged as its result (never one of its checkpoints)."""
    model = model_of_run(client, run, f"job.candidates: run {run.info.run_id[:8]}")
    return Candidate(
        run_id=run.info.run_id, model_uri=f"models:/{model.model_id}", model_id=model.model_id, run=run
    )
