"""The results table (trials.csv): columns named after the metrics, one per fold, no Optuna internals."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest

from tests.conftest import write_config
from tests.jobs.test_tuning import RIDGE, runs_of, tuning
from trainyard.cli import main
from trainyard.tuning.results_table import results_table

PRUNED_AND_FAILED = (  # seed 1: complete, failed (lbfgs refuses Ridge's defaults) and pruned trials
    "{KIND: random, seed: 1, n_trials: 10, pruner: {KIND: median, n_startup_trials: 2}, "
    "space: {alpha: 'tag(log, interval(0.001, 1e7))', solver: [svd, lbfgs]}}"
)
FAILED = "{KIND: grid, space: {alpha: [0.1, 10.0], solver: [svd, lbfgs]}}"
LAST = ["start", "end", "duration_s", "worker", "error"]


def ridge(workdir: Path, searcher: str) -> str:
    """A tuning config of Ridge, 3 folds, with this searcher."""
    return write_config(workdir, Path(tuning(workdir, searcher)).read_text().replace(*RIDGE))


def trials_csv(tracking_uri: str, run_id: str, folder: Path) -> pd.DataFrame:
    """The parent run's trials.csv, read as anyone would: plain ``pd.read_csv``."""
    path = mlflow.MlflowClient(tracking_uri).download_artifacts(run_id, "trials.csv", str(folder))
    table = pd.read_csv(path)
    assert table["trial"].dtype == np.int64 and table["fit_time_s"].dtype == np.float64
    internals = [c for c in table.columns if c.startswith(("system_attrs", "user_attrs", "params_", "value"))]
    assert not internals, "no Optuna column names, no system attrs"
    return table


def check_against_children(table: pd.DataFrame, tracking_uri: str, metrics: list[str]) -> None:
    """Every row holds its child run's fold scores, mean (the objective value), std, times and state."""
    parent, children = runs_of(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    assert sorted(int(c.data.tags["trainyard.trial"]) for c in children) == table["trial"].tolist()
    rows = table.set_index("trial")
    for child in children:
        row = rows.loc[int(child.data.tags["trainyard.trial"])]
        assert row["state"] == child.data.tags["trainyard.state"]
        start = pd.Timestamp(child.info.start_time, unit="ms", tz="UTC")
        assert row["start"] == start.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert row["duration_s"] == pytest.approx(float(child.data.tags["trainyard.duration_s"]), abs=0.002)
        assert row["fit_time_s"] == pytest.approx(child.data.metrics["fit_time"])
        assert isinstance(row["worker"], str) and row["worker"]
        for metric in metrics:
            history = client.get_metric_history(child.info.run_id, f"{metric}_fold")
            scores = [m.value for m in sorted(history, key=lambda m: m.step)]
            folds = [c for c in table.columns if c.startswith(f"{metric}_fold_")]
            assert [row[c] for c in folds[: len(scores)]] == pytest.approx(scores)
            assert all(math.isnan(row[c]) for c in folds[len(scores) :]), "empty past the trial's last fold"
            if scores:
                assert row[f"{metric}_std"] == pytest.approx(child.data.metrics[f"{metric}_std"])
            if row["state"] == "FAIL":
                assert math.isnan(row[metric])
            else:  # the objective value is the folds' mean (a pruned trial's: of its folds)
                assert row[metric] == pytest.approx(child.data.metrics[f"{metric}_mean"])
    complete = table[table["state"] == "COMPLETE"]
    for metric in metrics:  # lower is better for both; with two, one complete trial dominates here
        assert parent.data.metrics[f"best_{metric}"] == pytest.approx(complete[metric].min())


def test_one_metric_with_failed_and_pruned_trials(workdir: Path, tracking_uri: str) -> None:
    assert main(["run", ridge(workdir, PRUNED_AND_FAILED)]) == 0
    parent, _ = runs_of(tracking_uri)
    table = trials_csv(tracking_uri, parent.info.run_id, workdir / "out")
    assert list(table.columns) == [
        "trial",
        "state",
        "rmse",
        "rmse_std",
        "rmse_fold_0",
        "rmse_fold_1",
        "rmse_fold_2",
        "fit_time_s",
        "param_alpha",
        "param_solver",
        *LAST,
    ]
    assert table["trial"].tolist() == list(range(10))
    assert {"COMPLETE", "PRUNED", "FAIL"} <= set(table["state"])
    failed = table["state"] == "FAIL"
    assert table.loc[failed, "error"].str.contains("failed to fit").all()
    assert table.loc[~failed, "error"].isna().all()
    assert set(table.loc[failed, "param_solver"]) == {"lbfgs"}
    pruned = table[table["state"] == "PRUNED"]
    assert pruned["rmse_fold_2"].isna().any(), "a pruned trial has fewer folds"
    check_against_children(table, tracking_uri, ["rmse"])


def test_two_metrics_are_named_after_them(workdir: Path, tracking_uri: str) -> None:
    assert main(["run", ridge(workdir, FAILED), "job.metrics=[rmse, mae]"]) == 0
    parent, _ = runs_of(tracking_uri)
    table = trials_csv(tracking_uri, parent.info.run_id, workdir / "out")
    folds = ["fold_0", "fold_1", "fold_2"]
    assert list(table.columns) == [
        "trial",
        "state",
        "rmse",
        "mae",
        "rmse_std",
        *(f"rmse_{f}" for f in folds),
        "mae_std",
        *(f"mae_{f}" for f in folds),
        "fit_time_s",
        "param_alpha",
        "param_solver",
        *LAST,
    ]
    assert sorted(table["state"]) == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]
    check_against_children(table, tracking_uri, ["rmse", "mae"])


def test_the_table_of_an_in_memory_study() -> None:
    """Every state, a conditional parameter, an integer beside empty cells, user and system attrs."""
    study = optuna.create_study(directions=["minimize", "maximize"])
    kind = optuna.distributions.CategoricalDistribution(["tree", "lin"])
    depth = optuna.distributions.IntDistribution(1, 9)
    complete = optuna.trial.create_trial(
        values=[3.0, 0.6],
        params={"depth": 3, "kind": "tree"},
        distributions={"depth": depth, "kind": kind},
        user_attrs={
            "folds": {"scores": {"rmse": [2.0, 4.0], "r2": [0.5, 0.7]}, "fit_time": 0.25},
            "trainyard.worker": "host:1:2",
            "note": {"a": [1, 2]},
            "tag": "x",
        },
        system_attrs={"NSGAIISampler:generation": 0, "tpe:relative_params": ["depth"]},
    )
    start = datetime(2025, 6, 1, 9, 30, 0, 123456)  # Optuna's local, naive time
    complete.datetime_start, complete.datetime_complete = start, start + timedelta(seconds=1.5)
    study.add_trial(complete)
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL,
            params={"kind": "lin", "c": 0.5},
            distributions={"kind": kind, "c": optuna.distributions.FloatDistribution(0.0, 1.0)},
            user_attrs={
                "folds": {"scores": {"rmse": [], "r2": []}, "fit_time": 0.0},
                "error": "ValueError: no",
            },
        )
    )
    study.enqueue_trial({"depth": 4})
    study.ask({"depth": depth})  # takes the enqueued trial: RUNNING
    study.enqueue_trial({"depth": 6})  # WAITING

    table = results_table(list(reversed(study.get_trials(deepcopy=False))), ["rmse", "r2"])

    assert list(table.columns) == [
        "trial",
        "state",
        "rmse",
        "r2",
        "rmse_std",
        "rmse_fold_0",
        "rmse_fold_1",
        "r2_std",
        "r2_fold_0",
        "r2_fold_1",
        "fit_time_s",
        "param_depth",
        "param_kind",
        "param_c",
        *LAST,
        "attr_note",
        "attr_tag",
    ]
    assert table["trial"].tolist() == [0, 1, 2, 3], "by number"
    assert table["state"].tolist() == ["COMPLETE", "FAIL", "RUNNING", "WAITING"]
    first, failed, running, waiting = (table.iloc[i] for i in range(4))
    assert (first["rmse"], first["r2"], first["rmse_std"], first["fit_time_s"]) == (3.0, 0.6, 1.0, 0.25)
    assert first["r2_std"] == pytest.approx(np.std([0.5, 0.7]))
    assert first["start"] == start.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert pd.Timestamp(first["end"]) - pd.Timestamp(first["start"]) == pd.Timedelta(seconds=1.5)
    assert first["duration_s"] == 1.5 and first["worker"] == "host:1:2"
    assert first["attr_note"] == '{"a": [1, 2]}' and first["attr_tag"] == "x", "JSON, not a Python repr"
    assert failed["error"] == "ValueError: no" and failed["param_kind"] == "lin"
    assert math.isnan(failed["rmse"]) and math.isnan(failed["rmse_std"]) and math.isnan(failed["rmse_fold_0"])
    assert failed["param_c"] == 0.5 and pd.isna(first["param_c"]), "a conditional parameter is missing"
    assert running["param_depth"] == 4 and pd.isna(running["end"]) and math.isnan(running["duration_s"])
    assert pd.isna(waiting["start"]) and pd.isna(waiting["param_depth"]), "enqueued, not yet given"

    text = table.to_csv(index=False)
    assert text.splitlines()[1].startswith("0,COMPLETE,3.0,0.6,1.0,2.0,4.0,")
    assert ",3,tree,," in text, "an integer parameter with empty cells is written as an integer"
    written = pd.read_csv(io.StringIO(text))
    assert written["param_depth"].tolist()[:1] == [3]
    assert not [c for c in written.columns if "system_attrs" in c or "user_attrs" in c or "NSGA" in c]


def test_an_empty_study_has_a_header() -> None:
    table = results_table([], ["rmse"])
    assert list(table.columns) == ["trial", "state", "rmse", "rmse_std", "fit_time_s", *LAST]
    assert table.empty
