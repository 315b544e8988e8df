"""Model references: each way of naming a model resolves to one model and loads it; each way of naming
one that is not there says what is."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression, Ridge

from trainyard.errors import ModelRegistryError, ResourceNotFoundError
from trainyard.io.model_refs import LoadedModel, ModelRef, ResolvedModel
from trainyard.records import CHECKPOINT_EPOCH_TAG


class Doubler(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """A pyfunc-only model (no sklearn flavor) without a signature."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return pd.DataFrame({"twice": model_input.iloc[:, 0] * 2})


@dataclass
class Store:
    uri: str
    runs: dict[str, str]  # what the run holds -> run id
    model_ids: dict[str, str]  # which model -> logged model id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> Iterator[Store]:
    """diabetes v1 (linear, run 'first'), v2 (ridge, run 'second', @champion), a pyfunc model, a run
    with two models, a run with none; and 'unaliased', a registered model without aliases."""
    import shutil

    folder = tmp_path_factory.mktemp("refs")
    shutil.copy(empty_store, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        mlflow.set_experiment("refs")
        client = mlflow.MlflowClient()
        data = load_diabetes(as_frame=True, scaled=False)
        inputs, target = data.data, data.target
        signature = mlflow.models.infer_signature(inputs, target.to_numpy())
        runs, ids = {}, {}
        for key, estimator in (("first", LinearRegression()), ("second", Ridge())):
            with mlflow.start_run() as run:
                info = mlflow.sklearn.log_model(
                    estimator.fit(inputs, target), name="model", signature=signature, pip_requirements=[]
                )
            runs[key], ids[key] = run.info.run_id, info.model_id
            mlflow.register_model(info.model_uri, "diabetes")
        client.set_registered_model_alias("diabetes", "champion", "2")
        with mlflow.start_run() as run:
            info = mlflow.pyfunc.log_model(name="doubler", python_model=Doubler(), pip_requirements=[])
        runs["pyfunc"], ids["pyfunc"] = run.info.run_id, info.model_id
        mlflow.register_model(info.model_uri, "unaliased")
        with mlflow.start_run() as run:
            for name in ("a", "b"):
                mlflow.sklearn.log_model(
                    LinearRegression().fit(inputs, target), name=name, pip_requirements=[]
                )
        runs["two models"] = run.info.run_id
        for key, final in (("epochs", True), ("only checkpoints", False)):  # as a run trained in epochs
            with mlflow.start_run() as run:
                for epoch in (1, 2):
                    mlflow.sklearn.log_model(
                        Ridge(alpha=epoch).fit(inputs, target),
                        name="checkpoint",
                        step=epoch,
                        tags={CHECKPOINT_EPOCH_TAG: str(epoch)},
                        pip_requirements=[],
                    )
                if final:
                    info = mlflow.sklearn.log_model(
                        Ridge(alpha=2).fit(inputs, target), name="model", pip_requirements=[]
                    )
                    ids[key] = info.model_id
            runs[key] = run.info.run_id
        with mlflow.start_run() as run:
            mlflow.log_param("nothing", "logged")
        runs["no model"] = run.info.run_id
    finally:
        os.chdir(cwd)
    yield Store(uri, runs, ids)


@pytest.fixture(autouse=True)
def current(store: Store) -> None:
    mlflow.set_tracking_uri(store.uri)
    mlflow.set_registry_uri(store.uri)


def ref(**fields: Any) -> ModelRef:
    return ModelRef.model_validate(fields)


def test_an_alias_resolves_to_its_version_pinned(store: Store) -> None:
    resolved = ref(registered="diabetes", alias="champion").resolve()
    assert resolved == ResolvedModel(
        uri="models:/diabetes@champion",
        load_uri="models:/diabetes/2",
        field="job.model",
        name="diabetes",
        version="2",
        run_id=store.runs["second"],
        model_id=store.model_ids["second"],
    )
    assert resolved.describe() == "diabetes version 2 (models:/diabetes@champion)"
    assert resolved.params() == {
        "model_uri": "models:/diabetes@champion",
        "model_loaded_uri": "models:/diabetes/2",
        "model_name": "diabetes",
        "model_version": "2",
        "model_run_id": store.runs["second"],
        "model_id": store.model_ids["second"],
    }


def test_a_version_a_run_and_uris_resolve_to_the_same_model(store: Store) -> None:
    by_version = ref(registered="diabetes", version=1).resolve()
    assert by_version.load_uri == "models:/diabetes/1" and by_version.describe() == "diabetes version 1"
    by_run = ref(run=store.runs["first"]).resolve()
    assert by_run.load_uri == f"models:/{store.model_ids['first']}"
    assert (by_run.name, by_run.version, by_run.run_id) == ("diabetes", "1", store.runs["first"])
    for uri in ("models:/diabetes/1", f"models:/{store.model_ids['first']}"):
        resolved = ref(uri=uri).resolve()
        assert (resolved.uri, resolved.version, resolved.run_id) == (uri, "1", store.runs["first"])
    from_files = ref(uri=f"runs:/{store.runs['first']}/model").resolve()
    assert from_files.run_id == store.runs["first"] and from_files.load_uri.startswith("runs:/")


def test_loading_gives_the_sklearn_object_and_its_signature(store: Store) -> None:
    loaded = ref(registered="diabetes", version=1).resolve().load()
    assert loaded.flavor == "sklearn" and isinstance(loaded.model, LinearRegression)
    assert loaded.input_schema is not None and loaded.input_schema.input_names()[:2] == ["age", "sex"]
    assert loaded.classes is None
    inputs = load_diabetes(as_frame=True, scaled=False).data.iloc[10:15]
    predicted = loaded.predict(inputs)
    assert list(predicted.columns) == ["prediction"] and predicted.index.equals(inputs.index)
    np.testing.assert_array_equal(predicted["prediction"], loaded.model.predict(inputs))
    with pytest.raises(ModelRegistryError, match="predicts no probabilities"):
        loaded.predict_proba(inputs)


def test_a_model_without_the_sklearn_flavor_loads_as_pyfunc(store: Store) -> None:
    loaded = ref(registered="unaliased", version=1).resolve().load()
    assert loaded.flavor == "python_function" and loaded.signature is None and loaded.input_schema is None
    predicted = loaded.predict(pd.DataFrame({"x": [1.0, 2.5]}, index=[7, 8]))
    assert predicted.to_dict() == {"twice": {7: 2.0, 8: 5.0}}


class _Fixed:
    """A stand-in model whose predictions are given."""

    def __init__(self, predicted: Any) -> None:
        self.predicted = predicted

    def predict(self, inputs: pd.DataFrame) -> Any:
        return self.predicted


@pytest.mark.parametrize(
    ("predicted", "columns"),
    [
        (np.array([1, 2]), ["prediction"]),
        (np.array([[1, 2, 3], [4, 5, 6]]), ["prediction_0", "prediction_1", "prediction_2"]),
        (pd.Series([1, 2], name="label"), ["label"]),
        ([0.5, 0.25], ["prediction"]),
    ],
)
def test_predictions_are_a_table_indexed_like_the_inputs(predicted: Any, columns: list[str]) -> None:
    resolved = ResolvedModel("models:/x/1", "models:/x/1")
    loaded = LoadedModel(resolved, _Fixed(predicted), "sklearn", None)
    table = loaded.predict(pd.DataFrame({"a": [0, 0]}, index=[5, 6]))
    assert list(table.columns) == columns and table.index.tolist() == [5, 6]


NOT_THERE = {
    "a registered model": (
        {"registered": "diabets", "alias": "champion"},
        "job.model.registered: no registered model 'diabets' in the store sqlite:///.*mlflow.db. "
        "Did you mean diabetes\\? Registered models: diabetes, unaliased$",
    ),
    "an alias": (
        {"registered": "diabetes", "alias": "champio"},
        "job.model.alias: the registered model 'diabetes' has no alias 'champio'. Did you mean champion\\? "
        "Its aliases: champion \\(version 2\\)$",
    ),
    "an alias of a model without": (
        {"registered": "unaliased", "alias": "champion"},
        "has no alias 'champion'. It has no aliases: name a version instead",
    ),
    "a version": (
        {"registered": "diabetes", "version": 9},
        "job.model.version: the registered model 'diabetes' has no version 9. Its versions: 1, 2$",
    ),
    "a run": ({"run": "feedbeef"}, "job.model.run: no run 'feedbeef' in the store sqlite:///"),
    "a logged model": ({"uri": "models:/m-feedbeef"}, "job.model.uri: no logged model 'models:/m-feedbeef'"),
    "a registered model in a uri": (
        {"uri": "models:/diabets@champion"},
        "job.model.uri: no registered model 'diabets'.*Did you mean diabetes",
    ),
    "a model in a run's files": (
        {"uri": "runs:/{no model}/model"},
        "job.model.uri: no MLflow model at 'runs:/.*/model'",
    ),
    "a path": ({"uri": "/nowhere/model"}, "job.model.uri: no MLflow model at '/nowhere/model'"),
}


@pytest.mark.parametrize("what", NOT_THERE)
def test_a_model_that_is_not_there_is_named_with_what_is(store: Store, what: str) -> None:
    fields, message = NOT_THERE[what]
    fields = {key: str(value).replace("{no model}", store.runs["no model"]) for key, value in fields.items()}
    with pytest.raises(ResourceNotFoundError, match=message):
        ref(**fields).resolve()


def test_a_run_without_a_model_or_with_two_is_named(store: Store) -> None:
    empty = store.runs["no model"]
    with pytest.raises(
        ResourceNotFoundError, match=f"job.model.run: run '{empty}' .experiment 'refs'. logged no model"
    ):
        ref(run=empty).resolve()
    with pytest.raises(
        ResourceNotFoundError, match=r"logged 2 models: (a|b) \(models:/m-.*name one by its URI"
    ):
        ref(run=store.runs["two models"]).resolve()


def test_a_run_trained_in_epochs_names_its_model_not_a_checkpoint(store: Store) -> None:
    resolved = ref(run=store.runs["epochs"]).resolve()
    assert resolved.model_id == store.model_ids["epochs"]
    unfinished = store.runs["only checkpoints"]
    with pytest.raises(
        ResourceNotFoundError,
        match=rf"job.model.run: run '{unfinished}' logged only checkpoints \(epochs 1, 2\): it did not "
        rf"finish its epochs; resume it \(resume: {unfinished}\), or name a checkpoint by its URI, "
        r"e.g. the newest: \{uri: models:/m-",
    ):
        ref(run=unfinished).resolve()


def test_messages_name_the_field_they_are_given(store: Store) -> None:
    with pytest.raises(ResourceNotFoundError, match=r"^job\.baseline\.version: "):
        ref(registered="diabetes", version=9).resolve("job.baseline")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "name the model one way"),
        ({"run": "a", "uri": "models:/b/1"}, r"name the model one way.*\(given: run, uri\)"),
        ({"registered": "d"}, "give one of alias or version with registered: 'd'"),
        ({"registered": "d", "alias": "a", "version": 1}, "give one of alias or version"),
        ({"run": "a", "alias": "champion"}, "alias and version choose a version of a registered model"),
        ({"uri": "models:/d/1", "stage": "Production"}, "Extra inputs are not permitted"),
    ],
)
def test_a_reference_names_a_model_one_way(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelRef.model_validate(fields)
