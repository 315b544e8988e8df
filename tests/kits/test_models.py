"""Every model kind of the jobs (ModelKind) through the model kit: SklearnModel once per registered
estimator, and the preprocessing options and parameters below."""

from __future__ import annotations

from trainyard.core.models import ModelKind, SklearnModel
from trainyard.testing.models import ModelKit, registered


class TestModelKinds(ModelKit):
    union = ModelKind
    variants = (
        SklearnModel(estimator="Ridge", scale=True, impute=False),
        SklearnModel(estimator="LogisticRegression", params={"max_iter": 1000}, categorical=["soil"]),
        SklearnModel(
            estimator="HistGradientBoostingClassifier",
            params={"max_iter": 20, "random_state": 0},
            categorical=["soil"],
            encoding="ordinal",
        ),
        registered("SVC", probability=True),
    )
