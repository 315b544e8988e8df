"""The training request users of the training-job service know, mapped onto a training job config.

``{"model_name", "data_source_config": {path, type, feature_columns, target_column},
"algorithm_config": {name, framework, parameters}, "experiment_name", "tags", "model_version",
"resource_config": {"max_runtime_s"}}`` becomes ``{"job": {"KIND": "training", ...}}``, which is then
validated like any config. Its own mistakes are named by their field in the request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trainyard.errors import ConfigurationError

FRAMEWORKS = ("scikit-learn", "sklearn", "lightgbm", "xgboost")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSourceConfig(_Strict):
    path: str = Field(min_length=1)
    type: Literal["csv", "parquet"] = "csv"
    feature_columns: list[str] | None = None
    target_column: str = Field(min_length=1)


class AlgorithmConfig(_Strict):
    name: str = Field(min_length=1, description="A registered estimator name (RandomForestClassifier, ...).")
    framework: str = "scikit-learn"
    parameters: dict[str, Any] = Field(default_factory=dict)


class ResourceConfig(_Strict):
    max_runtime_s: float | None = Field(None, gt=0)


class TrainingJobRequest(_Strict):
    model_name: str = Field(min_length=1)
    model_version: str | None = None
    data_source_config: DataSourceConfig
    algorithm_config: AlgorithmConfig
    hyperparameter_tuning_config: dict[str, Any] | None = None
    resource_config: ResourceConfig | None = None
    experiment_name: str | None = None
    tags: dict[str, Any] | None = None


def is_training_request(document: Any) -> bool:
    """Whether a submitted body is a training request rather than a config document."""
    return isinstance(document, dict) and "model_name" in document and "job" not in document


def to_job(document: dict[str, Any], origin: str = "request") -> tuple[dict[str, Any], float | None]:
    """The config document of a training request, and its max runtime."""
    try:
        request = TrainingJobRequest.model_validate(document)
    except ValidationError as error:
        lines = [
            f"  {origin}: {'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors(include_url=False)
        ]
        raise ConfigurationError("invalid training request:\n" + "\n".join(lines)) from None
    if request.hyperparameter_tuning_config:
        raise ConfigurationError(
            f"{origin}: hyperparameter_tuning_config: not mapped onto a tuning job yet; submit a tuning "
            'job config instead ({"job": {"KIND": "tuning", ...}}, see confs/tuning.yaml)'
        )
    algorithm = request.algorithm_config
    if algorithm.framework.lower() not in FRAMEWORKS:
        raise ConfigurationError(
            f"{origin}: algorithm_config.framework = {algorithm.framework!r}: expected one of {', '.join(FRAMEWORKS)}"
        )
    source = request.data_source_config
    inputs: dict[str, Any] = {"KIND": source.type, "path": source.path}
    if source.feature_columns:
        inputs["columns"] = source.feature_columns
    else:
        inputs["drop"] = [source.target_column]
    tags = {str(key): str(value) for key, value in (request.tags or {}).items()}
    version_tags = {"model_version": request.model_version} if request.model_version else {}
    job = {
        "KIND": "training",
        "inputs": inputs,
        "targets": {"KIND": source.type, "path": source.path, "columns": [source.target_column]},
        "model": {"KIND": "sklearn", "estimator": algorithm.name, "params": algorithm.parameters},
        "metrics": _default_metrics(algorithm.name),
        "register": {"name": request.model_name, "tags": version_tags},
        "mlflow": {"experiment": request.experiment_name or request.model_name, "tags": tags},
    }
    runtime = request.resource_config.max_runtime_s if request.resource_config else None
    return {"job": job}, runtime


def _default_metrics(estimator: str) -> list[str]:
    """Accuracy for a classifier, r2 and rmse for a regressor (an unknown name: validation names it)."""
    from trainyard.core.estimators import estimator_class

    try:
        from sklearn.base import is_classifier

        return ["accuracy"] if is_classifier(estimator_class(estimator)()) else ["r2", "rmse"]
    except Exception:
        return ["r2", "rmse"]
