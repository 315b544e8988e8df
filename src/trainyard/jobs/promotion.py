"""The promotion job: move an alias (``champion``) to the best candidate that meets a policy.

MLflow keeps no history of alias moves, so every decision, "no change" included, is recorded on the
promotion's run (``decision.json``, tags) and on the registered model (its last decision; one tag per
move), and the versions say when they took or lost the alias. Running it again with nothing new
changes nothing: the champion is still the best.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from trainyard.core.metrics import Metric
from trainyard.errors import ResourceNotFoundError, TrainingJobError
from trainyard.io.candidates import Candidate, CandidatesKind, RunCandidates
from trainyard.io.logging import get_logger
from trainyard.io.registers import ensure_registered_model
from trainyard.jobs.base import Job, Locals
from trainyard.lifecycle.decision import Decision, Direction, Policy, Scored, decide
from trainyard.records import ALIAS_MOVE_TAG, DECISION_TAG, DEMOTED_TAG, LAST_DECISION_TAG, PROMOTED_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


class PromotionJob(Job):
    """Pick the best candidate by a target metric and point the alias at it, as the policy allows."""

    KIND: Literal["promotion"] = "promotion"
    candidates: CandidatesKind = Field(
        default_factory=RunCandidates, description="Which models compete (as in an evaluation job)."
    )
    registered: str = Field(min_length=1, description="The registered model the alias belongs to.")
    alias: str = Field("champion", min_length=1, description="The alias to move to the winner.")
    previous_alias: str | None = Field(
        "previous-champion", description="Where the former holder stays reachable (unset: nowhere)."
    )
    target: str = Field(min_length=1, description="The metric that ranks candidates, e.g. r2.")
    suffix: str = Field("_test", description="Appended to target: the evaluation job's test scores.")
    direction: Direction | None = Field(
        None, description="maximize or minimize (unset: the target metric's own, when Trainyard knows it)."
    )
    policy: Policy = Field(
        default_factory=Policy, description="Thresholds, min_delta, and what if none qualifies."
    )

    @model_validator(mode="after")
    def _direction_known(self) -> PromotionJob:
        if self.direction is None:
            try:
                Metric(KIND=self.target)
            except ValueError:
                raise ValueError(
                    f"target: {self.target!r} is not a metric Trainyard knows, so its direction is not "
                    "either: set direction: maximize or minimize"
                ) from None
        if self.previous_alias == self.alias:
            raise ValueError(f"previous_alias: must differ from alias {self.alias!r}")
        return self

    @property
    def metric(self) -> str:
        """The metric's name in the candidates' runs: target + suffix (``r2_test``)."""
        return f"{self.target}{self.suffix}"

    @property
    def ranking(self) -> Direction:
        if self.direction is not None:
            return self.direction
        return Metric(KIND=self.target).direction

    def run(self) -> Locals:
        import mlflow
        from mlflow import MlflowClient

        with self.tracked_run() as run:
            client = MlflowClient()
            decision, candidates, holder = self._decide(client)
            version = None
            if decision.action == "promote":
                with self.step("move the alias") as step:
                    assert decision.winner is not None
                    version = self._move(client, candidates[decision.winner.key], holder, run.info.run_id)
                    step.note(f"{self.registered} @{self.alias} -> v{version.version}")
            with self.step("record the decision") as step:
                record = self._record(decision, holder, version, run.info.run_id)
                mlflow.log_dict(record, "decision.json")
                mlflow.set_tags({DECISION_TAG: decision.action})
                if decision.winner is not None:
                    mlflow.log_metric(self.metric, decision.winner.score)
                self._trail(client, record, holder, version)
                step.note(f"{decision.action}: {decision.reason}")
            if decision.nothing_qualified and self.policy.when_none_qualifies == "fail":
                unmet = "; ".join(
                    f"{label}: {', '.join(failed)}" for label, failed in decision.unqualified.items()
                )
                raise TrainingJobError(
                    f"no candidate meets job.policy ({unmet or 'none has ' + self.metric}); "
                    f"@{self.alias} stays where it was (decision recorded)"
                )
            summary = {"run": run.info.run_id, "decision": f"{decision.action}: {decision.reason}"}
            if version is not None:
                summary["champion"] = f"{self.registered} v{version.version} (@{self.alias})"
            summary["look"] = self.mlflow.ui_command()
            self.report("Promotion finished", summary)
        return locals()

    def preview(self) -> str:
        """The decision a run would make now, changing nothing (``trainyard run --dry-run``)."""
        from mlflow import MlflowClient

        decision, _, holder = self._decide(MlflowClient())
        return json.dumps(self._record(decision, holder, None, None), indent=2)

    # -- the decision ------------------------------------------------------------------------------

    def _decide(self, client: MlflowClient) -> tuple[Decision, dict[str, Candidate], ModelVersion | None]:
        with self.step("select candidates") as step:
            found = self.candidates.select(client, self.mlflow.experiment)
            candidates = {c.run_id: c for c in found}
            scored = []
            for candidate in found:
                metrics = dict(client.get_run(candidate.run_id).data.metrics)
                if self.metric not in metrics:
                    get_logger().warning(
                        "%s (run %s) has no %s: skipped (evaluate it first)",
                        candidate.label,
                        candidate.run_id,
                        self.metric,
                    )
                    continue
                scored.append(Scored(candidate.run_id, candidate.label, metrics[self.metric], metrics))
            step.note(f"{len(scored)} of {len(found)} have {self.metric}")
        with self.step("find the champion") as step:
            holder = self._holder(client)
            champion = None
            if holder is not None:
                metrics = dict(client.get_run(holder.run_id).data.metrics) if holder.run_id else {}
                label = f"{self.registered} v{holder.version}"
                if self.metric in metrics:
                    champion = Scored(str(holder.run_id), label, metrics[self.metric], metrics)
                else:
                    get_logger().warning(
                        "the champion %s has no %s: any qualifying candidate beats it", label, self.metric
                    )
            step.note(f"@{self.alias}: " + (f"v{holder.version}" if holder is not None else "nobody yet"))
        with self.step("decide") as step:
            decision = decide(scored, champion, self.policy, self.ranking, self.metric)
            step.note(f"{decision.action}: {decision.reason}")
        return decision, candidates, holder

    def _holder(self, client: MlflowClient) -> ModelVersion | None:
        """The version the alias points at now (None: no such model, or the alias is unset)."""
        from mlflow.exceptions import MlflowException

        try:
            return client.get_model_version_by_alias(self.registered, self.alias)
        except MlflowException:
            return None

    # -- applying and recording --------------------------------------------------------------------

    def _move(
        self, client: MlflowClient, winner: Candidate, holder: ModelVersion | None, run_id: str
    ) -> ModelVersion:
        """Point the alias at the winner's version (registered now if it has none under this name),
        and the previous alias at the former holder."""
        from mlflow.exceptions import MlflowException

        version = self._version_of(client, winner)
        try:
            if holder is not None and self.previous_alias:
                client.set_registered_model_alias(self.registered, self.previous_alias, holder.version)
            client.set_registered_model_alias(self.registered, self.alias, version.version)
        except MlflowException as error:
            raise TrainingJobError(f"moving @{self.alias} on {self.registered!r} failed: {error}") from None
        return version

    def _version_of(self, client: MlflowClient, winner: Candidate) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        if winner.name == self.registered and winner.version is not None:
            return client.get_model_version(self.registered, winner.version)
        existing: list[ModelVersion] = []
        with contextlib.suppress(MlflowException):  # no such model yet
            existing = list(
                client.search_model_versions(
                    f"name = '{self.registered}' and run_id = '{winner.run_id}'", max_results=100
                )
            )
        if existing:
            return max(existing, key=lambda v: int(v.version))
        try:
            ensure_registered_model(client, self.registered)
            return client.create_model_version(
                self.registered, source=winner.model_uri, run_id=winner.run_id, model_id=winner.model_id
            )
        except MlflowException as error:
            raise ResourceNotFoundError(
                f"registering {winner.label} as {self.registered!r} failed: {error}"
            ) from None

    def _record(
        self,
        decision: Decision,
        holder: ModelVersion | None,
        version: ModelVersion | None,
        run_id: str | None,
    ) -> dict[str, Any]:
        """The decision as data: who held the alias, who holds it now, the scores, the policy, the time."""

        def scored(item: Scored | None) -> dict[str, Any] | None:
            return (
                None if item is None else {"label": item.label, "run_id": item.key, self.metric: item.score}
            )

        return {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "action": decision.action,
            "reason": decision.reason,
            "registered": self.registered,
            "alias": self.alias,
            "held_by": None if holder is None else {"version": holder.version, "run_id": holder.run_id},
            "now_held_by": (
                {"version": version.version, "run_id": version.run_id}
                if version is not None
                else (None if holder is None else {"version": holder.version, "run_id": holder.run_id})
            ),
            "winner": scored(decision.winner),
            "champion": scored(decision.champion),
            "target": self.metric,
            "direction": self.ranking,
            "policy": self.policy.model_dump(),
            "unqualified": decision.unqualified,
            "promotion_run": run_id,
        }

    def _trail(
        self,
        client: MlflowClient,
        record: dict[str, Any],
        holder: ModelVersion | None,
        version: ModelVersion | None,
    ) -> None:
        """The registered model's trail: its last decision, one tag per move, and the versions' own."""
        from mlflow.exceptions import MlflowException

        stamp = record["time"].replace("-", "").replace(":", "")  # tag keys take no colons
        short = {
            k: record[k]
            for k in ("time", "action", "reason", "alias", "held_by", "now_held_by", "promotion_run")
        }
        try:
            client.set_registered_model_tag(self.registered, LAST_DECISION_TAG, json.dumps(short)[:5000])
        except MlflowException:  # no such model yet and nothing promoted: the run has the decision
            return
        if version is None:
            return
        before = f"v{holder.version}" if holder is not None else "nobody"
        client.set_registered_model_tag(
            self.registered,
            f"{ALIAS_MOVE_TAG}.{self.alias}.{stamp}.{str(record['promotion_run'])[:8]}",  # two in a second
            f"{before} -> v{version.version} by run {record['promotion_run']}: {record['reason']}"[:5000],
        )
        client.set_model_version_tag(
            self.registered, version.version, PROMOTED_TAG, f"@{self.alias} at {record['time']}"
        )
        if holder is not None:
            moved = f" -> @{self.previous_alias}" if self.previous_alias else ""
            client.set_model_version_tag(
                self.registered, holder.version, DEMOTED_TAG, f"@{self.alias}{moved} at {record['time']}"
            )
