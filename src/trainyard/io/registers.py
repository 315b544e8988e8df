"""Registers: put a saved model into the MLflow model registry, with tags and an alias."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from trainyard.core.component import Component
from trainyard.errors import ModelRegistryError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models.model import ModelInfo


class MlflowRegister(Component):
    """Registers a new version of ``name`` and optionally points ``alias`` at it."""

    KIND: Literal["mlflow"] = "mlflow"
    name: str = Field(min_length=1, description="Registered model name.")
    alias: str | None = Field(None, description="Alias for the new version (e.g. challenger).")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags of the new version.")

    def register(self, model: ModelInfo) -> ModelVersion:
        """Create the version (and alias); raise ModelRegistryError with the cause on failure."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient()
        try:
            ensure_registered_model(client, self.name)
            version = client.create_model_version(
                self.name,
                source=model.model_uri,
                run_id=model.run_id,
                tags=self.tags or None,
                model_id=model.model_id,
            )
            if self.alias:
                client.set_registered_model_alias(self.name, self.alias, version.version)
        except MlflowException as error:
            raise ModelRegistryError(
                f"registering {model.model_uri} as {self.name!r} failed: {error}"
            ) from error
        return version


RegisterKind = MlflowRegister


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    """Create the registered model ``name`` unless it exists (MLflow's errors otherwise propagate)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code not in {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"}:
            raise
