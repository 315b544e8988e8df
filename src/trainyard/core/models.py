"""Models: a scikit-learn pipeline (preprocessing + a registered estimator) built from config."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from trainyard.core.component import Component
from trainyard.core.estimators import (
    check_estimator_name,
    estimator_class,
    is_own_model,
    own_model_is_classifier,
)
from trainyard.errors import ConfigurationError, TrainingJobError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline


PREDICTION = "prediction"


class Model(Component, abc.ABC):
    """Something that fits on inputs and targets, then predicts."""

    KIND: str

    @abc.abstractmethod
    def fit(self, inputs: pd.DataFrame, targets: pd.DataFrame) -> Model:
        """Fit on the given rows; returns self."""

    @abc.abstractmethod
    def predict(self, inputs: pd.DataFrame) -> pd.DataFrame:
        """One ``prediction`` column, indexed like ``inputs``."""

    @abc.abstractmethod
    def predict_proba(self, inputs: pd.DataFrame, labels: list[Any] | None = None) -> np.ndarray:
        """Class probabilities (classifiers only): a column per class of ``labels`` when given (0 for
        a class the fit never saw), else per class of the fit."""

    @abc.abstractmethod
    def fitted(self) -> Any:
        """The fitted object to save."""

    @property
    @abc.abstractmethod
    def is_classifier(self) -> bool:
        """Whether the model predicts classes."""


class TunedParams(Component):
    """Where tuned parameters come from: a finished tuning run, or a study in Optuna storage."""

    run_id: str | None = Field(None, description="The MLflow run of a tuning job (its best_params.json).")
    study: str | None = Field(None, description="A study name; its best trial's parameters.")
    storage: str | None = Field(None, description="The study's storage (default: as the tuning job's).")

    @model_validator(mode="after")
    def _one_source(self) -> TunedParams:
        if (self.run_id is None) == (self.study is None):
            raise ValueError("give exactly one of run_id (a tuning run) or study (a study name)")
        return self


class SklearnModel(Model):
    """Preprocessing for numeric and categorical columns, then an estimator chosen by name."""

    KIND: Literal["sklearn"] = "sklearn"
    estimator: str = Field(
        description="A registered estimator name (e.g. HistGradientBoostingRegressor); "
        "or an import path 'package.module:Class' in a run that allows them (--allow-import-paths)."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters of the estimator.")
    params_from: TunedParams | None = Field(
        None, description="Take parameters from a tuning run or study; `params` given here win over them."
    )
    categorical: list[str] = Field(default_factory=list, description="Columns treated as categories.")
    encoding: Literal["onehot", "ordinal"] = Field("onehot", description="How categories are encoded.")
    impute: bool = Field(True, description="Fill missing numbers (median) and categories (most frequent).")
    scale: bool = Field(False, description="Standardize numeric columns (for linear and distance models).")

    _pipeline: Pipeline | None = PrivateAttr(None)

    @field_validator("estimator")
    @classmethod
    def _known_estimator(cls, name: str, info: ValidationInfo) -> str:
        allow = bool((info.context or {}).get("allow_import_paths", False))
        check_estimator_name(name, allow)
        return name

    @field_validator("params")
    @classmethod
    def _valid_params(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        for key, value in params.items():
            _check_plain(value, key)
        name = info.data.get("estimator")
        if name is not None:  # absent when the estimator was refused: then nothing is imported
            check_params(name, params)
        return params

    def predicts_probabilities(self) -> bool:
        """Whether the estimator, with these params, has ``predict_proba``."""
        return hasattr(estimator_class(self.estimator)(**self.params), "predict_proba")

    def parameter_names(self) -> set[str]:
        """The estimator's parameters (empty when it takes any keyword, like LightGBM)."""
        return _parameter_names(estimator_class(self.estimator))

    def unknown_params(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` the estimator does not take."""
        valid = self.parameter_names()
        return sorted(set(names) - valid) if valid else []

    def fit(self, inputs: pd.DataFrame, targets: pd.DataFrame) -> SklearnModel:
        pipeline = self._build(inputs)
        try:
            pipeline.fit(inputs, _target_vector(targets))
        except (TypeError, ValueError) as error:
            raise TrainingJobError(f"{self.estimator} failed to fit: {error}") from error
        self._pipeline = pipeline
        return self

    def build(self, inputs: pd.DataFrame) -> Pipeline:
        """The unfitted pipeline (preprocessing, estimator) for the columns of ``inputs``."""
        return self._build(inputs)

    def with_pipeline(self, pipeline: Pipeline) -> SklearnModel:
        """A copy of this model whose fit is ``pipeline`` (fitted elsewhere: in epochs, say)."""
        copy = self.model_copy()
        copy._pipeline = pipeline
        return copy

    def predict(self, inputs: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame({PREDICTION: self._fitted().predict(inputs)}, index=inputs.index)

    def predict_proba(self, inputs: pd.DataFrame, labels: list[Any] | None = None) -> np.ndarray:
        import pandas as pd

        pipeline = self._fitted()
        if not hasattr(pipeline, "predict_proba"):
            raise TrainingJobError(f"{self.estimator} does not predict probabilities")
        probas = pipeline.predict_proba(inputs)
        if labels is None or list(pipeline.classes_) == list(labels):
            return probas
        columns = pd.DataFrame(probas, columns=pipeline.classes_)
        return columns.reindex(columns=labels, fill_value=0.0).to_numpy()

    def fitted(self) -> Pipeline:
        return self._fitted()

    @property
    def is_classifier(self) -> bool:
        from sklearn.base import is_classifier

        klass = estimator_class(self.estimator)
        if is_own_model(klass):
            return own_model_is_classifier(klass)
        return bool(is_classifier(klass()))

    def _fitted(self) -> Pipeline:
        if self._pipeline is None:
            raise TrainingJobError("the model must be fitted before it predicts")
        return self._pipeline

    def _build(self, inputs: pd.DataFrame) -> Pipeline:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline, make_pipeline
        from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

        missing = [column for column in self.categorical if column not in inputs.columns]
        if missing:
            raise ConfigurationError(
                f"model.categorical names {', '.join(map(repr, missing))}, not among the inputs: "
                f"{', '.join(map(str, inputs.columns))}"
            )
        numeric = [column for column in inputs.columns if column not in self.categorical]
        numeric_steps: list[Any] = [SimpleImputer(strategy="median")] if self.impute else []
        numeric_steps += [StandardScaler()] if self.scale else []
        encoder: Any = (
            OneHotEncoder(handle_unknown="ignore", sparse_output=False)
            if self.encoding == "onehot"
            else OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
        )
        categorical_steps = [SimpleImputer(strategy="most_frequent"), encoder] if self.impute else [encoder]
        transformers = []
        if self.categorical:
            transformers.append(("categorical", make_pipeline(*categorical_steps), self.categorical))
        if numeric:
            transformers.append(
                (
                    "numeric",
                    make_pipeline(*numeric_steps) if numeric_steps else "passthrough",
                    numeric,
                )
            )
        params = dict(self.params)
        if (
            self.encoding == "ordinal"
            and self.categorical
            and self.estimator.startswith("HistGradientBoosting")
        ):
            params.setdefault("categorical_features", [True] * len(self.categorical) + [False] * len(numeric))
        estimator = estimator_class(self.estimator)(**params)
        if is_own_model(type(estimator)):
            from trainyard.core.own_models import wrapped

            estimator = wrapped(estimator)
        if transformers == [("numeric", "passthrough", numeric)]:
            return Pipeline([("estimator", estimator)])  # nothing to transform: about 3 ms a fit saved
        preprocess = ColumnTransformer(transformers, verbose_feature_names_out=False)
        return Pipeline([("preprocess", preprocess), ("estimator", estimator)])


def check_params(name: str, params: Mapping[str, Any]) -> None:
    """Raise a ValueError (for pydantic) when estimator ``name`` has no such parameter or refuses a value
    (scikit-learn's own ``_parameter_constraints``)."""
    try:
        klass = estimator_class(name)
    except ConfigurationError as error:
        raise ValueError(str(error)) from None
    valid = _parameter_names(klass)
    unknown = sorted(set(params) - valid) if valid else []  # same rule as unknown_params()
    if unknown:
        raise ValueError(
            f"{name} has no parameter {', '.join(map(repr, unknown))}; "
            f"valid parameters: {', '.join(sorted(valid))}"
        )
    estimator = klass(**params)
    if hasattr(estimator, "_parameter_constraints"):
        try:
            estimator._validate_params()
        except (TypeError, ValueError) as error:
            raise ValueError(str(error)) from None


_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: object, at: str) -> None:
    """Refuse a parameter value that is not plain data: a config names values, never objects to call."""
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_plain(item, f"{at}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(item, f"{at}.{key}")
        return
    raise ValueError(
        f"{at}: expected plain data (text, a number, true/false, null, a list or a mapping), "
        f"got {type(value).__name__}"
    )


def _parameter_names(klass: type) -> set[str]:
    """The parameters an estimator declares; empty when it also takes arbitrary keywords (LightGBM)."""
    import inspect

    signature = inspect.signature(klass)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return set()
    return set(signature.parameters)


def _target_vector(targets: pd.DataFrame) -> Any:
    """The one target column: a model predicts one ``prediction`` column, so several are refused."""
    if targets.shape[1] != 1:
        columns = ", ".join(map(str, targets.columns))
        raise TrainingJobError(
            f"the targets have {targets.shape[1]} columns ({columns}): a model fits one target column; "
            "keep one with job.targets.columns"
        )
    return targets.iloc[:, 0]


ModelKind = SklearnModel
