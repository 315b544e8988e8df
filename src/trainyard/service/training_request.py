"""The training request users of the training-job service know, mapped onto a training or tuning job.

``{"model_name", "data_source_config": {path, type, feature_columns, target_column},
"algorithm_config": {name, framework, parameters}, "experiment_name", "tags", "model_version",
"resource_config": {"max_runtime_s"}}`` becomes ``{"job": {"KIND": "training", ...}}``; with a
``hyperparameter_tuning_config`` (``search_space``, ``n_trials``, ``metric``, ``direction``, ...) it
becomes ``{"job": {"KIND": "tuning", ...}}``. The result is then validated like any config. The
request's own mistakes, and what cannot be mapped, are named by their field in the request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trainyard.errors import ConfigurationError

FRAMEWORKS = ("scikit-learn", "sklearn", "lightgbm", "xgboost")
STRATEGIES = {"tpe": "optuna", "random": "random", "grid": "grid"}  # the request's name: searcher KIND
TUNING = "hyperparameter_tuning_config"


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


class HyperparameterTuningConfig(_Strict):
    """What to search and how: mapped onto a tuning job's searcher, metrics and folds."""

    search_space: dict[str, Any] = Field(
        min_length=1,
        description="Parameter -> list of choices, {type: int|float|categorical, low, high, step, log, "
        "choices}, or an expression: choice(...), range(...), interval(...), tag(log, ...).",
    )
    n_trials: int = Field(20, ge=1, le=100_000, description="Trials to run.")
    metric: str | None = Field(None, description="The metric to optimize (default: accuracy or r2).")
    direction: Literal["maximize", "minimize"] | None = Field(
        None, description="Must agree with the metric's own (r2 is maximized, rmse minimized)."
    )
    strategy: Literal["tpe", "random", "grid"] = "tpe"
    cv_folds: int = Field(3, ge=2, le=50, description="Folds of the cross-validation.")
    parallel_trials: int = Field(1, ge=1, le=64, description="Trials run at once.")
    timeout_s: float | None = Field(None, gt=0, description="Stop starting trials after this long.")
    seed: int | None = None


class TrainingJobRequest(_Strict):
    model_name: str = Field(min_length=1)
    model_version: str | None = None
    data_source_config: DataSourceConfig
    algorithm_config: AlgorithmConfig
    hyperparameter_tuning_config: HyperparameterTuningConfig | None = None
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
    model = {"KIND": "sklearn", "estimator": algorithm.name, "params": algorithm.parameters}
    job: dict[str, Any] = {
        "inputs": inputs,
        "targets": {"KIND": source.type, "path": source.path, "columns": [source.target_column]},
        "model": model,
        "mlflow": {"experiment": request.experiment_name or request.model_name, "tags": tags},
    }
    tuning = request.hyperparameter_tuning_config
    if tuning is None:
        version_tags = {"model_version": request.model_version} if request.model_version else {}
        job.update(
            KIND="training",
            metrics=_default_metrics(algorithm.name),
            register={"name": request.model_name, "tags": version_tags},
        )
    else:  # a tuning job registers nothing: its model is named in its run's tags
        tags.update(model_name=request.model_name)
        if request.model_version:
            tags["model_version"] = request.model_version
        job.update(_tuning(tuning, algorithm, origin))
    runtime = request.resource_config.max_runtime_s if request.resource_config else None
    return {"job": job}, runtime


def _tuning(tuning: HyperparameterTuningConfig, algorithm: AlgorithmConfig, origin: str) -> dict[str, Any]:
    """The tuning job's own fields for ``tuning``; what cannot be mapped is named by its request field."""
    from trainyard.core.metrics import Metric
    from trainyard.tuning.spaces import parse_space

    try:
        parse_space(tuning.search_space)
    except ValueError as error:
        raise ConfigurationError(f"{origin}: {TUNING}.search_space.{error}") from None
    fixed = sorted(set(tuning.search_space) & set(algorithm.parameters))
    if fixed:
        raise ConfigurationError(
            f"{origin}: {TUNING}.search_space: {', '.join(fixed)} also fixed in algorithm_config.parameters; "
            "a parameter is either fixed or searched"
        )
    unknown, valid = _unknown_parameters(algorithm.name, list(tuning.search_space))
    if unknown:
        raise ConfigurationError(
            f"{origin}: {TUNING}.search_space: {', '.join(map(repr, unknown))}: not parameters of "
            f"{algorithm.name}; valid: {', '.join(valid)}"
        )
    name = tuning.metric or _default_metrics(algorithm.name)[0]
    try:
        metric = Metric.model_validate({"KIND": name})
    except Exception as error:
        problem = error.errors()[0]["msg"] if hasattr(error, "errors") else str(error)
        raise ConfigurationError(
            f"{origin}: {TUNING}.metric = {name!r}: {problem.removeprefix('Value error, ')}"
        ) from None
    if tuning.direction is not None and tuning.direction != metric.direction:
        raise ConfigurationError(
            f"{origin}: {TUNING}.direction = {tuning.direction!r}: the metric {name} is always "
            f"{metric.direction}d (a better {name} is {'higher' if metric.direction == 'maximize' else 'lower'}); "
            f"give direction {metric.direction!r} or leave it out"
        )
    searcher: dict[str, Any] = {
        "KIND": STRATEGIES[tuning.strategy],
        "space": tuning.search_space,
        "n_trials": tuning.n_trials,
        "n_jobs": tuning.parallel_trials,
    }
    if tuning.timeout_s is not None:
        searcher["timeout"] = tuning.timeout_s
    if tuning.seed is not None:
        searcher["seed" if tuning.strategy != "tpe" else "sampler"] = (
            tuning.seed if tuning.strategy != "tpe" else {"KIND": "tpe", "seed": tuning.seed}
        )
    return {
        "KIND": "tuning",
        "metrics": [name],
        "splitter": {"KIND": "kfold", "n_splits": tuning.cv_folds},
        "searcher": searcher,
    }


def _unknown_parameters(estimator: str, names: list[str]) -> tuple[list[str], list[str]]:
    """Those of ``names`` the estimator does not take, and those it takes (none when the estimator is
    unknown: the config's validation names it)."""
    from trainyard.core.models import SklearnModel

    try:
        model = SklearnModel(estimator=estimator)
        return model.unknown_params(names), sorted(model.parameter_names())
    except Exception:
        return [], []


def _default_metrics(estimator: str) -> list[str]:
    """Accuracy for a classifier, r2 and rmse for a regressor (an unknown name: validation names it)."""
    from trainyard.core.estimators import estimator_class

    try:
        from sklearn.base import is_classifier

        return ["accuracy"] if is_classifier(estimator_class(estimator)()) else ["r2", "rmse"]
    except Exception:
        return ["r2", "rmse"]
