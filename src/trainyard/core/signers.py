"""Signers: describe a model's inputs and outputs as an MLflow signature."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from trainyard.core.component import Component

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models.signature import ModelSignature


class InferSigner(Component):
    """Infers the signature from example inputs and outputs (column names and types)."""

    KIND: Literal["infer"] = "infer"

    def sign(self, inputs: pd.DataFrame, outputs: pd.DataFrame) -> ModelSignature:
        """The signature mapping ``inputs`` columns to ``outputs`` columns."""
        from mlflow.models import infer_signature

        return infer_signature(inputs, outputs)


SignerKind = InferSigner
