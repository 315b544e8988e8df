"""job.system_metrics: MLflow's CPU and memory samples on a training run, only when asked."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest

from tests.jobs.test_iterative import config, runs
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
