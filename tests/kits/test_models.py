"""Every model kind of the jobs (ModelKind) through the model kit: SklearnModel once per registered
estimator, and the preprocessing options and parameters below."""

from __future__ import annotations

from trainyard.core.models import ModelKind, SklearnModel
from trainyard.testing.models import ModelKit, registered

SEVERAL_TARGETS = (
    "defect: SklearnModel.fit takes several target columns (_target_vector passes the frame on) and "
    "the estimator fits them, but predict() puts its 2-D output into the one 'prediction' column, "
    "where pandas raises ValueError 'Data must be 1-dimensional' (a job would crash after the fit)"
)


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
    expected_failures = {
        ("test_several_target_columns", "Ridge"): SEVERAL_TARGETS,
        ("test_several_target_columns", "DecisionTreeClassifier"): SEVERAL_TARGETS,
    }
