"""The inference job end to end: each way of naming the model, CSV and Parquet, chunked or not, kept
columns and probabilities; and every way it can fail, with no run left RUNNING and no output file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest

from tests.conftest import CONFS, write_config
from tests.trained import train_store, use_store
from trainyard.cli import main
from trainyard.records import ERROR_TAG

INFERENCE = str(CONFS / "inference.yaml")
OUTPUT = Path("predictions") / "diabetes.csv"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, empty_store: Path, example_data: Path) -> Path:
    return train_store(tmp_path_factory.mktemp("trained"), empty_store, example_data)


@pytest.fixture
def store(trained: Path, workdir: Path) -> str:
    """The working folder's store: a copy of the trained one."""
    return use_store(trained, workdir)


def all_runs(tracking_uri: str, experiment: str | None = "inference") -> list[mlflow.entities.Run]:
    """The runs of ``experiment`` (None: of every experiment)."""
    client = mlflow.MlflowClient(tracking_uri)
    experiments = client.search_experiments()
    ids = [e.experiment_id for e in experiments if experiment is None or e.name == experiment]
    return client.search_runs(ids) if ids else []


def only_run(tracking_uri: str) -> mlflow.entities.Run:
    runs = all_runs(tracking_uri)
    assert len(runs) == 1
    return runs[0]


def training_run_id(tracking_uri: str, name: str = "diabetes") -> str:
    return mlflow.MlflowClient(tracking_uri).get_model_version(name, "1").run_id


def expected_predictions(name: str = "diabetes") -> np.ndarray:
    model = mlflow.sklearn.load_model(f"models:/{name}/1")
    data = pd.read_csv(f"data/{'diabetes' if name == 'diabetes' else 'breast_cancer'}.csv")
    return model.predict(data.drop(columns=["target"]))


def failed_cleanly(workdir: Path, tracking_uri: str, output: Path = OUTPUT) -> bool:
    """No run left RUNNING and no output file (nor a partial one) anywhere in the working folder."""
    statuses = {run.info.status for run in all_runs(tracking_uri, None)}
    partial = [path for path in workdir.rglob("*.part")]
    return "RUNNING" not in statuses and not partial and not (workdir / output).exists()


# -- it works ---------------------------------------------------------------------------------------


def test_the_example_predicts_what_the_model_predicts_and_records_it(
    store: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", INFERENCE]) == 0
    written = pd.read_csv(OUTPUT)
    data = pd.read_csv("data/diabetes.csv")
    assert list(written.columns) == ["target", "prediction"]
    np.testing.assert_array_equal(written["prediction"], expected_predictions())
    np.testing.assert_array_equal(written["target"], data["target"])
    run = only_run(store)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model_uri"] == "models:/diabetes@challenger"
    assert params["model_loaded_uri"] == "models:/diabetes/1" and params["model_version"] == "1"
    assert params["model_run_id"] == training_run_id(store) and params["model_id"].startswith("m-")
    assert params["model.registered"] == "diabetes" and params["chunk_size"] == "100000"
    assert run.data.metrics["rows"] == 442 and run.data.metrics["chunks"] == 1
    assert run.data.metrics["rows_per_second"] > 0
    datasets = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert {tag.value for d in datasets.values() for tag in d.tags} == {"inference", "predictions"}
    assert datasets["inputs"].dataset.source.endswith('diabetes.csv"}')
    assert str(workdir / OUTPUT) in datasets["predictions"].dataset.source
    assert json.loads(datasets["predictions"].dataset.profile)["num_rows"] == 442
    assert "prediction" in datasets["predictions"].dataset.schema
    err = capsys.readouterr().err
    assert "✓ resolve model" in err and "diabetes version 1 (models:/diabetes@challenger)" in err
    assert "Inference finished" in err and "Traceback" not in err


WAYS = {
    "version": ["job.model.registered=diabetes", "job.model.version=1"],
    "run": ["job.model.run={run}"],
    "uri of a version": ["job.model.uri=models:/diabetes/1"],
    "uri of an alias": ["job.model.uri=models:/diabetes@challenger"],
    "uri of a run": ["job.model.uri=runs:/{run}/model"],
}


@pytest.mark.parametrize("way", WAYS)
def test_every_way_of_naming_the_model_predicts_alike(store: str, way: str) -> None:
    run_id = training_run_id(store)
    overrides = [item.format(run=run_id) for item in WAYS[way]]
    assert main(["run", INFERENCE, "~job.model", *overrides]) == 0
    np.testing.assert_array_equal(pd.read_csv(OUTPUT)["prediction"], expected_predictions())
    params = only_run(store).data.params
    assert params["model_run_id"] == run_id
    if way != "uri of a run":  # a run's files name no registered version
        assert params["model_version"] == "1" and params["model_name"] == "diabetes"


@pytest.mark.parametrize("inputs", ["csv", "parquet"])
@pytest.mark.parametrize("outputs", ["csv", "parquet"])
def test_chunked_predictions_equal_whole_ones_in_csv_and_parquet(
    store: str, workdir: Path, inputs: str, outputs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = "data/diabetes.csv"
    if inputs == "parquet":
        source = "data/diabetes.parquet"
        pd.read_csv("data/diabetes.csv").to_parquet(source, row_group_size=64)
    files = {}
    for chunk_size in (100_000, 100):
        path = f"predictions/{chunk_size}.{outputs}"
        common = [f"job.inputs={{KIND: {inputs}, path: {source}}}", f"job.chunk_size={chunk_size}"]
        assert main(["run", INFERENCE, *common, f"job.outputs={{KIND: {outputs}, path: {path}}}"]) == 0
        files[chunk_size] = path
    read = pd.read_csv if outputs == "csv" else pd.read_parquet
    whole, chunked = read(files[100_000]), read(files[100])
    pd.testing.assert_frame_equal(chunked, whole)
    np.testing.assert_array_equal(whole["prediction"], expected_predictions())
    err = capsys.readouterr().err
    assert "chunk 5: 442 rows" in err and "442 rows in 5 chunk(s)" in err
    assert sorted(run.data.metrics["chunks"] for run in all_runs(store)) == [1, 5]


def test_kept_columns_come_first_in_their_order(store: str, workdir: Path) -> None:
    data = pd.read_csv("data/diabetes.csv")
    data.insert(0, "patient", [f"p{i:03d}" for i in range(len(data))])
    data.to_csv("data/patients.csv", index=False)
    overrides = ["job.inputs.path=data/patients.csv", "job.keep_columns=[patient,age]", "job.chunk_size=50"]
    assert main(["run", INFERENCE, *overrides]) == 0
    written = pd.read_csv(OUTPUT)
    assert list(written.columns) == ["patient", "age", "prediction"]
    assert written["patient"].tolist() == data["patient"].tolist()
    np.testing.assert_array_equal(written["prediction"], expected_predictions())


def test_extra_columns_are_ignored_with_a_warning(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", INFERENCE, "job.keep_columns=[]"]) == 0
    assert list(pd.read_csv(OUTPUT).columns) == ["prediction"]
    err = capsys.readouterr().err
    assert "job.inputs: 'target' is not among the model's inputs: ignored" in err


def test_a_classifier_writes_each_class_probability(store: str) -> None:
    overrides = [
        "job.model.registered=breast-cancer",
        "job.inputs.path=data/breast_cancer.csv",
        "job.outputs.path=predictions/breast_cancer.csv",
        "job.probabilities=true",
        "job.chunk_size=200",
    ]
    assert main(["run", INFERENCE, *overrides]) == 0
    written = pd.read_csv("predictions/breast_cancer.csv")
    assert list(written.columns) == ["target", "prediction", "probability_0", "probability_1"]
    model = mlflow.sklearn.load_model("models:/breast-cancer/1")
    inputs = pd.read_csv("data/breast_cancer.csv").drop(columns=["target"])
    np.testing.assert_array_equal(written["prediction"], expected_predictions("breast-cancer"))
    np.testing.assert_allclose(written[["probability_0", "probability_1"]], model.predict_proba(inputs))


class Doubler(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """A pyfunc-only model without a signature: twice its first column."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return pd.DataFrame({"twice": model_input.iloc[:, 0] * 2})


def test_a_pyfunc_model_without_a_signature_gets_every_column_read(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    mlflow.set_experiment("pyfunc")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="doubler", python_model=Doubler(), pip_requirements=[])
    overrides = ["~job.model", f"job.model.uri={info.model_uri}", "job.inputs.columns=[bmi,target]"]
    assert main(["run", INFERENCE, *overrides]) == 0
    written = pd.read_csv(OUTPUT)
    data = pd.read_csv("data/diabetes.csv")
    assert list(written.columns) == ["target", "twice"]
    np.testing.assert_array_equal(written["twice"], data["bmi"] * 2)
    err = capsys.readouterr().err
    assert "python_function flavor, no named inputs in its signature" in err
    assert "has no signature with column names: the inputs are not checked" in err


# -- the model cannot be found ----------------------------------------------------------------------

MISSING_MODELS = {
    "registered model": (
        ["job.model.registered=diabets"],
        "job.model.registered: no registered model 'diabets' in the store sqlite:///{store}. "
        "Did you mean diabetes? Registered models: breast-cancer, diabetes",
    ),
    "alias": (
        ["job.model.alias=champion"],
        "job.model.alias: the registered model 'diabetes' has no alias 'champion'. "
        "Its aliases: challenger (version 1)",
    ),
    "version": (
        ["~job.model", "job.model.registered=diabetes", "job.model.version=7"],
        "job.model.version: the registered model 'diabetes' has no version 7. Its versions: 1",
    ),
    "run": (
        ["~job.model", "job.model.run=0123abcd"],
        "job.model.run: no run '0123abcd' in the store sqlite:///{store}",
    ),
    "logged model": (
        ["~job.model", "job.model.uri=models:/m-0123abcd"],
        "job.model.uri: no logged model 'models:/m-0123abcd' in the store",
    ),
    "version in a uri": (
        ["~job.model", "job.model.uri=models:/diabetes/4"],
        "job.model.uri: the registered model 'diabetes' has no version 4. Its versions: 1",
    ),
    "run in a uri": (
        ["~job.model", "job.model.uri=runs:/0123abcd/model"],
        "job.model.uri: no run '0123abcd' in the store",
    ),
}


@pytest.mark.parametrize("missing", MISSING_MODELS)
def test_a_model_that_is_not_there_is_named_with_what_is(
    store: str, workdir: Path, missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides, message = MISSING_MODELS[missing]
    assert main(["run", INFERENCE, *overrides]) == 1
    err = capsys.readouterr().err
    assert message.format(store=workdir / "mlflow.db") in err and "Traceback" not in err
    run = only_run(store)
    assert run.info.status == "FAILED" and run.data.tags[ERROR_TAG].startswith("job.model.")
    assert failed_cleanly(workdir, store)


def test_a_run_that_logged_no_model_is_named(
    store: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = mlflow.MlflowClient(store)
    experiment = client.create_experiment("notes", artifact_location=str(workdir / "notes"))
    empty = client.create_run(experiment).info.run_id
    client.set_terminated(empty)
    assert main(["run", INFERENCE, "~job.model", f"job.model.run={empty}"]) == 1
    err = capsys.readouterr().err
    assert f"job.model.run: run '{empty}' (experiment 'notes') logged no model" in err
    assert "{uri: runs:/RUN_ID/PATH}" in err and failed_cleanly(workdir, store)


# -- the data does not fit the model ----------------------------------------------------------------


def test_missing_columns_are_named_with_what_the_model_takes(
    store: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = ["job.inputs.columns=[age,sex,bmi,s1,s2,s3,s4,s5,target]"]
    assert main(["run", INFERENCE, *overrides]) == 1
    err = capsys.readouterr().err
    assert (
        "job.inputs: 'data/diabetes.csv' does not fit the inputs of the model diabetes version 1 "
        "(models:/diabetes@challenger):\n"
        "  - missing columns 'bp', 's6' (the model takes: age, sex, bmi, bp, s1, s2, s3, s4, s5, s6)"
    ) in err
    assert only_run(store).info.status == "FAILED" and failed_cleanly(workdir, store)


def test_mistyped_columns_are_named_with_the_expected_and_found_types(
    store: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pd.read_csv("data/diabetes.csv")
    data["bmi"] = data["bmi"].astype(object)
    data.loc[3, "bmi"] = "abc"
    data["sex"] = data["sex"].map({1.0: "f", 2.0: "m"})
    data.to_csv("data/odd.csv", index=False)
    assert main(["run", INFERENCE, "job.inputs.path=data/odd.csv"]) == 1
    err = capsys.readouterr().err
    assert (
        "  - column 'sex': expected double, found str (line 2: 'm' is not a number)\n"
        "  - column 'bmi': expected double, found str (line 5: 'abc' is not a number)"
    ) in err
    assert failed_cleanly(workdir, store)


def test_whole_numbers_in_a_chunk_of_a_column_of_decimals_are_taken_as_decimals(
    store: str, workdir: Path
) -> None:
    data = pd.read_csv("data/diabetes.csv")
    text = data.astype(object)
    text.loc[:99, "bmi"] = data.loc[:99, "bmi"].round().astype(int)  # the first chunk reads as int64
    data.loc[:99, "bmi"] = data.loc[:99, "bmi"].round()
    text.to_csv("data/whole.csv", index=False)
    assert main(["run", INFERENCE, "job.inputs.path=data/whole.csv", "job.chunk_size=100"]) == 0
    model = mlflow.sklearn.load_model("models:/diabetes/1")
    expected = model.predict(data.drop(columns=["target"]))
    np.testing.assert_array_equal(pd.read_csv(OUTPUT)["prediction"], expected)


def test_a_mistyped_column_in_a_later_chunk_leaves_no_output_file(
    store: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pd.read_csv("data/diabetes.csv")
    data["s1"] = data["s1"].astype(object)
    data.loc[300, "s1"] = "n/a?"
    data.to_csv("data/late.csv", index=False)
    assert main(["run", INFERENCE, "job.inputs.path=data/late.csv", "job.chunk_size=100"]) == 1
    err = capsys.readouterr().err
    assert "job.inputs: 'data/late.csv' (rows 301 to 400) does not fit the inputs" in err
    assert "column 's1': expected double, found str (line 302: 'n/a?' is not a number)" in err
    assert "chunk 3: 300 rows" in err, "three chunks were predicted before"
    assert failed_cleanly(workdir, store)


def test_probabilities_of_a_regressor_are_refused(
    store: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", INFERENCE, "job.probabilities=true"]) == 2
    err = capsys.readouterr().err
    assert (
        "job.probabilities: diabetes version 1 (models:/diabetes@challenger) predicts no probabilities "
        "(a Pipeline of the sklearn flavor): only a classifier with predict_proba does"
    ) in err
    assert failed_cleanly(workdir, store)


def test_a_kept_column_named_like_a_prediction_is_refused(
    store: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pd.read_csv("data/diabetes.csv").rename(columns={"target": "prediction"})
    data.to_csv("data/named.csv", index=False)
    overrides = ["job.inputs.path=data/named.csv", "job.keep_columns=[prediction]"]
    assert main(["run", INFERENCE, *overrides]) == 2
    assert "job.keep_columns: 'prediction' is also the name of a column of the predictions" in (
        capsys.readouterr().err
    )
    assert failed_cleanly(workdir, store)


# -- refused before any run -------------------------------------------------------------------------


def test_files_are_checked_before_any_run(
    store: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "predictions" / "diabetes.csv").mkdir(parents=True)
    assert main(["run", INFERENCE]) == 1
    assert "job.outputs: 'predictions/diabetes.csv' is a folder, expected a CSV file to write" in (
        capsys.readouterr().err
    )
    assert main(["run", INFERENCE, "job.keep_columns=[patient]"]) == 1
    assert "job.keep_columns: 'data/diabetes.csv' has no column 'patient'" in capsys.readouterr().err
    assert main(["run", INFERENCE, "job.inputs.path=data/none.csv"]) == 1
    assert "job.inputs: file not found: 'data/none.csv'" in capsys.readouterr().err
    assert main(["run", INFERENCE, "job.outputs.path=data/diabetes.csv"]) == 2
    assert "job.outputs.path: 'data/diabetes.csv' is the inputs' file" in capsys.readouterr().err
    assert all_runs(store) == []


def test_an_existing_output_is_kept_unless_overwrite(
    store: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "predictions").mkdir()
    (workdir / OUTPUT).write_text("old\n")
    assert main(["run", INFERENCE, "job.outputs.overwrite=false"]) == 1
    assert "job.outputs: 'predictions/diabetes.csv' exists and overwrite is false" in capsys.readouterr().err
    assert (workdir / OUTPUT).read_text() == "old\n" and all_runs(store) == []


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("{registered: diabetes, alias: challenger, version: 1}", "give one of alias or version"),
        ("{registered: diabetes}", "give one of alias or version with registered: 'diabetes'"),
        ("{run: abc, uri: models:/diabetes/1}", "name the model one way"),
        ("{alias: challenger}", "name the model one way"),
        ("{registered: diabetes, version: 0}", "greater than 0"),
    ],
)
def test_a_model_named_wrong_is_a_config_error(
    workdir: Path, model: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = Path(INFERENCE).read_text().replace("{registered: diabetes, alias: challenger}", model)
    assert main(["run", write_config(workdir, text), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "job.model" in err and message in err and "Traceback" not in err


def test_ctrl_c_while_predicting_ends_the_run_killed_without_output(
    store: str, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainyard.io.model_refs import LoadedModel

    calls = []

    def interrupted(self: LoadedModel, inputs: pd.DataFrame) -> pd.DataFrame:
        calls.append(len(inputs))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return pd.DataFrame({"prediction": np.zeros(len(inputs))}, index=inputs.index)

    monkeypatch.setattr(LoadedModel, "predict", interrupted)
    assert main(["run", INFERENCE, "job.chunk_size=100"]) == 130
    run = only_run(store)
    assert run.info.status == "KILLED" and "interrupted" in run.data.tags[ERROR_TAG]
    assert failed_cleanly(workdir, store)
