"""A model of your own that trains in epochs, given by import path (docs/iterative.md).

The interface, checked on the class before any instance is made (``missing_methods``)::

    class MyModel:
        def __init__(self, **params): ...                  # job.model.params
        def fit_epoch(self, inputs, targets) -> None: ...  # one epoch on all train rows (NumPy arrays)
        def predict(self, inputs) -> array: ...            # one prediction per row
        def save_state(self) -> bytes: ...                 # everything training needs to continue
        @classmethod
        def load_state(cls, state: bytes) -> MyModel: ...  # the model save_state described
        # a classifier also has predict_proba(inputs) -> (rows, classes) and classes_ (their labels)

The job wraps an instance in ``OwnRegressor`` or ``OwnClassifier``, scikit-learn estimators that sit
at the end of the pipeline like any other and pickle through ``save_state`` and ``load_state``: a
checkpoint, the final model and a copy of the best epoch hold the model's own state, nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from trainyard.core.estimators import own_model_is_classifier
from trainyard.errors import TrainingJobError


class _Own(BaseEstimator):
    """The scikit-learn face of a model of your own; ``model`` is the instance it trains."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def fit(self, inputs: Any, targets: Any) -> _Own:
        """Refused: a model of your own trains in epochs (the job calls ``fit_epoch``)."""
        raise TrainingJobError(
            f"{type(self.model).__name__} is a model of your own that trains in epochs: set job.epochs"
        )

    def fit_epoch(self, inputs: Any, targets: Any) -> None:
        """One epoch of the model's own fitting, on arrays."""
        self.model.fit_epoch(np.asarray(inputs), np.asarray(targets))

    def predict(self, inputs: Any) -> np.ndarray:
        return np.asarray(self.model.predict(np.asarray(inputs)))

    def __sklearn_is_fitted__(self) -> bool:
        return True  # whatever its epochs so far: it predicts

    def __getstate__(self) -> dict[str, Any]:
        state = self.model.save_state()
        if not isinstance(state, bytes):
            raise TrainingJobError(
                f"{type(self.model).__name__}.save_state() returned {type(state).__name__}, not bytes"
            )
        return {"class": type(self.model), "state": state}

    def __setstate__(self, saved: dict[str, Any]) -> None:
        klass = saved["class"]
        model = klass.load_state(saved["state"])
        if not isinstance(model, klass):
            raise TrainingJobError(
                f"{klass.__name__}.load_state() returned {type(model).__name__}, not a {klass.__name__}"
            )
        self.model = model


class OwnRegressor(RegressorMixin, _Own):
    """A model of your own that predicts numbers."""


class OwnClassifier(ClassifierMixin, _Own):
    """A model of your own that predicts classes, with their probabilities."""

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.model.classes_)

    def predict_proba(self, inputs: Any) -> np.ndarray:
        return np.asarray(self.model.predict_proba(np.asarray(inputs)))


def wrapped(model: Any) -> _Own:
    """``model`` (an instance of a class of your own) as a scikit-learn estimator."""
    return OwnClassifier(model) if own_model_is_classifier(type(model)) else OwnRegressor(model)
