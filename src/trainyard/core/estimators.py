"""The registry of estimators a config may name, and how to import them."""

from __future__ import annotations

import importlib
import re
from typing import Any

from trainyard.errors import ConfigurationError, did_you_mean

_SKLEARN = {
    "sklearn.linear_model": [
        "LinearRegression",
        "Ridge",
        "RidgeCV",
        "Lasso",
        "LassoCV",
        "ElasticNet",
        "ElasticNetCV",
        "HuberRegressor",
        "BayesianRidge",
        "SGDRegressor",
        "QuantileRegressor",
        "PoissonRegressor",
        "TweedieRegressor",
        "LogisticRegression",
        "LogisticRegressionCV",
        "RidgeClassifier",
        "SGDClassifier",
        "Perceptron",
    ],
    "sklearn.ensemble": [
        "RandomForestRegressor",
        "RandomForestClassifier",
        "ExtraTreesRegressor",
        "ExtraTreesClassifier",
        "GradientBoostingRegressor",
        "GradientBoostingClassifier",
        "HistGradientBoostingRegressor",
        "HistGradientBoostingClassifier",
        "AdaBoostRegressor",
        "AdaBoostClassifier",
        "BaggingRegressor",
        "BaggingClassifier",
    ],
    "sklearn.tree": [
        "DecisionTreeRegressor",
        "DecisionTreeClassifier",
        "ExtraTreeRegressor",
        "ExtraTreeClassifier",
    ],
    "sklearn.neighbors": ["KNeighborsRegressor", "KNeighborsClassifier"],
    "sklearn.svm": ["SVR", "LinearSVR", "SVC", "LinearSVC"],
    "sklearn.neural_network": ["MLPRegressor", "MLPClassifier"],
    "sklearn.naive_bayes": ["GaussianNB"],
    "sklearn.dummy": ["DummyRegressor", "DummyClassifier"],
}
_EXTRAS = {
    "lightgbm": ["LGBMRegressor", "LGBMClassifier"],
    "xgboost": ["XGBRegressor", "XGBClassifier"],
}
EXTRA_INSTALL_HINT = "install the optional extra: pip install 'trainyard[boost]'"

ESTIMATORS: dict[str, str] = {
    name: module for table in (_SKLEARN, _EXTRAS) for module, names in table.items() for name in names
}


IMPORT_PATHS_FLAG = "--allow-import-paths"
IMPORT_PATHS_ENV = "TRAINYARD_ALLOW_IMPORT_PATHS"
HOW_TO_ALLOW = (
    f"import paths run the code of the module they name, so they are refused unless this run allows "
    f"them: trainyard run {IMPORT_PATHS_FLAG} ..., or {IMPORT_PATHS_ENV}=1"
)
_IMPORT_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")


def is_import_path(name: str) -> bool:
    """Whether ``name`` is a ``package.module:Class`` path rather than a registered name."""
    return ":" in name


def check_estimator_name(name: str, allow_import_paths: bool) -> None:
    """Raise a ValueError (for pydantic) when ``name`` is neither registered nor an allowed path.

    A registered name imports nothing here. An import path is refused, without importing anything,
    unless ``allow_import_paths``; allowed, it is imported and must name a scikit-learn-compatible
    estimator class (``fit`` and ``get_params``) or a model of your own that trains in epochs
    (``OWN_METHODS``), checked on the class: no instance is made.
    """
    if name in ESTIMATORS:
        return
    if is_import_path(name):
        if not allow_import_paths:
            raise ValueError(
                f"import paths are not accepted here ({name!r}): use a registered name; {HOW_TO_ALLOW}"
            )
        try:
            estimator_class(name)
        except ConfigurationError as error:
            raise ValueError(str(error)) from None
        return
    raise ValueError(
        f"unknown estimator {name!r}.{did_you_mean(name, list(ESTIMATORS))} Valid names: {', '.join(sorted(ESTIMATORS))}; "
        f"or an import path 'package.module:Class' in a run started with {IMPORT_PATHS_FLAG}"
    )


def estimator_class(name: str) -> Any:
    """Import the estimator class that ``name`` designates (a registered name or an import path).

    Callers validate ``name`` first (``check_estimator_name``): this function imports what it is given.
    """
    if not is_import_path(name):
        return _imported(ESTIMATORS[name], name, name)
    if not _IMPORT_PATH.fullmatch(name):
        raise ConfigurationError(f"import path {name!r} is not of the form 'package.module:Class'")
    module_name, _, class_name = name.partition(":")
    klass = _imported(module_name, class_name, name)
    if isinstance(klass, type) and any(hasattr(klass, method) for method in _OWN_ONLY):
        missing = missing_own_methods(klass)
        if missing:
            raise ConfigurationError(
                f"{name!r} looks like a model of your own that trains in epochs, but lacks "
                f"{', '.join(missing)}: it needs {', '.join(OWN_METHODS)} (load_state a classmethod; "
                "see docs/iterative.md)"
            )
        return klass
    if not _is_estimator_class(klass):
        raise ConfigurationError(
            f"{name!r} is not a scikit-learn-compatible estimator: expected a class with fit and "
            f"get_params methods, or a model of your own that trains in epochs, with "
            f"{', '.join(OWN_METHODS)} (docs/iterative.md); got {_describe(klass)}"
        )
    return klass


# A model of your own that trains in epochs (core/own_models.py): what its class must have.
OWN_METHODS = ("fit_epoch", "predict", "save_state", "load_state")
_OWN_ONLY = ("fit_epoch", "save_state", "load_state")


def missing_own_methods(klass: type) -> list[str]:
    """The methods of a model of your own that ``klass`` lacks (load_state must be a classmethod)."""
    missing = [method for method in OWN_METHODS if not callable(getattr(klass, method, None))]
    load = klass.__dict__.get("load_state") or next(
        (base.__dict__["load_state"] for base in klass.__mro__ if "load_state" in base.__dict__), None
    )
    if load is not None and not isinstance(load, classmethod | staticmethod):
        missing.append("load_state as a classmethod")
    return missing


def is_own_model(klass: Any) -> bool:
    """Whether ``klass`` is a model of your own that trains in epochs (has every ``OWN_METHODS``)."""
    return isinstance(klass, type) and hasattr(klass, "fit_epoch") and not missing_own_methods(klass)


def own_model_is_classifier(klass: type) -> bool:
    """A model of your own is a classifier when it has ``predict_proba``."""
    return callable(getattr(klass, "predict_proba", None))


def _imported(module_name: str, class_name: str, name: str) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        hint = f"; {EXTRA_INSTALL_HINT}" if module_name in _EXTRAS else ""
        raise ConfigurationError(
            f"estimator {name!r} needs {module_name!r}, which is not installed{hint}"
        ) from error
    try:
        return getattr(module, class_name)
    except AttributeError as error:
        raise ConfigurationError(f"module {module_name!r} has no class {class_name!r}") from error


def _is_estimator_class(candidate: object) -> bool:
    return isinstance(candidate, type) and all(
        callable(getattr(candidate, method, None)) for method in ("fit", "get_params")
    )


def _describe(candidate: object) -> str:
    if isinstance(candidate, type):
        return f"the class {candidate.__name__}, which lacks fit or get_params"
    return f"a {type(candidate).__name__}"
