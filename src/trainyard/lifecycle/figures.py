"""The figures people look at when they compare models on their test rows.

Regression: predicted against actual, and residuals. Classification: the confusion matrix, and with
probabilities the ROC and precision-recall curves (one curve per class, one against the rest, when
there are more than two). Each is made on its own Agg canvas, never through pyplot's global state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

MakeFigure = Callable[[], "Figure"]


def diagnostic_figures(
    truth: pd.Series,
    predicted: pd.Series,
    probas: np.ndarray | None,
    labels: list[Any] | None,
    classifier: bool,
    title: str,
) -> dict[str, MakeFigure]:
    """File name -> a function drawing that figure (drawn only when called)."""
    if not classifier:
        return {
            "predicted_vs_actual.png": lambda: _prediction_error(
                truth, predicted, "actual_vs_predicted", title
            ),
            "residuals.png": lambda: _prediction_error(truth, predicted, "residual_vs_predicted", title),
        }
    made: dict[str, MakeFigure] = {"confusion_matrix.png": lambda: _confusion(truth, predicted, title)}
    if probas is not None and labels is not None:
        made["roc_curve.png"] = lambda: _curves(truth, probas, labels, "roc", title)
        made["precision_recall.png"] = lambda: _curves(truth, probas, labels, "pr", title)
    return made


def _figure(title: str) -> tuple[Figure, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    figure.suptitle(title)
    return figure, axes


def _prediction_error(truth: pd.Series, predicted: pd.Series, kind: str, title: str) -> Figure:
    from sklearn.metrics import PredictionErrorDisplay

    figure, axes = _figure(title)
    PredictionErrorDisplay.from_predictions(
        truth.to_numpy(), predicted.to_numpy(), kind=kind, ax=axes, subsample=2000, random_state=0
    )
    return figure


def _confusion(truth: pd.Series, predicted: pd.Series, title: str) -> Figure:
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, axes = _figure(title)
    ConfusionMatrixDisplay.from_predictions(truth, predicted, ax=axes, colorbar=False)
    return figure


def _curves(truth: pd.Series, probas: np.ndarray, labels: list[Any], kind: str, title: str) -> Figure:
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    display = RocCurveDisplay if kind == "roc" else PrecisionRecallDisplay
    figure, axes = _figure(title)
    shown = labels[1:] if len(labels) == 2 else labels  # binary: the positive class only
    for column, label in enumerate(labels):
        if label in shown:
            display.from_predictions(
                truth == label, probas[:, column], ax=axes, name=f"class {label}", pos_label=True
            )
    return figure
