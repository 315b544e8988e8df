"""The MLflow side of a tuning job, whichever process runs it: the study's parent run and its children.

The tuning job hands all of it to a writer process (``trainyard.tuning.writer``) so that MLflow is never
loaded in the job, and runs the very same steps itself when the writer is gone. Every step is safe to
repeat: the parent run is found again through the study, a resumed run keeps its params, and trials
are written once, from the study's storage (the record).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainyard.errors import ConfigurationError, TrainyardError
from trainyard.io.lineage import logged_despite_a_race
from trainyard.io.logging import get_logger
from trainyard.io.sources import without_credentials
from trainyard.io.tracking import MlflowService, RunRecord, absolute_sqlite_uri, record_error
from trainyard.records import CLAIM_TAG, STORAGE_TAG, STUDY_TAG, token_alive
from trainyard.tuning.studies import StudyStorage, others_running, parent_attr, shared_parent_run
from trainyard.tuning.trials import TrialLogger

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna
    import pandas as pd
    from optuna.trial import FrozenTrial

    from trainyard.io.readers import Reader
    from trainyard.tuning.plots import Importances
    from trainyard.tuning.trials import TrialLogger


# (reader, data, context): what a job read, to log as the run's input lineage
Lineage = list[tuple["Reader", "pd.DataFrame", str]]


@dataclass(frozen=True)
class StudyRunSpec:
    """Everything the study's MLflow side needs, as plain data that can go through a pipe."""

    mlflow: dict[str, Any]  # MlflowService settings
    storage: dict[str, Any]  # StudyStorage settings
    study_name: str
    claimed_at: float | None  # when the job claimed the parent run's creation (time.monotonic())
    owner: str  # the job's worker token: its trials, and its claim
    record: RunRecord
    metric_names: list[str]
    plots: bool
    spare_core: bool = True  # the job's trials leave a core idle: the writer may work ahead on it
    previous_claim: str | None = None  # the worker whose claim on the parent run this job's replaced


class StudyRuns:
    """Opens the study's parent run, logs lineage, writes trials, logs the results, ends the run."""

    def __init__(self, spec: StudyRunSpec, study: optuna.Study | None = None) -> None:
        self.spec = spec
        self.study = study
        self.service = MlflowService.model_validate(spec.mlflow)
        self.parent_id: str | None = None
        self.client: Any = None  # an MlflowClient, once open
        self.written: set[int] = set()  # trial numbers that have a child run
        self._trials: TrialLogger | None = None

    def open(self) -> str:
        """Open the store and experiment, then start or resume the study's shared parent run.

        Everything here goes through the client API, by run id: MLflow's active run is per thread,
        and the job may take over from its writer in any of its n_jobs threads.
        """
        from mlflow import MlflowClient

        try:
            self.service.start()
        except Exception as error:
            raise TrainyardError(
                f"cannot open the MLflow store {without_credentials(self.service.tracking_uri)}: {error}"
            ) from error
        self.client = MlflowClient()
        study = self._study()
        uri = self.service.resolved_tracking_uri
        experiment_id = self.service.experiment_id()
        parent = shared_parent_run(
            study,
            uri,
            exists=lambda run_id: _run_exists(run_id, experiment_id, study.study_name),
            claimed_at=self.spec.claimed_at,
            token=self.spec.owner,
        )
        record = self.spec.record
        if parent is None:
            parent = self._orphan(experiment_id, study.study_name)
            if parent is not None:
                study.set_user_attr(parent_attr(uri), parent)
                get_logger().info("resuming MLflow run %s, which a killed worker left unrecorded", parent)
            else:  # marked as this worker's, and recorded in the study before anything else is logged
                tags = {**record.tags, CLAIM_TAG: self.spec.owner, STORAGE_TAG: self._storage_digest()}
                record = replace(record, tags=tags)
        self.parent_id = self.service.begin_run(
            record, parent, created=lambda run_id: study.set_user_attr(parent_attr(uri), run_id)
        )
        self._trials = TrialLogger(
            self.parent_id, experiment_id, study.study_name, self.spec.metric_names, self.spec.plots
        )
        return self.parent_id

    def log_lineage(self, lineage: Lineage) -> dict[str, str]:
        """Log each table as an input of the parent run; return their digests by context."""
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        digests, inputs = {}, []
        for reader, data, context in lineage:
            dataset = reader.lineage(data, context)
            inputs.append(
                DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
            )
            digests[context] = dataset.digest
        parent = self._parent()
        logged_despite_a_race(lambda: self.client.log_inputs(parent, datasets=inputs))
        return digests

    def catch_up(self) -> list[FrozenTrial]:
        """Write every finished trial without a child run (this job's, and those earlier runs left)."""
        return self._logger().reconcile(self._study(), self.spec.owner, self.written)

    def write(self, trial: FrozenTrial) -> bool:
        """Write one finished trial's child run, unless it has one; whether it wrote it."""
        if trial.number in self.written:
            return False
        self._logger().write(trial)
        self.written.add(trial.number)
        return True

    def write_by_id(self, trial_id: int) -> bool:
        """``write`` for a trial named by its storage id (what a job sends its writer)."""
        return self.write(self._study()._storage.get_trial(trial_id))

    def log_results(
        self, best_number: int, importances: Callable[[], Importances] | None = None, plots: bool = True
    ) -> None:
        """Best params and scores, the trials table and (unless ``plots`` is False) the plots, on the
        parent run (``importances``: where the parameter importances come from, if not computed here)."""
        study = self._study()
        best = next(t for t in study.get_trials(deepcopy=False) if t.number == best_number)
        self._logger().log_results(study, best, importances, plots)

    def conclude(
        self, best_number: int, importances: Callable[[], Importances] | None = None
    ) -> tuple[str, str | None]:
        """Log the results, then end the parent run: FINISHED, or FAILED with the error when the results
        could not be logged. Returns the status the run was left in, and that error."""
        import traceback

        # Another live worker concludes after this one: its plots replace these, so it alone draws them.
        shared = self.shared()
        try:
            self.log_results(best_number, importances, plots=not shared)
        except Exception as error:
            described = f"{type(error).__name__}: {error}"
            return self.end("FAILED", (described, "".join(traceback.format_exception(error)))), described
        return self.end("FINISHED"), None  # checked again: the results took a while

    def end(self, status: str, error: tuple[str, str] | None = None, shared: bool | None = None) -> str:
        """End the parent run with ``status`` (and ``error``: its description and details).

        A run that another live worker still uses (``shared``; checked when not given) stays RUNNING
        after a success: the last one ends it. Returns the status the run was left in.
        """

        parent = self._parent()
        if error is not None:
            record_error(parent, *error)
        if status == "FINISHED" and (self.shared() if shared is None else shared):
            get_logger().info("MLflow run %s stays RUNNING: another worker still uses it", parent)
            return "RUNNING"
        self.client.set_terminated(parent, status)
        return status

    def shared(self) -> bool:
        """Whether another live worker still runs trials of the study (it concludes after this one)."""

        try:
            return others_running(self._study(), self.spec.owner)
        except Exception as check_error:  # ending the run matters more than this refinement
            get_logger().warning("could not check whether another worker uses the run: %s", check_error)
            return False

    def _orphan(self, experiment_id: str, study_name: str) -> str | None:
        """A parent run of this study that a killed worker created but did not record in the study.

        A job killed between MLflow's insert and the study's record leaves such a run RUNNING; the
        next creator resumes it rather than add a second parent. Only a run claimed by this job (its
        writer died) or by the dead worker whose claim on this very study this job replaced: a study
        made anew under the same name and storage has no such claim.
        """

        claims = {self.spec.owner}
        if self.spec.previous_claim and not token_alive(self.spec.previous_claim):
            claims.add(self.spec.previous_claim)
        conditions = [f"tags.`{STORAGE_TAG}` = '{self._storage_digest()}'", "attributes.status = 'RUNNING'"]
        if '"' not in study_name:  # MLflow's filter has no escapes: double quotes hold a name with '
            conditions.append(f'tags.`{STUDY_TAG}` = "{study_name}"')
        runs = self.client.search_runs(
            [experiment_id], filter_string=" AND ".join(conditions), order_by=["attributes.start_time DESC"]
        )
        for run in runs:
            tags = run.data.tags
            if (
                tags.get(STUDY_TAG) == study_name
                and "mlflow.parentRunId" not in tags
                and tags.get(CLAIM_TAG) in claims
            ):
                return str(run.info.run_id)
        return None

    def _storage_digest(self) -> str:
        """Names the study's storage without spelling it out (a database URL may hold a password)."""
        import hashlib

        location = StudyStorage.model_validate(self.spec.storage).location(self.service.resolved_tracking_uri)
        # the same file, however the config spells it: relative to the folder the job runs in
        location = absolute_sqlite_uri(location) if "://" in location else str(Path(location).resolve())
        return hashlib.sha256(location.encode()).hexdigest()[:12]

    def _parent(self) -> str:
        if self.parent_id is None:
            raise RuntimeError("the study's parent run is not open")
        return self.parent_id

    def _study(self) -> optuna.Study:
        if self.study is None:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.ERROR)
            storage = StudyStorage.model_validate(self.spec.storage).open(self.service.resolved_tracking_uri)
            self.study = optuna.load_study(study_name=self.spec.study_name, storage=storage)
        return self.study

    def _logger(self) -> TrialLogger:
        if self._trials is None:
            raise RuntimeError("the study's parent run is not open")
        return self._trials


def _run_exists(run_id: str, experiment_id: str, study: str) -> bool:
    """Whether this store has the study's parent run (not deleted), in the job's experiment."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    if run.info.lifecycle_stage != "active":
        return False
    if run.info.experiment_id != experiment_id:
        experiment = MlflowClient().get_experiment(run.info.experiment_id).name
        raise ConfigurationError(
            f"job.mlflow.experiment: study {study!r} is tracked in experiment {experiment!r}; "
            f"set job.mlflow.experiment={experiment}, or choose another job.study.name"
        )
    return True
