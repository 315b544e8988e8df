"""The training job end to end in a temporary MLflow store, and every way it can fail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml

from tests.conftest import CONFS, write_config
from trainyard.cli import main
from trainyard.config import load_settings
from trainyard.core.models import SklearnModel
from trainyard.jobs.training import TrainingJob
from trainyard.records import CONFIG_HASH_TAG, ERROR_TAG

QUICKSTART = str(CONFS / "quickstart.yaml")


def only_run(tracking_uri: str, experiment: str = "quickstart") -> mlflow.entities.Run:
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_quickstart_end_to_end(workdir: Path, tracking_uri: str) -> None:
    job = load_settings([QUICKSTART]).job
    assert isinstance(job, TrainingJob)
    with job:
        result = job.run()
    run = only_run(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    assert run.info.status == "FINISHED" and run.info.run_id == result["run"].info.run_id
    # params: the flattened config and the split sizes
    assert run.data.params["model.estimator"] == "HistGradientBoostingRegressor"
    assert run.data.params["model.params.max_iter"] == "200"
    assert run.data.params["data.train_rows"] == "331" and run.data.params["data.test_rows"] == "111"
    # metrics: each configured metric and the fit time, matching what run() computed
    assert {"r2", "rmse", "mae", "fit_time"} <= set(run.data.metrics)
    assert (
        run.data.metrics["r2"] == pytest.approx(result["scores"]["r2"]) and 0.2 < run.data.metrics["r2"] < 0.7
    )
    # lineage: both datasets with source, digest, schema and row count
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"inputs", "targets"}
    assert "diabetes.csv" in inputs["inputs"].dataset.source
    assert json.loads(inputs["inputs"].dataset.profile)["num_rows"] == 442
    assert "bmi" in inputs["inputs"].dataset.schema and inputs["targets"].dataset.digest
    assert {tag.value for d in inputs.values() for tag in d.tags} == {"inputs", "targets"}
    # the resolved config and its hash
    config = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config.yaml"))
    assert config["job"]["model"]["params"]["max_iter"] == 200 and config["job"]["KIND"] == "training"
    assert len(run.data.tags[CONFIG_HASH_TAG]) == 64
    # the model: signature, input example, pinned requirements, loads back and predicts
    model_uri = result["model_info"].model_uri
    info = mlflow.models.get_model_info(model_uri)
    assert info.signature.inputs.input_names()[:3] == ["age", "sex", "bmi"]
    assert info.signature.outputs.input_names() == ["prediction"]
    requirements = Path(mlflow.pyfunc.get_model_dependencies(model_uri)).read_text()
    assert "scikit-learn==" in requirements and "pandas==" in requirements
    predictions = mlflow.pyfunc.load_model(model_uri).predict(result["inputs_test"])
    assert len(predictions) == 111
    # the registered version and its alias
    version = client.get_model_version_by_alias("diabetes", "challenger")
    assert version.version == result["version"].version and version.run_id == run.info.run_id


def test_rerun_from_the_logged_config_reproduces_the_run(workdir: Path, tracking_uri: str) -> None:
    assert main(["run", QUICKSTART, "job.register=null"]) == 0
    first = only_run(tracking_uri)
    logged = mlflow.artifacts.download_artifacts(
        f"runs:/{first.info.run_id}/config.yaml", dst_path=str(workdir)
    )
    assert main(["run", logged, "job.mlflow.experiment=again"]) == 0
    second = only_run(tracking_uri, "again")
    assert second.data.metrics["r2"] == first.data.metrics["r2"]


def test_bad_data_fails_the_run_with_the_error_recorded(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", QUICKSTART, "job.schema.inputs.age.le=50"]) == 1
    run = only_run(tracking_uri)
    assert run.info.status == "FAILED"
    assert "column 'age'" in run.data.tags[ERROR_TAG]
    error_text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/error.txt")
    assert "DataValidationError" in error_text
    err = capsys.readouterr().err
    assert "inputs do not match their schema" in err and "Traceback" not in err
    assert "job failed" in err, "the failure alert went out"


def test_missing_data_file_names_the_field(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", QUICKSTART, "job.inputs.path=data/nothing.csv"]) == 1
    assert "job.inputs: file not found: 'data/nothing.csv'" in capsys.readouterr().err


def no_runs(tracking_uri: str) -> bool:
    client = mlflow.MlflowClient(tracking_uri)
    return not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_a_folder_as_data_path_is_refused_before_any_run(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "data" / "folder").mkdir()
    assert main(["run", QUICKSTART, "job.inputs.path=data/folder"]) == 1
    err = capsys.readouterr().err
    assert "job.inputs: 'data/folder' is a folder, expected a CSV file" in err and "Traceback" not in err
    assert no_runs(tracking_uri)


def test_an_empty_and_a_header_only_file_exit_alike_before_any_run(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "data" / "empty.csv").touch()
    (workdir / "data" / "header.csv").write_text("age,sex,bmi,bp,s1,s2,s3,s4,s5,s6,target\n")
    assert main(["run", QUICKSTART, "job.targets.path=data/empty.csv"]) == 1
    assert "job.targets: 'data/empty.csv' is empty (0 bytes)" in capsys.readouterr().err
    assert main(["run", QUICKSTART, "job.inputs.path=data/header.csv"]) == 1
    assert "job.inputs: 'data/header.csv' has no rows, only its columns: age, sex" in capsys.readouterr().err
    assert no_runs(tracking_uri)


def test_a_few_values_that_are_not_numbers_are_named_with_their_lines(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    data = pd.read_csv(workdir / "data" / "diabetes.csv").astype(object)
    data.loc[3, "s1"], data.loc[9, "s2"] = "abc", "?"  # columns without a schema
    data.to_csv(workdir / "data" / "odd.csv", index=False)
    assert main(["run", QUICKSTART, "job.inputs.path=data/odd.csv"]) == 1
    err = capsys.readouterr().err
    assert (
        "job.inputs: 'data/odd.csv' has values that are not numbers in columns of numbers:\n"
        "  - column 's1': line 5: 'abc'\n  - column 's2': line 11: '?'\n"
        "correct them, or empty the cells"
    ) in err
    assert "Traceback" not in err and "failed to fit" not in err


def test_a_text_column_not_listed_as_categorical_is_refused_with_the_fix(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    data = pd.read_csv(workdir / "data" / "diabetes.csv")
    data["city"] = ["Paris", "Lyon"] * (len(data) // 2)
    data.to_csv(workdir / "data" / "cities.csv", index=False)
    overrides = ["job.inputs.path=data/cities.csv", "~job.inputs.columns", "job.inputs.drop=[target]"]
    assert main(["run", QUICKSTART, *overrides]) == 2
    err = capsys.readouterr().err
    assert (
        "job.inputs: 'data/cities.csv' has text in column 'city', which the model takes as numbers: "
        "list them as categories (model.categorical: [sex, city]) or leave them out "
        "(job.inputs.drop: [target, city])"
    ) in err
    assert "Traceback" not in err
    assert main(["run", QUICKSTART, *overrides, "job.model.categorical=[sex,city]"]) == 0


def test_debug_shows_the_traceback(workdir: Path) -> None:
    with pytest.raises(Exception, match="file not found"):
        main(["run", QUICKSTART, "job.inputs.path=data/nothing.csv", "--debug"])


def test_config_errors_exit_2_without_traceback(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", QUICKSTART, "job.model.estimator=Nope"]) == 2
    err = capsys.readouterr().err
    assert "job.model.estimator = 'Nope'" in err and "Traceback" not in err


def test_ctrl_c_ends_the_run_killed(
    workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted_fit(self: SklearnModel, inputs: object, targets: object) -> SklearnModel:
        raise KeyboardInterrupt

    monkeypatch.setattr(SklearnModel, "fit", interrupted_fit)
    assert main(["run", QUICKSTART]) == 130
    run = only_run(tracking_uri)
    assert run.info.status == "KILLED" and "interrupted" in run.data.tags[ERROR_TAG]


def test_a_run_that_cannot_be_ended_after_ctrl_c_leaves_the_interruption_the_jobs_ending(
    workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store still locked when the run ends: the job says it was interrupted (130), not the store's
    error, and warns that the run stays open (a service's recovery ends it)."""
    import mlflow

    def interrupted_fit(self: SklearnModel, inputs: object, targets: object) -> SklearnModel:
        raise KeyboardInterrupt

    def locked(status: str = "FINISHED") -> None:
        mlflow.tracking.fluent._active_run_stack.get().clear()
        raise mlflow.exceptions.MlflowException("(sqlite3.OperationalError) database is locked")

    monkeypatch.setattr(SklearnModel, "fit", interrupted_fit)
    monkeypatch.setattr(mlflow, "end_run", locked)
    assert main(["run", QUICKSTART]) == 130
    assert (
        "could not be ended KILLED: (sqlite3.OperationalError) database is locked" in capsys.readouterr().err
    )
    assert only_run(tracking_uri).info.status == "RUNNING"


def test_sigterm_ends_the_run_killed(workdir: Path, tracking_uri: str) -> None:
    """A real process, terminated mid-fit, leaves its run KILLED (not RUNNING)."""
    slow = ["job.model.params.max_iter=100000", "job.model.params.early_stopping=false"]
    command = [sys.executable, "-m", "trainyard.cli", "run", QUICKSTART, *slow]
    process = subprocess.Popen(
        command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    client = mlflow.MlflowClient(tracking_uri)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        experiment = client.get_experiment_by_name("quickstart")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and "data.train_rows" in runs[0].data.params:
            break
        time.sleep(0.2)
    time.sleep(0.5)  # well inside the (minutes long) fit
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    run = only_run(tracking_uri)
    assert run.info.status == "KILLED" and "SIGTERM" in run.data.tags[ERROR_TAG]
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("signum", "recorded"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "interrupted (Ctrl-C)")]
)
def test_a_cancellation_that_library_code_swallowed_still_ends_the_run_killed(
    workdir: Path,
    tracking_uri: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    signum: int,
    recorded: str,
) -> None:
    """Compiled code can turn what a signal handler raises into an error of its own, without context:
    HistGradientBoosting did so for about 1 signal in 75 sent during its fit."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    def fit_hit_by_a_signal(self: object, *args: object, **kwargs: object) -> None:
        try:
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler runs (and raises) at once
        except KeyboardInterrupt:
            swallowed = "'T{=d:sum_gradients:d:sum_hessians:@I:count:}' is not a valid PEP 3118 buffer format"
            raise ValueError(swallowed) from None
        raise AssertionError("the job handles the signal")

    monkeypatch.setattr(HistGradientBoostingRegressor, "fit", fit_hit_by_a_signal)
    assert main(["run", QUICKSTART]) == 130
    run = only_run(tracking_uri)
    assert run.info.status == "KILLED" and recorded in run.data.tags[ERROR_TAG]
    err = capsys.readouterr().err
    assert "✗ fit stopped after" in err and "PEP 3118" not in err and "Traceback" not in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the job's handler is gone"


@pytest.mark.parametrize("window", [True, False], ids=["repeat window", "shield alone"])
def test_a_signal_repeated_while_the_run_ends_does_not_leave_it_running(
    workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch, window: bool
) -> None:
    """Linux hands a child its parent-death signal once per thread of the dying parent, so a job whose
    watcher is killed gets SIGTERM several times within milliseconds; one that lands while the run is
    being ended must not leave it RUNNING."""
    from mlflow import MlflowClient
    from sklearn.ensemble import HistGradientBoostingRegressor

    from trainyard.runtime import cancellation

    if not window:
        monkeypatch.setattr(cancellation, "REPEAT_SECONDS", 0.0)
    set_terminated = MlflowClient.set_terminated

    def fit_hit_by_a_signal(self: object, *args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises here
        raise AssertionError("the job handles the signal")

    def set_terminated_hit_again(self: MlflowClient, *args: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler runs here
        set_terminated(self, *args, **kwargs)

    monkeypatch.setattr(HistGradientBoostingRegressor, "fit", fit_hit_by_a_signal)
    monkeypatch.setattr(MlflowClient, "set_terminated", set_terminated_hit_again)
    assert main(["run", QUICKSTART]) == 130
    run = only_run(tracking_uri)
    assert run.info.status == "KILLED" and "SIGTERM" in run.data.tags[ERROR_TAG]


def test_dry_run_prints_the_resolved_config(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", QUICKSTART, "job.model.params.max_iter=7", "--dry-run"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["job"]["model"]["params"]["max_iter"] == 7
    assert printed["job"]["splitter"]["KIND"] == "train_test"
    assert not Path("mlruns").exists()


def test_classification_example(workdir: Path, tracking_uri: str) -> None:
    assert main(["run", str(CONFS / "classification.yaml")]) == 0
    run = only_run(tracking_uri, "breast-cancer")
    assert run.data.metrics["roc_auc"] > 0.95 and run.data.metrics["accuracy"] < 1.0


def test_library_warnings_are_lines_of_the_job_log(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(CONFS / "classification.yaml"), "job.model.params.max_iter=2"]) == 0
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "ConvergenceWarning" in line)
    assert line.startswith("WARNING  ConvergenceWarning (linear_model/_logistic.py:")
    assert "): lbfgs failed to converge" in line and "Increase the number of iterations" in line  # one line
    assert "warnings.warn(" not in err and "site-packages" not in err  # not Python's raw format


def test_the_logger_puts_back_what_showed_warnings_before_the_job() -> None:
    import warnings

    from trainyard.io.logging import LoggerService

    def host(*args: object) -> None:  # e.g. logging.captureWarnings(True), or a test runner's
        pass

    previous, warnings.showwarning = warnings.showwarning, host
    try:
        service = LoggerService()
        service.start()
        assert warnings.showwarning is not host
        service.start()  # started again: still the host's hook underneath
        service.stop()
        assert warnings.showwarning is host
        service.stop()
        assert warnings.showwarning is host
    finally:
        warnings.showwarning = previous


def test_cli_help_does_not_import_heavy_libraries() -> None:
    code = "import sys, trainyard.cli; trainyard.cli.build_parser(); print(sorted(sys.modules))"
    modules = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("mlflow", "sklearn", "pandas", "pandera", "optuna", "pydantic"):
        assert f"'{heavy}'" not in modules, heavy


def test_schema_command_prints_a_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "job" in schema["properties"] and "TrainingJob" in json.dumps(schema)


def test_no_run_is_left_running(workdir: Path, tracking_uri: str) -> None:
    main(["run", QUICKSTART, "job.schema.inputs.age.le=50"])  # fails in the run (a missing file: before)
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and all(run.info.status != "RUNNING" for run in runs)
    assert os.environ.get("MLFLOW_DISABLE_TELEMETRY") == "true"


def test_debug_flag_before_the_command(workdir: Path) -> None:
    with pytest.raises(Exception, match="file not found"):
        main(["--debug", "run", QUICKSTART, "job.inputs.path=data/nothing.csv"])


def test_odd_column_names_in_schema_do_not_break_params(workdir: Path, tracking_uri: str) -> None:
    frame = __import__("pandas").read_csv("data/diabetes.csv").rename(columns={"bmi": "bmi (kg/m²)"})
    frame.to_csv("data/odd.csv", index=False)
    config = """
job:
  KIND: training
  inputs: {KIND: csv, path: data/odd.csv, columns: [age, "bmi (kg/m²)"]}
  targets: {KIND: csv, path: data/odd.csv, columns: [target]}
  schema: {inputs: {"bmi (kg/m²)": {dtype: float, gt: 0}}}
  model: {KIND: sklearn, estimator: Ridge}
  metrics: [r2]
"""
    assert main(["run", write_config(workdir, config)]) == 0
    assert only_run(tracking_uri, "trainyard").info.status == "FINISHED"


def test_json_schema_accepts_the_example_configs() -> None:
    import jsonschema

    from trainyard.settings import json_schema

    for path in sorted(CONFS.rglob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text()), json_schema())


def test_a_kfold_splitter_is_refused_with_the_splitters_a_training_job_takes(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = Path(QUICKSTART).read_text()
    kfold = text.replace("{KIND: train_test, test_size: 0.25, seed: 7}", "{KIND: kfold, n_splits: 4}")
    assert kfold != text
    assert main(["run", write_config(workdir, kfold), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert (
        "job.splitter: kfold makes 4 folds, for a tuning job's cross-validation; a training job fits "
        "once on one split, and takes train_test or time_series: for the same share of rows held out, "
        "{KIND: train_test, test_size: 0.25}"
    ) in err


def test_two_target_columns_are_refused_with_the_fix(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model predicts one column: a targets file with two would fail after the fit, in pandas."""
    config = (CONFS / "quickstart.yaml").read_text().split("  schema:")[0] + (
        "  model: {KIND: sklearn, estimator: Ridge}\n  metrics: [r2]\n"
    )
    config = config.replace("columns: [target]", "columns: [target, bmi]").replace("bmi, bp", "bp")
    assert main(["run", write_config(workdir, config)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "the targets have 2 columns (target, bmi): a model fits one target column" in err
    assert "Traceback" not in err
