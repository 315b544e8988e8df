"""Savers: store a fitted model in MLflow with its signature, an input example and pinned requirements."""

from __future__ import annotations

import functools
import importlib.metadata
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from trainyard.core.component import Component
from trainyard.errors import ModelRegistryError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models.model import ModelInfo
    from mlflow.models.signature import ModelSignature

# What loading a saved scikit-learn pipeline needs, by distribution name.
_BASE_REQUIREMENTS = ("scikit-learn", "numpy", "pandas", "scipy", "cloudpickle")
# Top-level modules of optional estimators, by distribution names that may provide them.
_EXTRA_DISTRIBUTIONS = {"lightgbm": ("lightgbm",), "xgboost": ("xgboost", "xgboost-cpu")}


class SklearnSaver(Component):
    """Logs the model with MLflow's scikit-learn flavor under the run."""

    KIND: Literal["sklearn"] = "sklearn"
    name: str = Field("model", description="Name of the logged model in the run.")
    input_example_rows: int = Field(5, ge=0, description="Rows of inputs stored as the input example.")
    serialization: Literal["cloudpickle", "pickle", "skops"] = Field(
        "cloudpickle",
        description="How the model is serialized; cloudpickle saves every estimator (skops refuses some).",
    )

    check_serving: bool = Field(
        False,
        description="Reload the saved model and score the input example the way a model server would "
        "(MLflow's check; about 1 s). The job has already scored the fitted model on the test rows.",
    )

    def save(
        self,
        model: Any,
        signature: ModelSignature,
        inputs: pd.DataFrame,
        *,
        name: str | None = None,
        step: int = 0,
        tags: dict[str, str] | None = None,
    ) -> ModelInfo:
        """Log ``model`` (as ``name``, default the saver's; at ``step``, with ``tags``) and return its
        info (model URI, id)."""
        from mlflow.models import Model

        example = inputs.head(self.input_example_rows) if self.input_example_rows else None
        try:
            return Model.log(
                artifact_path=None,
                name=name or self.name,
                step=step,
                tags=tags,
                flavor=_SklearnFlavor,
                sk_model=model,
                signature=signature,
                input_example=example,
                pip_requirements=pinned_requirements(model),
                serialization_format=self.serialization,
                validate_serving_input=self.check_serving,
            )
        except Exception as error:
            raise ModelRegistryError(f"saving the model failed: {error}") from error


class _SklearnFlavor:
    """MLflow's scikit-learn flavor, taking the serving-check switch that ``Model.log`` reads."""

    __name__ = "mlflow.sklearn"

    @staticmethod
    def save_model(path: str, mlflow_model: Any, validate_serving_input: bool = True, **kwargs: Any) -> None:
        import mlflow.sklearn

        mlflow.sklearn.save_model(path=path, mlflow_model=mlflow_model, **kwargs)


def pinned_requirements(model: Any) -> list[str]:
    """``name==version`` of every distribution the model needs, as installed now (never inferred)."""
    modules = {type(step).__module__.split(".")[0] for step in _steps(model)}
    names = list(_BASE_REQUIREMENTS)
    for module, distributions in _EXTRA_DISTRIBUTIONS.items():
        if module in modules:
            names += [name for name in distributions if _version(name)][:1]
    return [f"{name}=={_version(name)}" for name in names if _version(name)]


def _steps(model: Any) -> list[Any]:
    steps = getattr(model, "steps", None)
    return [model] if steps is None else [step for _, step in steps]


@functools.cache  # read from the installed metadata once a process: a checkpoint every epoch asks again
def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


SaverKind = SklearnSaver
