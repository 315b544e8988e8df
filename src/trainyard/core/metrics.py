"""Metrics: scores chosen by name, each with the direction that makes it better."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from trainyard.core.component import Component
from trainyard.errors import did_you_mean

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Direction = Literal["maximize", "minimize"]
# name -> (sklearn.metrics function, direction, uses probabilities, is a classification metric)
_METRICS: dict[str, tuple[str, Direction, bool, bool]] = {
    "r2": ("r2_score", "maximize", False, False),
    "explained_variance": ("explained_variance_score", "maximize", False, False),
    "rmse": ("root_mean_squared_error", "minimize", False, False),
    "mse": ("mean_squared_error", "minimize", False, False),
    "mae": ("mean_absolute_error", "minimize", False, False),
    "mape": ("mean_absolute_percentage_error", "minimize", False, False),
    "median_ae": ("median_absolute_error", "minimize", False, False),
    "max_error": ("max_error", "minimize", False, False),
    "accuracy": ("accuracy_score", "maximize", False, True),
    "balanced_accuracy": ("balanced_accuracy_score", "maximize", False, True),
    "f1": ("f1_score", "maximize", False, True),
    "precision": ("precision_score", "maximize", False, True),
    "recall": ("recall_score", "maximize", False, True),
    "matthews_corrcoef": ("matthews_corrcoef", "maximize", False, True),
    "roc_auc": ("roc_auc_score", "maximize", True, True),
    "log_loss": ("log_loss", "minimize", True, True),
}
_AVERAGED = {"f1", "precision", "recall"}
MetricName = Literal[
    "r2",
    "explained_variance",
    "rmse",
    "mse",
    "mae",
    "mape",
    "median_ae",
    "max_error",
    "accuracy",
    "balanced_accuracy",
    "f1",
    "precision",
    "recall",
    "matthews_corrcoef",
    "roc_auc",
    "log_loss",
]


# Other spellings of each name, for the did-you-mean: scikit-learn's function and scorer names.
_SPELLINGS = {
    spelling: name
    for name, (function, *_) in _METRICS.items()
    for short in [function.removesuffix("_score")]
    for spelling in (name, function, short, f"neg_{short}")
}


class Metric(Component):
    """A score by name; ``average`` applies to f1, precision and recall (binary, macro, weighted...)."""

    KIND: MetricName = Field(description="The metric's name.")
    pos_label: str | int | bool | None = Field(
        None, description="The positive class of a binary f1/precision/recall (default: 1 for 0/1 labels)."
    )
    average: Literal["binary", "micro", "macro", "weighted"] | None = Field(
        None,
        description="Averaging for f1/precision/recall: binary for two classes, macro otherwise.",
    )

    @field_validator("KIND", mode="before")
    @classmethod
    def _known_name(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in _METRICS:
            raise ValueError(
                f"unknown metric {value!r}.{did_you_mean(value, _SPELLINGS)} "
                f"Valid names: {', '.join(_METRICS)}"
            )
        return value

    @property
    def name(self) -> str:
        return self.KIND

    @property
    def direction(self) -> Direction:
        return _METRICS[self.KIND][1]

    @property
    def needs_proba(self) -> bool:
        return _METRICS[self.KIND][2]

    @property
    def for_classifiers(self) -> bool:
        return _METRICS[self.KIND][3]

    def score(
        self,
        targets: pd.DataFrame,
        outputs: pd.DataFrame,
        probas: np.ndarray | None = None,
        labels: list[Any] | None = None,
    ) -> float:
        """The metric of ``outputs`` (or ``probas``) against ``targets``.

        ``labels`` are the classes of the columns of ``probas`` (every class of the data, see
        ``class_labels``), so that rows missing a class (a fold's test rows) still score.
        """
        import sklearn.metrics

        function = getattr(sklearn.metrics, _METRICS[self.KIND][0])
        truth = targets.iloc[:, 0]
        kwargs: dict[str, Any] = {}
        if self.KIND in _AVERAGED:
            binary = truth.nunique() <= 2 and (self.pos_label is not None or set(truth.unique()) <= {0, 1})
            kwargs["average"] = self.average or ("binary" if binary else "macro")
            if self.pos_label is not None:
                kwargs["pos_label"] = self.pos_label
        if self.needs_proba:
            if probas is None:
                raise ValueError(f"metric {self.KIND} needs predicted probabilities")
            if self.KIND == "roc_auc" and probas.shape[1] > 2:
                return _one_vs_rest_auc(truth, probas, labels)
            predicted: Any = probas[:, 1] if probas.shape[1] == 2 and self.KIND == "roc_auc" else probas
            if labels is not None and self.KIND == "log_loss":
                kwargs["labels"] = labels
            return float(function(truth, predicted, **kwargs))
        return float(function(truth, outputs.iloc[:, 0], **kwargs))


def class_labels(targets: pd.DataFrame) -> list[Any]:
    """Every class of the target, sorted as scikit-learn orders a classifier's ``classes_``."""
    import numpy as np

    return np.unique(targets.iloc[:, 0]).tolist()


def _one_vs_rest_auc(truth: pd.Series, probas: np.ndarray, labels: list[Any] | None) -> float:
    """Macro one-vs-rest ROC AUC over the classes present in ``truth`` (all of them: as
    ``roc_auc_score(multi_class="ovr")``, which refuses rows that lack a class of ``probas``)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import label_binarize

    classes = labels if labels is not None else np.unique(truth).tolist()
    indicators = label_binarize(truth, classes=classes)
    present = indicators.any(axis=0)
    return float(roc_auc_score(indicators[:, present], probas[:, present], average="macro"))


def _from_name(value: Any) -> Any:
    return {"KIND": value} if isinstance(value, str) else value


MetricKind = Annotated[Metric, BeforeValidator(_from_name, json_schema_input_type=MetricName | Metric)]
