"""The registry of estimators a config may name, and how to import them."""

from __future__ import annotations

import importlib
from typing import Any

from trainyard.errors import ConfigurationError

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


def is_import_path(name: str) -> bool:
    """Whether ``name`` is a ``package.module:Class`` path rather than a registered name."""
    return ":" in name


def check_estimator_name(name: str, allow_import_paths: bool) -> None:
    """Raise a ValueError (for pydantic) when ``name`` is neither registered nor an allowed path."""
    if name in ESTIMATORS:
        return
    if is_import_path(name):
        if not allow_import_paths:
            raise ValueError(f"import paths are not accepted here ({name!r}); use a registered name")
        return
    import difflib

    close = difflib.get_close_matches(name, ESTIMATORS, n=3)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown estimator {name!r}.{hint} Valid names: {', '.join(sorted(ESTIMATORS))}; "
        "or, from the command line, an import path 'package.module:Class'"
    )


def estimator_class(name: str) -> Any:
    """Import the estimator class that ``name`` designates."""
    module_name, _, class_name = name.partition(":") if is_import_path(name) else (ESTIMATORS[name], "", name)
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
