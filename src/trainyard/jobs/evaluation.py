"""The evaluation job: score candidate models on test rows they never saw, and compare them.

Each candidate's score goes into its own run (``r2_test``, ...), linked to its logged model and to the
test rows as a dataset input (context ``test``); the evaluation's own run holds the comparison table
and the figures. Test rows are recomputed from what each candidate's run recorded, and refused when
they cannot be proven unseen (lifecycle/heldout.py).
"""

from __future__ import annotations

import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, TypeAdapter

from trainyard.core.metrics import Metric, MetricKind
from trainyard.core.models import PREDICTION
from trainyard.errors import DataAccessError, DataValidationError, ResourceNotFoundError, TrainingJobError
from trainyard.io.candidates import Candidate, CandidatesKind, RunCandidates
from trainyard.io.lineage import logged_despite_a_race
from trainyard.io.readers import Reader, ReaderKind
from trainyard.jobs.base import Job, Locals, Step
from trainyard.lifecycle.figures import diagnostic_figures
from trainyard.lifecycle.heldout import HeldOutRows, held_out_rows, logged_job

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run

CONFIG_READERS = 4  # configs fetched at once from the artifact store (each a round trip)
_METRICS: TypeAdapter[list[Metric]] = TypeAdapter(list[MetricKind])
_UNSAFE = re.compile(r"[^\w.-]+")


class EvaluationJob(Job):
    """Score candidates on their test rows; log each score into the candidate's run; compare."""

    KIND: Literal["evaluation"] = "evaluation"
    candidates: CandidatesKind = Field(
        default_factory=RunCandidates,
        description="Which models: {KIND: runs, ...} (finished training runs of an experiment) or "
        "{KIND: registered, name: ..., versions: [...], aliases: [...]}.",
    )
    inputs: ReaderKind | None = Field(
        None, description="Read the inputs from here instead of the file each candidate was trained on."
    )
    targets: ReaderKind | None = Field(
        None, description="Read the targets from here instead of each candidate's own file."
    )
    metrics: list[MetricKind] | None = Field(
        None, description="Scores to compute (unset: the metrics each candidate's training job had)."
    )
    suffix: str = Field(
        "_test", pattern=r"^[\w.-]*$", description="Appended to each metric's name in the candidate's run."
    )
    rescore: bool = Field(
        False, description="Log the scores again into runs that have them (default: a run is scored once)."
    )
    plots: bool = Field(True, description="Draw each candidate's figures (into its run and this one).")

    def run(self) -> Locals:
        import mlflow
        import pandas as pd
        from mlflow import MlflowClient

        with self.tracked_run() as run:
            client = MlflowClient()
            with self.step("select candidates") as step:
                candidates = self.candidates.select(client, self.mlflow.experiment)
                step.note(f"{len(candidates)}: " + ", ".join(c.label for c in candidates))
            with self.step("find test rows") as step:
                plans = self._test_rows(client, candidates)
                step.note(", ".join(f"{c.label} {len(rows.inputs)} rows" for c, _, rows in plans))
            results = []
            for candidate, candidate_run, rows in plans:
                with self.step(f"score {candidate.label}") as step:
                    results.append(self._score(client, candidate, candidate_run, rows, step))
            with self.step("compare") as step:
                table = pd.DataFrame(results)
                first = self._metrics_of(plans[0][2])[0]
                column = f"{first.name}{self.suffix}"
                if column in table:
                    table = table.sort_values(column, ascending=first.direction == "minimize", kind="stable")
                mlflow.log_text(table.to_csv(index=False), "comparison.csv")
                mlflow.log_metric("candidates", len(table))
                best = table.iloc[0]
                step.note(f"best by {column}: {best['candidate']} ({best.get(column, float('nan')):.4g})")
            self.report(
                "Evaluation finished",
                {
                    "run": run.info.run_id,
                    "candidates": str(len(table)),
                    f"best by {column}": f"{best['candidate']} = {best.get(column, float('nan')):.4g}",
                    "table": f"runs:/{run.info.run_id}/comparison.csv",
                    "look": self.mlflow.ui_command(),
                },
            )
        return locals()

    def _test_rows(
        self, client: MlflowClient, candidates: list[Candidate]
    ) -> list[tuple[Candidate, Run, HeldOutRows]]:
        """Each candidate's test rows, or one error naming every candidate that has none to trust."""
        cache: dict[str, pd.DataFrame] = {}

        def read(reader: Reader) -> pd.DataFrame:
            key = reader.model_dump_json()
            if key not in cache:
                try:
                    cache[key] = reader.read()
                except DataAccessError as error:
                    raise DataAccessError(f"candidate data: {error}") from error
            return cache[key]

        plans, problems = [], []
        digests: dict[tuple[int, int], str] = {}  # the cached tables' fingerprints, made once each
        runs = [candidate.run or client.get_run(candidate.run_id) for candidate in candidates]
        for candidate, candidate_run, job in zip(candidates, runs, _logged_jobs(runs), strict=True):
            try:
                if isinstance(job, Exception):
                    raise job
                rows = held_out_rows(
                    candidate_run, candidate.label, read, self.inputs, self.targets, digests, job
                )
            except (DataValidationError, ResourceNotFoundError) as error:
                problems.append(str(error))
                continue
            plans.append((candidate, candidate_run, rows))
        if problems:
            raise DataValidationError(
                f"cannot evaluate {len(problems)} of {len(candidates)} candidates:\n  "
                + "\n  ".join(problems)
            )
        return plans

    def _metrics_of(self, rows: HeldOutRows) -> list[Metric]:
        return self.metrics or _METRICS.validate_python(rows.config.get("metrics", []))

    def _score(
        self, client: MlflowClient, candidate: Candidate, candidate_run: Run, rows: HeldOutRows, step: Step
    ) -> dict[str, Any]:
        """Predict the test rows, score them, log the scores into the candidate's run (once, unless
        ``rescore``) and the figures; the candidate's row of the comparison table."""
        import mlflow
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.entities import Metric as MlflowMetric
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
        from sklearn.base import is_classifier

        metrics = self._metrics_of(rows)
        loaded = candidate.model().load()  # ModelRegistryError naming the candidate
        classifier = loaded.flavor == "sklearn" and bool(is_classifier(loaded.model))
        try:
            outputs = loaded.predict(rows.inputs)
            labels = list(loaded.model.classes_) if classifier else None
            wants_probas = any(m.needs_proba for m in metrics) or (classifier and self.plots)
            probabilities = wants_probas and loaded.classes is not None
            probas = loaded.predict_proba(rows.inputs).to_numpy() if probabilities else None
            scores = {m.name: m.score(rows.targets, outputs, probas, labels) for m in metrics}
        except (TypeError, ValueError, KeyError) as error:
            raise TrainingJobError(
                f"{candidate.label}: cannot score {candidate.model_uri}: {error}"
            ) from None
        keys = {name: f"{name}{self.suffix}" for name in scores}
        known = candidate_run.data.metrics
        fresh = self.rescore or any(key not in known for key in keys.values())
        if fresh:
            dataset = rows.inputs_reader.lineage(rows.inputs, "test")
            now = int(time.time() * 1000)
            client.log_batch(
                candidate.run_id,
                metrics=[
                    MlflowMetric(
                        keys[name],
                        value,
                        now,
                        0,
                        model_id=candidate.model_id,
                        dataset_name=dataset.name,
                        dataset_digest=dataset.digest,
                    )
                    for name, value in scores.items()
                ],
            )
            tested = [
                DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, "test")])
            ]
            logged_despite_a_race(lambda: client.log_inputs(candidate.run_id, tested))
        step.note(", ".join(f"{keys[n]}={v:.4g}" for n, v in scores.items()))
        step.note(
            "logged into its run" if fresh else "its run has these scores already (rescore: true logs again)"
        )
        if self.plots:
            folder = _UNSAFE.sub("_", candidate.label)
            made = diagnostic_figures(
                rows.targets.iloc[:, 0], outputs[PREDICTION], probas, labels, classifier, candidate.label
            )
            with tempfile.TemporaryDirectory(prefix="trainyard-figures-") as drawn:
                for file, make in made.items():
                    path = Path(drawn) / file
                    make().savefig(path)  # drawn once (most of the time), logged into both runs
                    mlflow.log_artifact(str(path), f"plots/{folder}")  # the evaluation's run
                    if fresh:
                        client.log_artifact(candidate.run_id, str(path), "test_plots")
        return {
            "candidate": candidate.label,
            "run_id": candidate.run_id,
            "model_uri": candidate.model_uri,
            "registered": candidate.name or "",
            "version": candidate.version or "",
            "aliases": ", ".join(candidate.aliases),
            "test_rows": len(rows.inputs),
            **{keys[name]: value for name, value in scores.items()},
        }


def _logged_jobs(runs: list[Run]) -> list[dict[str, Any] | ResourceNotFoundError]:
    """Each run's logged job, or the error that says it has none; fetched a few at a time."""

    def fetch(run: Run) -> dict[str, Any] | ResourceNotFoundError:
        try:
            return logged_job(run.info.run_id)
        except ResourceNotFoundError as error:
            return error

    with ThreadPoolExecutor(min(CONFIG_READERS, len(runs) or 1), thread_name_prefix="config") as pool:
        return list(pool.map(fetch, runs))
