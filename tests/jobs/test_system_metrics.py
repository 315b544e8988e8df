"""job.system_metrics: MLflow's CPU and memory samples on a training run or a tuning job's parent
run, only when asked."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest

from tests.jobs.test_iterative import config, runs
from tests.jobs.test_tuning import runs_of, tuning
from trainyard.cli import main


def test_system_metrics_are_sampled_into_the_run_when_switched_on(workdir: Path, tracking_uri: str) -> None:
    assert main(["run", config(workdir, "{count: 3}"), "job.system_metrics=0.1"]) == 0
    (run,) = runs(tracking_uri)
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
        run.data.metrics
    )
    samples = mlflow.MlflowClient(tracking_uri).get_metric_history(
        run.info.run_id, "system/cpu_utilization_percentage"
    )
    assert [m.step for m in samples] == list(range(len(samples))), "one step a sample"
    assert "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL" not in os.environ, "set for the run's start only"


def test_a_tuning_job_samples_system_metrics_into_its_parent_run(workdir: Path, tracking_uri: str) -> None:
    """From the moment its writer process has opened the parent run, for a search of seconds."""
    searcher = (
        "{KIND: random, seed: 0, n_trials: 30, space: {learning_rate: 'tag(log, interval(0.01, 0.3))'}}"
    )
    model = "job.model={KIND: sklearn, estimator: HistGradientBoostingRegressor, params: {max_iter: 100}}"
    assert main(["run", tuning(workdir, searcher), model, "job.system_metrics=0.05"]) == 0
    parent, children = runs_of(tracking_uri)
    assert "system/cpu_utilization_percentage" in parent.data.metrics
    assert children and not [k for c in children for k in c.data.metrics if k.startswith("system/")]
    samples = mlflow.MlflowClient(tracking_uri).get_metric_history(
        parent.info.run_id, "system/cpu_utilization_percentage"
    )
    assert len(samples) > 1 and [m.step for m in samples] == list(range(len(samples)))


def test_system_metrics_are_off_by_default(workdir: Path, tracking_uri: str) -> None:
    assert main(["run", config(workdir, "{count: 3}")]) == 0
    (run,) = runs(tracking_uri)
    assert not [key for key in run.data.metrics if key.startswith("system/")]


@pytest.mark.parametrize("value", ["0", "-1", "often"])
def test_a_bad_system_metrics_interval_is_refused(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    assert main(["run", config(workdir, "{count: 3}"), f"job.system_metrics={value}"]) == 2
    err = capsys.readouterr().err
    assert "job.system_metrics = " in err and "expected true, false, or the seconds" in err, err
    assert "Traceback" not in err and err.count("problem") == 1
