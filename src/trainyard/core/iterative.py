"""Training in epochs, as pure parts: the config, which estimators learn in steps, one epoch of
fitting, the early-stopping rule and which checkpoints to keep. No I/O (jobs/epochs.py logs)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from trainyard.core.component import Component
from trainyard.core.estimators import ESTIMATORS, estimator_class, is_own_model
from trainyard.core.metrics import Direction
from trainyard.core.models import PREDICTION

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

PARTIAL_FIT = "partial_fit"
BOOST = "boosting rounds"  # LightGBM and XGBoost: each epoch adds rounds to the booster fitted so far
OWN = "fit_epoch"  # a model of your own (core/own_models.py): one fit_epoch call per epoch
# the packages whose scikit-learn estimators continue a booster: the keyword of fit that takes it
_BOOSTERS = {"lightgbm": "init_model", "xgboost": "xgb_model"}
# scikit-learn ensembles that grow with warm_start: the class-name prefix, and the parameter that grows
_GROWN = {
    "HistGradientBoosting": "max_iter",
    "GradientBoosting": "n_estimators",
    "RandomForest": "n_estimators",
    "ExtraTrees": "n_estimators",
    "Bagging": "n_estimators",
}


class EarlyStopping(Component):
    """Stop when the validation metric has not improved for ``patience`` epochs."""

    metric: str = Field(description="A metric of job.metrics, scored on the validation rows.")
    patience: int = Field(5, ge=1, description="Epochs without improvement before stopping.")
    min_delta: float = Field(
        0.0, ge=0, description="How much better than the best so far a score must be to count."
    )


class Checkpoint(Component):
    """Save the model every ``every`` epochs as an MLflow logged model with its step."""

    every: int = Field(1, ge=1, description="Epochs between checkpoints.")
    keep_last: int = Field(2, ge=1, description="The newest checkpoints kept; older ones are deleted.")
    keep_best: bool = Field(True, description="Also keep the checkpoint with the best validation metric.")
    background: bool = Field(
        True,
        description="Write checkpoints (and the epochs' metrics) while the next epochs train, in order, "
        "joined before the job ends: in a writer process on another core (a thread on a one-core "
        "machine); false: in the training thread.",
    )


class TrialEpochs(Component):
    """Fit in epochs: partial_fit once per epoch, a warm-started ensemble grown by ``grow``, boosting
    rounds, or a model of your own's fit_epoch. In a tuning job, each trial's epochs (for pruning)."""

    count: int = Field(ge=1, description="Epochs to train (a resumed run may raise it).")
    grow: int | None = Field(
        None,
        ge=1,
        description="Members added per epoch: for warm_start ensembles trees (n_estimators) or boosting "
        "iterations (max_iter), default 10; for LightGBM and XGBoost boosting rounds, default 1. The "
        "model's own n_estimators or max_iter is replaced.",
    )

    def growth(self, how: str) -> int:
        """Members an epoch adds for a model that learns ``how``: ``grow``, or its default."""
        return self.grow if self.grow is not None else 1 if how == BOOST else 10


class Epochs(TrialEpochs):
    """A training job's epochs: with early stopping, checkpoints, and which model is saved at the end."""

    early_stopping: EarlyStopping | None = Field(None, description="Stop early (unset: all epochs).")
    checkpoint: Checkpoint | None = Field(None, description="Checkpoints (unset: none; resume needs them).")
    final: Literal["best", "last"] = Field(
        "last",
        description="The model saved and registered at the end: the last epoch's, or the best "
        "checkpoint's (needs checkpoint.keep_best).",
    )

    def monitored(self, metric_names: list[str]) -> str:
        """The metric that decides the best epoch: the early-stopping one, else the first metric."""
        return self.early_stopping.metric if self.early_stopping else metric_names[0]


def how_it_learns(estimator: str) -> str | None:
    """``partial_fit``, the parameter a warm start grows (``n_estimators``, ``max_iter``), ``BOOST``
    (LightGBM, XGBoost), ``OWN`` (a model of your own with ``fit_epoch``), or None."""
    klass = estimator_class(estimator)
    if is_own_model(klass):
        return OWN
    if callable(getattr(klass, PARTIAL_FIT, None)):
        return PARTIAL_FIT
    if klass.__module__.split(".")[0] in _BOOSTERS:
        return BOOST
    if klass.__module__.startswith("sklearn."):
        for prefix, parameter in _GROWN.items():
            if klass.__name__.startswith(prefix):
                return parameter
    return None


def grown_parameter(estimator: str) -> str | None:
    """The parameter that the epochs set on ``estimator`` (its size: trees, iterations, rounds), or
    None for a model that learns by partial_fit or fit_epoch."""
    how = how_it_learns(estimator)
    if how == BOOST:
        return "n_estimators"
    return None if how in (None, PARTIAL_FIT, OWN) else how


def check_space_in_epochs(estimator: str, space: dict[str, Any]) -> None:
    """Raise a ValueError when a tuning space in epochs searches the parameter the epochs set."""
    grown = grown_parameter(estimator)
    if grown is not None and grown in space:
        raise ValueError(
            f"searcher.space.{grown}: in epochs, {estimator}'s {grown} is set by the epochs (epochs.grow "
            f"members an epoch, for epochs.count epochs; a pruner stops a trial sooner), so searching it "
            "has no effect: remove it from the space"
        )


def estimators_in_steps() -> list[str]:
    """The registered estimators that learn in steps (imports them, not those of a missing extra:
    for error messages)."""
    import importlib.util

    names = [name for name, module in ESTIMATORS.items() if importlib.util.find_spec(module) is not None]
    return sorted(name for name in names if how_it_learns(name) is not None)


def check_learns_in_steps(estimator: str) -> None:
    """Raise a ValueError (for pydantic, under ``epochs``) when ``estimator`` cannot learn in steps."""
    if how_it_learns(estimator) is None:
        raise ValueError(
            f"epochs: {estimator} cannot learn in steps (it has no partial_fit, does not grow with "
            "warm_start and is no LightGBM or XGBoost booster); estimators that can: "
            f"{', '.join(estimators_in_steps())}, or a model of your own by import path (fit_epoch)"
        )


def own_needs_epochs(estimator: str) -> str:
    """Why a model of your own without ``epochs`` is refused."""
    return (
        f"epochs: {estimator} is a model of your own that trains in epochs (fit_epoch): set "
        "epochs: {count: N}"
    )


class EpochLearner:
    """A pipeline fitted an epoch at a time. The preprocessing is fitted once on the train rows (or
    comes fitted with a checkpoint); each epoch calls the estimator's ``partial_fit`` once on all
    train rows, grows a warm-started ensemble to ``grow * epoch`` members and fits it, fits ``grow``
    more boosting rounds onto the booster fitted so far (LightGBM's ``init_model``, XGBoost's
    ``xgb_model``: a checkpoint's booster continues the same way), or calls ``fit_epoch`` once."""

    def __init__(self, pipeline: Pipeline, how: str, grow: int, classes: list[Any] | None) -> None:
        self.pipeline = pipeline
        self.how = how
        self.grow = grow
        self.classes = classes
        self._cache: dict[int, Any] = {}

    @property
    def estimator(self) -> Any:
        return self.pipeline.steps[-1][1]

    def fit_preprocessing(self, inputs: pd.DataFrame) -> None:
        """Fit the steps before the estimator on the train rows (none: nothing to fit)."""
        if len(self.pipeline.steps) > 1:
            self.pipeline[:-1].fit(inputs)

    def transformed(self, inputs: pd.DataFrame) -> Any:
        """``inputs`` as the estimator sees them (computed once per frame)."""
        key = id(inputs)
        if key not in self._cache:  # the frame is held with its result, so its id is not reused
            done = self.pipeline[:-1].transform(inputs) if len(self.pipeline.steps) > 1 else inputs
            self._cache[key] = (inputs, done)
        return self._cache[key][1]

    def epoch(self, number: int, inputs: pd.DataFrame, targets: pd.DataFrame) -> None:
        """Fit epoch ``number`` (from 1) on the train rows."""
        features, target = self.transformed(inputs), _target_vector(targets)
        if self.how == PARTIAL_FIT:
            extra = {"classes": self.classes} if self.classes is not None else {}
            self.estimator.partial_fit(features, target, **extra)
        elif self.how == OWN:
            self.estimator.fit_epoch(features, target)
        elif self.how == BOOST:
            estimator = self.estimator
            keyword = _BOOSTERS[type(estimator).__module__.split(".")[0]]
            booster = _booster(estimator) if estimator.__sklearn_is_fitted__() else None
            estimator.set_params(n_estimators=self.grow)
            estimator.fit(features, target, **{keyword: booster})
        else:
            self.estimator.set_params(warm_start=True, **{self.how: self.grow * number})
            self.estimator.fit(features, target)

    def predict(self, inputs: pd.DataFrame) -> pd.DataFrame:
        """One ``prediction`` column, indexed like ``inputs``."""
        import pandas as pd

        return pd.DataFrame(
            {PREDICTION: self.estimator.predict(self.transformed(inputs))}, index=inputs.index
        )

    def predict_proba(self, inputs: pd.DataFrame, labels: list[Any] | None) -> np.ndarray:
        """Class probabilities, a column per class of ``labels`` (0 for a class never seen)."""
        import pandas as pd

        probas = self.estimator.predict_proba(self.transformed(inputs))
        classes = list(self.estimator.classes_)
        if labels is None or classes == list(labels):
            return probas
        return pd.DataFrame(probas, columns=classes).reindex(columns=labels, fill_value=0.0).to_numpy()


def _booster(estimator: Any) -> Any:
    """The booster a fitted LightGBM or XGBoost estimator holds (its rounds so far)."""
    return estimator.booster_ if hasattr(estimator, "booster_") else estimator.get_booster()


def _target_vector(targets: pd.DataFrame) -> Any:
    return targets.iloc[:, 0] if targets.shape[1] == 1 else targets


class Best:
    """The best score so far in one direction, and the epochs since it (min_delta: the margin a
    score must beat the best by)."""

    def __init__(self, direction: Direction, min_delta: float = 0.0) -> None:
        self.direction = direction
        self.min_delta = min_delta
        self.epoch: int | None = None
        self.score = math.nan
        self.since = 0

    def update(self, epoch: int, score: float) -> bool:
        """Take the score of ``epoch``; whether it is the new best."""
        better = self.epoch is None or (
            score > self.score + self.min_delta
            if self.direction == "maximize"
            else score < self.score - self.min_delta
        )
        if better:
            self.epoch, self.score, self.since = epoch, score, 0
        else:
            self.since += 1
        return better


def checkpoints_to_delete(epochs: Iterable[int], keep_last: int, best: int | None) -> list[int]:
    """Which checkpoint epochs go: all but the ``keep_last`` newest and ``best`` (None: no best kept)."""
    ordered = sorted(epochs)
    kept = set(ordered[-keep_last:]) | ({best} if best is not None else set())
    return [epoch for epoch in ordered if epoch not in kept]
