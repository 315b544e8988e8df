"""Every registered estimator saves with the saver, loads back and predicts; requirements are pinned."""

from __future__ import annotations

import importlib.metadata

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from trainyard.core.estimators import ESTIMATORS
from trainyard.core.models import SklearnModel
from trainyard.core.signers import InferSigner
from trainyard.io.registers import MlflowRegister
from trainyard.io.savers import SklearnSaver, pinned_requirements

FAST_PARAMS = {
    "MLPRegressor": {"max_iter": 50},
    "MLPClassifier": {"max_iter": 50},
    "LGBMRegressor": {"n_estimators": 5, "verbose": -1},
    "LGBMClassifier": {"n_estimators": 5, "verbose": -1},
    "XGBRegressor": {"n_estimators": 5},
    "XGBClassifier": {"n_estimators": 5},
    "QuantileRegressor": {"alpha": 0.0},
}


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = load_iris(as_frame=True)
    return data.data.rename(
        columns=lambda c: c.replace(" (cm)", "").replace(" ", "_")
    ), data.target.to_frame()


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_estimator_saves_and_loads(
    name: str, iris: tuple[pd.DataFrame, pd.DataFrame], tracking_uri: str
) -> None:
    inputs, targets = iris
    model = SklearnModel(estimator=name, params=FAST_PARAMS.get(name, {})).fit(inputs, targets)
    outputs = model.predict(inputs)
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run():
        info = SklearnSaver(input_example_rows=2).save(
            model.fitted(), InferSigner().sign(inputs, outputs), inputs
        )
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert np.allclose(np.asarray(loaded.predict(inputs.head(20))).ravel(), outputs["prediction"].head(20))


def test_requirements_are_pinned_from_installed_versions(iris: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    inputs, targets = iris
    pinned = pinned_requirements(SklearnModel(estimator="Ridge").fit(inputs, targets).fitted())
    assert f"scikit-learn=={importlib.metadata.version('scikit-learn')}" in pinned
    assert all("==" in requirement for requirement in pinned)
    boosted = SklearnModel(estimator="LGBMClassifier", params=FAST_PARAMS["LGBMClassifier"]).fit(
        inputs, targets
    )
    assert f"lightgbm=={importlib.metadata.version('lightgbm')}" in pinned_requirements(boosted.fitted())


def test_register_creates_versions_with_alias_and_tags(
    iris: tuple[pd.DataFrame, pd.DataFrame], tracking_uri: str
) -> None:
    inputs, targets = iris
    model = SklearnModel(estimator="DecisionTreeClassifier").fit(inputs, targets)
    mlflow.set_tracking_uri(tracking_uri)
    register = MlflowRegister(name="iris", alias="challenger", tags={"team": "flowers"})
    versions = []
    for _ in range(2):
        with mlflow.start_run():
            info = SklearnSaver().save(
                model.fitted(), InferSigner().sign(inputs, model.predict(inputs)), inputs
            )
        versions.append(register.register(info))
    assert [v.version for v in versions] == ["1", "2"] or [int(v.version) for v in versions] == [1, 2]
    client = mlflow.MlflowClient()
    aliased = client.get_model_version_by_alias("iris", "challenger")
    assert int(aliased.version) == 2 and aliased.tags == {"team": "flowers"}
