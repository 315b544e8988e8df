"""Mirror an Optuna study in MLflow: a child run per finished trial, then the study's results."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from trainyard.io.logging import get_logger
from trainyard.records import (
    BEST_TRIAL_TAG,
    DURATION_TAG,
    ERROR_ATTR,
    ERROR_TAG,
    FOLDS_ATTR,
    NATIVE_THREADS_TAG,
    PRUNED_EPOCH_TAG,
    STATE_TAG,
    STUDY_TAG,
    TRIAL_TAG,
    WORKER_ATTR,
    WRITER_TAG,
    token_alive,
    worker_token,
)
from trainyard.tuning.plots import figures, save_figures
from trainyard.tuning.results_table import results_table
from trainyard.tuning.studies import finished_trials

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna
    from mlflow import MlflowClient
    from optuna.trial import FrozenTrial

    from trainyard.tuning.plots import Importances

_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


class TrialLogger:
    """Writes trials as child runs of ``parent_id`` with the client API (no global run state)."""

    def __init__(
        self, parent_id: str, experiment_id: str, study_name: str, metric_names: list[str], plots: bool
    ) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient()
        self.parent_id = parent_id
        self.study_name = study_name
        self.metric_names = metric_names
        self.plots = plots
        self.experiment_id = experiment_id

    def write(self, trial: FrozenTrial) -> None:
        """One child run with the trial's params, per-fold and mean/std scores, fit time and state."""

        start = _ms(trial.datetime_start)
        end = _ms(trial.datetime_complete) or start
        tags = {
            "mlflow.parentRunId": self.parent_id,
            "mlflow.runName": f"trial-{trial.number}",
            STUDY_TAG: self.study_name,
            TRIAL_TAG: str(trial.number),
            STATE_TAG: trial.state.name,
            WRITER_TAG: worker_token(),
            # here rather than in log_batch: one store transaction fewer, about 10 % of a child run's CPU
            DURATION_TAG: f"{(end - start) / 1000:.3f}",
        }
        threads = (trial.user_attrs.get(FOLDS_ATTR) or {}).get("threads")
        if threads is not None:  # the native threads its fits used (job.threads)
            tags[NATIVE_THREADS_TAG] = str(threads)
        curves = (trial.user_attrs.get(FOLDS_ATTR) or {}).get("epochs")
        if curves and trial.state.name == "PRUNED":  # the epoch after which the pruner stopped it
            tags[PRUNED_EPOCH_TAG] = str(max(len(curve) for curve in curves.values()))
        if ERROR_ATTR in trial.user_attrs:
            tags[ERROR_TAG] = str(trial.user_attrs[ERROR_ATTR])[:5000]
        run = self.client.create_run(self.experiment_id, start_time=start, tags=tags)
        try:
            self._fill(run.info.run_id, trial, end)
        except BaseException:  # never leave a half-written child RUNNING: the next reconcile rewrites it
            self.client.delete_run(run.info.run_id)
            raise

    def _fill(self, run_id: str, trial: FrozenTrial, end: int) -> None:
        import numpy as np
        from mlflow.entities import Metric as MlflowMetric
        from mlflow.entities import Param

        metrics = []
        folds = trial.user_attrs.get(FOLDS_ATTR, {})
        fold_scores: dict[str, list[float]] = folds.get("scores", {})
        for name, scores in fold_scores.items():
            metrics += [MlflowMetric(f"{name}_fold", float(v), end, step) for step, v in enumerate(scores)]
            if scores:
                metrics.append(MlflowMetric(f"{name}_mean", float(np.mean(scores)), end, 0))
                metrics.append(MlflowMetric(f"{name}_std", float(np.std(scores)), end, 0))
        for name, curve in (folds.get("epochs") or {}).items():  # a learning curve: the folds' mean
            metrics += [MlflowMetric(f"{name}_epoch", float(v), end, step) for step, v in enumerate(curve, 1)]
        if "fit_time" in folds:
            metrics.append(MlflowMetric("fit_time", float(folds["fit_time"]), end, 0))
        params = [Param(key, str(value)[:500]) for key, value in trial.params.items()]
        self.client.log_batch(run_id, metrics=metrics, params=params)
        self.client.set_terminated(run_id, _STATUS.get(trial.state.name, "FAILED"), end_time=end)

    def reconcile(
        self, study: optuna.Study, owner: str, written: set[int] | None = None
    ) -> list[FrozenTrial]:
        """Write every finished trial that has no child run yet; return those it wrote.

        Trials of another live worker are left to it. ``owner`` is the worker token of the job these
        trials count as its own; ``written`` collects the numbers of the trials that have a child run.
        """

        logged = set()
        for run in self.client.search_runs(
            [self.experiment_id], f"tags.mlflow.parentRunId = '{self.parent_id}'", max_results=50_000
        ):
            if run.info.status == "RUNNING" and not token_alive(run.data.tags.get(WRITER_TAG, "")):
                self.client.delete_run(run.info.run_id)  # half-written by a worker that died: rewrite it
                continue
            logged.add(run.data.tags.get(TRIAL_TAG))
        finished = finished_trials(study)
        missing = [
            trial
            for trial in finished
            if str(trial.number) not in logged
            # a live worker writes its own trials (it may be doing it right now)
            and (
                trial.user_attrs.get(WORKER_ATTR) in (None, owner)
                or not token_alive(str(trial.user_attrs[WORKER_ATTR]))
            )
        ]
        for trial in missing:
            self.write(trial)
        if written is not None:
            written.update(int(number) for number in logged if number is not None and number.isdigit())
            written.update(trial.number for trial in missing)
        return missing

    def log_results(
        self,
        study: optuna.Study,
        best: FrozenTrial,
        importances: Callable[[], Importances] | None = None,
        plots: bool = True,
    ) -> None:
        """Best params and scores, the results table, and the plots (if on, and ``plots``), on the
        parent run. ``importances`` gives the parameter importances (default: computed here).
        """
        from mlflow.entities import Metric as MlflowMetric
        from mlflow.entities import RunTag

        now = _ms(best.datetime_complete)
        # Tags, not params: a resumed or shared study finds a better trial later, and params are immutable.
        tags = [RunTag(f"best.{key}", str(value)[:500]) for key, value in best.params.items()]
        tags.append(RunTag(BEST_TRIAL_TAG, str(best.number)))
        metrics = [
            MlflowMetric(f"best_{name}", float(value), now, 0)
            for name, value in zip(self.metric_names, best.values, strict=True)
        ]
        metrics.append(MlflowMetric("best_trial", float(best.number), now, 0))
        self.client.log_batch(self.parent_id, metrics=metrics, tags=tags)
        self.client.log_dict(
            self.parent_id,
            {"trial": best.number, "params": best.params, "values": best.values},
            "best_params.json",
        )
        with tempfile.TemporaryDirectory() as folder:
            table = Path(folder) / "trials.csv"
            # built from the trials, not study.trials_dataframe(): see trainyard.tuning.results_table
            results_table(study.get_trials(deepcopy=False), self.metric_names).to_csv(table, index=False)
            self.client.log_artifact(self.parent_id, str(table))
            if len(self.metric_names) > 1:
                front = [
                    {"trial": t.number, "params": t.params, "values": t.values} for t in study.best_trials
                ]
                (Path(folder) / "pareto_front.json").write_text(json.dumps(front, indent=2))
                self.client.log_artifact(self.parent_id, str(Path(folder) / "pareto_front.json"))
        if self.plots and plots:
            _log_plots(self.client, self.parent_id, study, self.metric_names, importances)
        elif self.plots:
            get_logger().info("plots left to the worker that finishes last (another one is still running)")


def _log_plots(
    client: MlflowClient,
    run_id: str,
    study: optuna.Study,
    names: list[str],
    importances: Callable[[], Importances] | None,
) -> None:
    """Optimization history, parallel coordinates and parameter importances (first objective)."""

    with tempfile.TemporaryDirectory() as folder:
        makers = figures(study, names[0], importances)
        errors = save_figures(makers, Path(folder))
        for name in makers:
            if name in errors:
                get_logger().warning("plot %s skipped: %s", name, errors[name])
                continue
            try:
                client.log_artifact(run_id, str(Path(folder) / name), "plots")
            except Exception as error:  # a plot is not worth failing a finished study (a 503, a quota)
                get_logger().warning("plot %s not logged: %s: %s", name, type(error).__name__, error)


def _ms(moment: object) -> int:
    return int(moment.timestamp() * 1000) if moment is not None else 0  # type: ignore[attr-defined]
