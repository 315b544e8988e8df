"""A model named in a config, four ways, resolved through MLflow to one model and loaded to predict.

``ModelRef`` is the config component (``job.model`` of an inference job; any job that uses a model it
did not train takes one): a registered model by alias or version, the model a run logged, or any
MLflow model URI. ``resolve()`` asks the tracking store (MLflow must be pointed at it) which model
that is, as a ``ResolvedModel`` (the URI to load, pinned to a version, its run and version), and
raises ``ResourceNotFoundError`` naming the field and what does exist when it is not there.
``ResolvedModel.load()`` gives a ``LoadedModel``: the model ready to predict (the scikit-learn object
itself when the model has that flavor, else MLflow's pyfunc) and its signature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from trainyard.core.component import Component
from trainyard.core.models import PREDICTION
from trainyard.errors import ModelRegistryError, ResourceNotFoundError, did_you_mean
from trainyard.io.sources import without_credentials
from trainyard.records import CHECKPOINT_EPOCH_TAG

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModel, Run
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel
    from mlflow.models.signature import ModelSignature
    from mlflow.types import Schema

PROBABILITY_PREFIX = "probability_"  # the column of each class's probability: probability_<class>
SHOWN = 10  # names listed in a message, at most
_REGISTERED_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/]+))$")
_LOGGED_MODEL_URI = re.compile(r"^models:/(?P<model_id>m-[0-9a-f]+)$")
_RUN_URI = re.compile(r"^runs:/(?P<run_id>[^/]+)/.+$")


class ModelRef(Component):
    """A model to use, named one way: `{registered: NAME, alias: ALIAS}`, `{registered: NAME,
    version: N}`, `{run: RUN_ID}` (the model that run logged) or `{uri: MODEL_URI}`."""

    registered: str | None = Field(
        None, min_length=1, description="A registered model's name; give alias or version with it."
    )
    alias: str | None = Field(None, min_length=1, description="The alias of the registered version.")
    version: int | None = Field(None, gt=0, description="The registered model's version number.")
    run: str | None = Field(None, min_length=1, description="A run id: the model that run logged.")
    uri: str | None = Field(
        None,
        min_length=1,
        description="Any MLflow model URI (models:/m-..., models:/NAME/3, runs:/ID/model).",
    )

    @model_validator(mode="after")
    def _one_way(self) -> ModelRef:
        given = [name for name in ("registered", "run", "uri") if getattr(self, name) is not None]
        if len(given) != 1:
            also = f" (given: {', '.join(given)})" if given else ""
            raise ValueError(
                "name the model one way: {registered: NAME, alias: ALIAS}, {registered: NAME, version: N}, "
                f"{{run: RUN_ID}} or {{uri: MODEL_URI}}{also}"
            )
        if self.registered is None and (self.alias is not None or self.version is not None):
            raise ValueError("alias and version choose a version of a registered model: give registered too")
        if self.registered is not None and (self.alias is None) == (self.version is None):
            raise ValueError(
                f"give one of alias or version with registered: {self.registered!r} "
                f"(e.g. {{registered: {self.registered}, alias: champion}})"
            )
        return self

    def resolve(self, field: str = "job.model") -> ResolvedModel:
        """Which model this names, asked of the current MLflow tracking and registry stores.

        ``field`` is the config path of this reference, for messages. Raises ResourceNotFoundError
        (the model, alias, version or run does not exist, or the run logged no model) and
        ModelRegistryError (the store cannot be asked).
        """
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient()
        try:
            if self.registered is not None:
                return _registered(client, self.registered, self.alias, self.version, field)
            if self.run is not None:
                return _run_model(client, self.run, field)
            assert self.uri is not None
            return _uri(client, self.uri, field)
        except MlflowException as error:
            raise ModelRegistryError(f"{field}: cannot look the model up: {error.message}") from error


@dataclass(frozen=True)
class ResolvedModel:
    """One model in the store: ``uri`` as it was named, ``load_uri`` pinned to what it named now
    (``models:/NAME/3`` for an alias), and what is known of it: registered name and version, run, id."""

    uri: str
    load_uri: str
    field: str = "job.model"
    name: str | None = None
    version: str | None = None
    run_id: str | None = None
    model_id: str | None = None

    def describe(self) -> str:
        """``diabetes version 3 (models:/diabetes@champion)``, or the URI and its run."""
        if self.name is not None and self.version is not None:
            shown = f"{self.name} version {self.version}"
            return shown if self.uri == self.load_uri else f"{shown} ({self.uri})"
        return self.uri + (f" (run {self.run_id})" if self.run_id else "")

    def params(self, prefix: str = "model_") -> dict[str, str]:
        """What to log as a run's params: ``model_uri``, ``model_version``, ``model_run_id``, ..."""
        values = {
            "uri": self.uri,
            "loaded_uri": self.load_uri,
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "id": self.model_id,
        }
        return {f"{prefix}{key}": value for key, value in values.items() if value is not None}

    def load(self) -> LoadedModel:
        """The model ready to predict, and its signature (ModelRegistryError if it cannot be loaded)."""
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            info = mlflow.models.get_model_info(self.load_uri)
            if "sklearn" in info.flavors:
                import mlflow.sklearn

                model, flavor = mlflow.sklearn.load_model(self.load_uri), "sklearn"
            elif "python_function" in info.flavors:
                model, flavor = mlflow.pyfunc.load_model(self.load_uri), "python_function"
            else:
                raise ModelRegistryError(
                    f"{self.field}: {self.load_uri} has no flavor Trainyard can predict with "
                    f"(sklearn or python_function); it has: {', '.join(info.flavors)}"
                )
        except (MlflowException, OSError) as error:
            raise ModelRegistryError(f"{self.field}: cannot load {self.load_uri}: {error}") from error
        return LoadedModel(self, model, flavor, info.signature)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to predict: the scikit-learn object (flavor ``sklearn``) or MLflow's pyfunc.

    Its predictions are a table indexed like its inputs: ``prediction`` for one output (or the
    signature's output names, else ``prediction_0``, ``prediction_1``... for several), and with
    ``predict_proba`` one ``probability_<class>`` column per class.
    """

    ref: ResolvedModel
    model: Any
    flavor: str
    signature: ModelSignature | None

    @property
    def input_schema(self) -> Schema | None:
        """The signature's inputs (None without a signature)."""
        return self.signature.inputs if self.signature is not None else None

    @property
    def classes(self) -> list[Any] | None:
        """The classes of a classifier that predicts probabilities (sklearn flavor); else None."""
        if self.flavor != "sklearn" or not hasattr(self.model, "predict_proba"):
            return None
        classes = getattr(self.model, "classes_", None)
        return None if classes is None else list(classes)

    def predict(self, inputs: pd.DataFrame) -> pd.DataFrame:
        """The model's predictions for ``inputs``, as a table indexed like it."""
        return self._table(self.model.predict(inputs), inputs.index)

    def predict_proba(self, inputs: pd.DataFrame) -> pd.DataFrame:
        """One ``probability_<class>`` column per class (classifiers with ``predict_proba`` only)."""
        import pandas as pd

        classes = self.classes
        if classes is None:
            raise ModelRegistryError(f"{self.ref.field}: {self.ref.describe()} predicts no probabilities")
        columns = [f"{PROBABILITY_PREFIX}{label}" for label in classes]
        return pd.DataFrame(self.model.predict_proba(inputs), columns=columns, index=inputs.index)

    def _table(self, predicted: Any, index: pd.Index) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        if isinstance(predicted, pd.DataFrame):
            return predicted.set_axis(index, axis=0)
        if isinstance(predicted, pd.Series):
            return pd.DataFrame({predicted.name or PREDICTION: predicted.to_numpy()}, index=index)
        values = np.asarray(predicted)
        if values.ndim <= 1:
            return pd.DataFrame({PREDICTION: values.reshape(-1)}, index=index)
        outputs = self.signature.outputs if self.signature is not None else None
        names = outputs.input_names() if outputs is not None and outputs.has_input_names() else []
        if len(names) != values.shape[1]:
            names = [f"{PREDICTION}_{i}" for i in range(values.shape[1])]
        return pd.DataFrame(values, columns=[str(name) for name in names], index=index)


def _registered(
    client: MlflowClient,
    name: str,
    alias: str | None,
    version: int | str | None,
    field: str,
    uri: str | None = None,
) -> ResolvedModel:
    """A registered model's version, by alias or number; the messages name ``field``'s keys (or the
    URI's parts when ``uri`` is given)."""

    def where(key: str) -> str:
        return f"{field}.uri" if uri is not None else f"{field}.{key}"

    model = _registered_model(client, name, where("registered"))
    if alias is not None:
        aliases = dict(model.aliases or {})
        if alias not in aliases:
            have = (
                f"Its aliases: {', '.join(f'{a} (version {v})' for a, v in sorted(aliases.items()))}"
                if aliases
                else "It has no aliases: name a version instead, or set an alias when registering"
            )
            raise ResourceNotFoundError(
                f"{where('alias')}: the registered model {name!r} has no alias {alias!r}."
                f"{did_you_mean(alias, list(aliases))} {have}"
            )
        version = aliases[alias]
    found = _version(client, name, str(version), where("version"))
    asked = uri or (f"models:/{name}@{alias}" if alias is not None else f"models:/{name}/{version}")
    return ResolvedModel(
        uri=asked,
        load_uri=f"models:/{name}/{found.version}",
        field=field,
        name=name,
        version=str(found.version),
        run_id=found.run_id or None,
        model_id=found.model_id or _model_id(found.source),
    )


def _registered_model(client: MlflowClient, name: str, where: str) -> RegisteredModel:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    names = _registered_names(client)
    listed = ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")
    have = f"Registered models: {listed}" if names else "It has no registered models yet"
    raise ResourceNotFoundError(
        f"{where}: no registered model {name!r} in {_store()}.{did_you_mean(name, names)} {have}"
    ) from None


def _registered_names(client: MlflowClient) -> list[str]:
    names: list[str] = []
    token = None
    while True:
        page = client.search_registered_models(max_results=1000, page_token=token)
        names += [model.name for model in page]
        token = page.token
        if not token:
            return sorted(names)


def _version(client: MlflowClient, name: str, version: str, where: str) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    have = f"Its versions: {', '.join(map(str, versions))}" if versions else "It has no versions"
    raise ResourceNotFoundError(
        f"{where}: the registered model {name!r} has no version {version}. {have}"
    ) from None


def _run_model(client: MlflowClient, run_id: str, field: str, where: str | None = None) -> ResolvedModel:
    """The model a run logged (MLflow 3 logged models), with its registered version if it has one."""
    from mlflow.exceptions import MlflowException

    where = where or f"{field}.run"
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ResourceNotFoundError(f"{where}: no run {run_id!r} in {_store()}") from None
    logged = model_of_run(client, run, where)
    name, version = _registered_version(client, logged.model_id, run.info.run_id)
    return ResolvedModel(
        uri=f"models:/{logged.model_id}",
        load_uri=f"models:/{logged.model_id}",
        field=field,
        name=name,
        version=version,
        run_id=run.info.run_id,
        model_id=logged.model_id,
    )


def model_of_run(client: MlflowClient, run: Run, where: str) -> LoggedModel:
    """The model ``run`` logged as its result: the one logged model of the run that is not a checkpoint.

    A run trained in epochs also logs checkpoints (logged models tagged with their epoch); they are
    never its result. Raises ResourceNotFoundError naming ``where`` when the run logged no model, only
    checkpoints (it did not finish its epochs), or several models (then one is named by its URI).
    """
    found = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    models = [model for model in found if CHECKPOINT_EPOCH_TAG not in (model.tags or {})]
    if len(models) == 1:
        return models[0]
    described = f"run {run.info.run_id!r}"
    if len(models) > 1:
        listed = ", ".join(f"{m.name} ({m.model_uri})" for m in models[:SHOWN])
        raise ResourceNotFoundError(
            f"{where}: {described} logged {len(models)} models: {listed}; name one by its URI: "
            "{uri: models:/m-...}"
        )
    if found:
        epochs = sorted(int(m.tags[CHECKPOINT_EPOCH_TAG]) for m in found)
        newest = max(found, key=lambda model: model.creation_timestamp)
        raise ResourceNotFoundError(
            f"{where}: {described} logged only checkpoints (epochs {', '.join(map(str, epochs))}): it did "
            f"not finish its epochs; resume it (resume: {run.info.run_id}), or name a checkpoint by its "
            f"URI, e.g. the newest: {{uri: {newest.model_uri}}}"
        )
    experiment = client.get_experiment(run.info.experiment_id).name
    raise ResourceNotFoundError(
        f"{where}: {described} (experiment {experiment!r}) logged no model; a training run logs one, "
        "and a model saved as files of a run is named by its URI: {uri: runs:/RUN_ID/PATH}"
    )


def _registered_version(client: MlflowClient, model_id: str, run_id: str) -> tuple[str | None, str | None]:
    """The registered name and version made from a logged model, when there is exactly one."""
    versions = [
        v
        for v in client.search_model_versions(f"run_id = '{run_id}'")
        if model_id in (v.model_id, _model_id(v.source))
    ]
    if len(versions) != 1:
        return None, None
    return versions[0].name, str(versions[0].version)


def _uri(client: MlflowClient, uri: str, field: str) -> ResolvedModel:
    """Any model URI; registered and logged-model URIs are looked up like the other ways of naming one."""
    import mlflow
    from mlflow.exceptions import MlflowException

    where = f"{field}.uri"
    if registered := _REGISTERED_URI.match(uri):
        name, version, alias = registered.group("name", "version", "alias")
        return _registered(client, name, alias, version, field, uri=uri)
    if logged := _LOGGED_MODEL_URI.match(uri):
        try:
            model = client.get_logged_model(logged.group("model_id"))
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise ResourceNotFoundError(f"{where}: no logged model {uri!r} in {_store()}") from None
        name, version = _registered_version(client, model.model_id, model.source_run_id or "")
        return ResolvedModel(uri, uri, field, name, version, model.source_run_id, model.model_id)
    if from_run := _RUN_URI.match(uri):
        _run_exists(client, from_run.group("run_id"), where)
    try:
        info = mlflow.models.get_model_info(uri)
    except (MlflowException, OSError) as error:
        raise ResourceNotFoundError(f"{where}: no MLflow model at {uri!r}: {error}") from error
    model_id = getattr(info, "model_id", None)
    return ResolvedModel(uri, uri, field, run_id=info.run_id, model_id=model_id)


def _run_exists(client: MlflowClient, run_id: str, where: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ResourceNotFoundError(f"{where}: no run {run_id!r} in {_store()}") from None


def _model_id(source: str | None) -> str | None:
    """The logged model's id in a version's source ``models:/m-...``."""
    match = _LOGGED_MODEL_URI.match(source or "")
    return match.group("model_id") if match else None


def _store() -> str:
    """The tracking store, for messages (credentials removed)."""
    import mlflow

    return f"the store {without_credentials(mlflow.get_tracking_uri())}"
