"""The model kit: every model fits, predicts a row per input row, and refuses to predict unfitted.

A case is a configured model. By default: ``SklearnModel`` once per estimator of the registry
(``ESTIMATORS``) whose package is installed, with small budgets for the slow ones (``QUICK_PARAMS``)
and ``random_state: 0`` where the estimator has one; every other kind of the union with its defaults;
then the kit subclass's ``variants`` (preprocessing options, other parameters). Classifiers learn
iris (three classes), regressors the first 150 rows of diabetes; columns a case names as categorical
are added as text when the data lacks them. The rows are labelled from 1000.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
from pydantic import ValidationError

from trainyard.core.estimators import ESTIMATORS, estimator_class
from trainyard.core.models import PREDICTION, Model, SklearnModel
from trainyard.errors import TrainyardError
from trainyard.testing import data
from trainyard.testing.components import ComponentKit, config_of, configured_id, kinds_of, settings_text

if TYPE_CHECKING:
    import pandas as pd

QUICK_PARAMS: dict[str, dict[str, Any]] = {
    "AdaBoostClassifier": {"n_estimators": 10},
    "AdaBoostRegressor": {"n_estimators": 10},
    "BaggingClassifier": {"n_estimators": 5},
    "BaggingRegressor": {"n_estimators": 5},
    "ElasticNetCV": {"cv": 3},
    "ExtraTreesClassifier": {"n_estimators": 20},
    "ExtraTreesRegressor": {"n_estimators": 20},
    "GradientBoostingClassifier": {"n_estimators": 20},
    "GradientBoostingRegressor": {"n_estimators": 20},
    "HistGradientBoostingClassifier": {"max_iter": 20},
    "HistGradientBoostingRegressor": {"max_iter": 20},
    "LassoCV": {"cv": 3},
    "LGBMClassifier": {"n_estimators": 5, "verbose": -1, "n_jobs": 1},
    "LGBMRegressor": {"n_estimators": 5, "verbose": -1, "n_jobs": 1},
    "LogisticRegression": {"max_iter": 1000},
    "LogisticRegressionCV": {"Cs": 3, "cv": 3, "max_iter": 1000},
    "MLPClassifier": {"max_iter": 50},
    "MLPRegressor": {"max_iter": 50},
    "PoissonRegressor": {"solver": "newton-cholesky"},
    "QuantileRegressor": {"alpha": 0.0},
    "RandomForestClassifier": {"n_estimators": 20},
    "RandomForestRegressor": {"n_estimators": 20},
    "XGBClassifier": {"n_estimators": 5, "n_jobs": 1},
    "TweedieRegressor": {"solver": "newton-cholesky"},
    "XGBRegressor": {"n_estimators": 5, "n_jobs": 1},
}
"""Small budgets for the registry's slower estimators (the kit checks behaviour, not accuracy), and
one thread for the libraries that start their own pools."""


def registered(name: str, **params: Any) -> SklearnModel:
    """``SklearnModel`` of estimator ``name`` with its quick params, ``params`` and a fixed seed."""
    chosen = {**QUICK_PARAMS.get(name, {}), **params}
    if "random_state" in estimator_class(name)().get_params():
        chosen.setdefault("random_state", 0)
    return SklearnModel(estimator=name, params=chosen)


def installed_estimators() -> list[str]:
    """The registered estimator names whose package is installed, sorted."""
    return sorted(
        name for name, module in ESTIMATORS.items() if importlib.util.find_spec(module.split(".")[0])
    )


def fresh(model: Model) -> Model:
    """A new, unfitted model of ``model``'s config (cases are shared: checks never fit them)."""
    return type(model).model_validate(config_of(model))


def seeded(model: Model) -> Model:
    """``model`` with ``random_state: 0`` where its estimator takes one and the config leaves it unset."""
    if not isinstance(model, SklearnModel) or model.params.get("random_state") is not None:
        return model
    if "random_state" not in estimator_class(model.estimator)().get_params():
        return model
    return model.model_validate({**config_of(model), "params": {**model.params, "random_state": 0}})


def rows_for(model: Model) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Inputs and targets the model learns: classes for a classifier, numbers for a regressor, with
    every categorical column it names (text in three levels, when the data has no such column)."""
    import pandas as pd

    inputs, targets = data.classification() if model.is_classifier else data.regression(150)
    for number, column in enumerate(getattr(model, "categorical", [])):
        if column not in inputs.columns:
            source = inputs.iloc[:, number % inputs.shape[1]]
            inputs[column] = pd.qcut(source, 3, labels=["low", "mid", "high"]).astype(str)
    return inputs, targets


@dataclass(frozen=True)
class Fit:
    """A model fitted once for the checks that only look at a fitted model."""

    model: Model
    returned: object
    config_before: dict[str, Any]
    inputs: pd.DataFrame
    targets: pd.DataFrame


def fit_once(case: Model) -> Fit:
    """A fresh model of ``case`` fitted on its rows, with what fit() returned and the config before."""
    model = fresh(case)
    inputs, targets = rows_for(model)
    before = config_of(model)
    returned = model.fit(inputs, targets)
    return Fit(model, returned, before, inputs, targets)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
class ModelKit(ComponentKit[Model]):
    """Checks of every model: fit, predict, predict_proba, the unfitted model, determinism.

    ``several_targets`` are the models the check of two target columns runs on (estimators that
    take several outputs: the others refuse them at fit, as they must).
    """

    variants: ClassVar[Sequence[Model]] = ()
    several_targets: ClassVar[Sequence[Model]] = (
        registered("Ridge"),
        registered("DecisionTreeClassifier"),
    )

    def cases(self) -> Sequence[Model]:
        """Each registered, installed estimator as a ``SklearnModel`` (if it is in the union), each
        other kind with its defaults, then ``variants``."""
        cases: list[Model] = []
        for kind in kinds_of(self.union):
            if kind is SklearnModel:
                cases += [registered(name) for name in installed_estimators()]
                continue
            try:
                cases.append(kind())
            except ValidationError as error:
                if not any(type(variant) is kind for variant in self.variants):
                    raise TypeError(
                        f"{kind.__name__} has no defaults: list configured ones in {type(self).__name__}.variants"
                    ) from error
        return [*cases, *self.variants]

    def parameters(self) -> dict[str, Sequence[Any]]:
        return {**super().parameters(), "multi_output": self.several_targets}

    def case_id(self, case: Model) -> str:
        """The estimator's name, with the settings that differ from its registered config."""
        if not isinstance(case, SklearnModel):
            return configured_id(case)
        usual = (
            registered(case.estimator)
            if case.estimator in ESTIMATORS
            else SklearnModel(estimator=case.estimator)
        )
        changed = config_of(case, exclude_defaults=True, mode="json")
        for key in ("KIND", "estimator", "params"):
            changed.pop(key, None)
        changed |= {name: value for name, value in case.params.items() if usual.params.get(name) != value}
        return f"{case.estimator}{settings_text(changed)}"

    def component(self, case: Model) -> Model:
        return fresh(case)

    @pytest.fixture(scope="class", autouse=True)
    def one_native_thread(self) -> Iterator[None]:
        """Fits run with one native (OpenMP, BLAS) thread: tests run one process per core, and the
        spinning threads of fits in two processes at once slowed them tenfold (runtime/threads.py)."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            yield

    @pytest.fixture(scope="class")
    def fit(self, case: Model) -> Fit:
        """The case's model fitted once on its rows (for the checks that only read it)."""
        return fit_once(case)

    def test_fit_returns_the_model_fitted(self, case: Model, fit: Fit) -> None:
        """fit() returns the model itself, fitted, its config unchanged; ``is_classifier`` says what
        the fitted estimator is."""
        assert fit.returned is fit.model, f"fit() returned {fit.returned!r}, not the model"
        assert config_of(fit.model) == fit.config_before, "fit() changed the model's config"
        fitted = fit.model.fitted()
        assert fitted is not None, "fitted() gave None after fit()"
        if hasattr(fitted, "get_params"):  # scikit-learn's own checks, for its estimators
            from sklearn.base import is_classifier
            from sklearn.utils.validation import check_is_fitted

            check_is_fitted(fitted)
            assert fit.model.is_classifier == is_classifier(fitted), "is_classifier disagrees with the fit"

    def test_predict_gives_a_prediction_per_input_row(self, case: Model, fit: Fit) -> None:
        """predict() is a DataFrame of one ``prediction`` column with a value for each input row,
        indexed like the inputs (any rows, in any order); a classifier predicts the classes it saw."""
        import pandas as pd

        some = fit.inputs.iloc[[7, 0, 3]]
        for inputs in (fit.inputs, some):
            predicted = fit.model.predict(inputs)
            assert isinstance(predicted, pd.DataFrame), f"predict() gave a {type(predicted).__name__}"
            assert list(predicted.columns) == [PREDICTION], f"columns {list(predicted.columns)}"
            assert predicted.index.equals(inputs.index), (
                f"indexed {list(predicted.index[:5])}..., the inputs {list(inputs.index[:5])}..."
            )
            assert not predicted[PREDICTION].isna().any(), "predict() left missing values"
        if fit.model.is_classifier:
            seen = set(fit.targets.iloc[:, 0])
            unseen = set(fit.model.predict(fit.inputs)[PREDICTION]) - seen
            assert not unseen, f"predicted classes it never saw: {sorted(unseen)}"

    def test_predict_proba_rows_are_distributions(self, case: Model, fit: Fit) -> None:
        """A classifier with probabilities gives one column per class, each row summing to 1; with
        ``labels``, one column per label in that order (0 for a label the fit never saw). A model
        without probabilities refuses with a TrainyardError."""
        import numpy as np

        model, inputs = fit.model, fit.inputs
        predicts = getattr(model, "predicts_probabilities", lambda: model.is_classifier)()
        if not (model.is_classifier and predicts):
            with pytest.raises(TrainyardError):
                model.predict_proba(inputs)
            return
        classes = sorted(set(fit.targets.iloc[:, 0]))
        probas = np.asarray(model.predict_proba(inputs))
        assert probas.shape == (len(inputs), len(classes)), f"shape {probas.shape}, {len(classes)} classes"
        assert ((probas >= 0) & (probas <= 1)).all(), "probabilities outside [0, 1]"
        assert np.allclose(probas.sum(axis=1), 1.0), f"rows sum to {probas.sum(axis=1)[:5]}..."
        labels = [*reversed(classes), 99]
        relabelled = np.asarray(model.predict_proba(inputs, labels))
        assert relabelled.shape == (len(inputs), len(labels)), f"with labels: shape {relabelled.shape}"
        assert np.allclose(relabelled[:, :-1], probas[:, ::-1]), "labels did not order the columns"
        assert (relabelled[:, -1] == 0).all(), "a label the fit never saw has a probability"

    def test_an_unfitted_model_refuses_to_predict(self, case: Model) -> None:
        """predict(), predict_proba() and fitted() before fit() raise a TrainyardError saying so."""
        model = fresh(case)
        inputs, _ = rows_for(model)
        for name, call in (
            ("predict", lambda: model.predict(inputs)),
            ("predict_proba", lambda: model.predict_proba(inputs)),
            ("fitted", model.fitted),
        ):
            with pytest.raises(TrainyardError) as caught:
                call()
            assert "fitted" in str(caught.value), (
                f"{name}() said {str(caught.value)!r}, not that it is unfitted"
            )

    def test_fit_is_deterministic(self, case: Model, fit: Fit) -> None:
        """Two fits of one config (``random_state`` fixed where the estimator has one) on the same rows
        predict the same values and probabilities."""
        import numpy as np

        fixed = seeded(case)
        first = (
            fit.model if config_of(fixed) == config_of(case) else fresh(fixed).fit(fit.inputs, fit.targets)
        )
        second = fresh(fixed).fit(fit.inputs, fit.targets)
        one, other = first.predict(fit.inputs)[PREDICTION], second.predict(fit.inputs)[PREDICTION]
        if first.is_classifier:
            assert (one == other).all(), "two fits predict different classes"
        else:
            assert np.allclose(one, other, rtol=1e-9, atol=0), "two fits predict different values"
        if first.is_classifier and getattr(first, "predicts_probabilities", lambda: False)():
            assert np.allclose(first.predict_proba(fit.inputs), second.predict_proba(fit.inputs), rtol=1e-9)

    def test_several_target_columns(self, multi_output: Model) -> None:
        """A model fitted on two target columns refuses them with a TrainyardError, or predicts both:
        a DataFrame of a row per input row and a column per target."""
        import numpy as np
        import pandas as pd

        model = fresh(multi_output)
        inputs, targets = rows_for(model)
        first = targets.iloc[:, 0]
        second = (first == first.iloc[0]) if model.is_classifier else np.log(first)
        targets = targets.assign(second=second.astype(first.dtype) if model.is_classifier else second)
        try:
            model.fit(inputs, targets)
        except TrainyardError:
            return  # refused, clearly: the contract holds
        predicted = model.predict(inputs)
        assert isinstance(predicted, pd.DataFrame) and predicted.shape == (len(inputs), 2), (
            f"predict() gave {type(predicted).__name__} {getattr(predicted, 'shape', '')}"
        )
        assert predicted.index.equals(inputs.index)
