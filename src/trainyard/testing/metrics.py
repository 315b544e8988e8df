"""The metric kit: every metric has a direction that ranks a perfect prediction above a bad one.

A case is a configured metric: one per name the union's ``KIND`` Literal accepts (so a metric added
to ``MetricName`` is checked at once), then the kit subclass's ``variants`` (other averages, say).
Regression metrics score a positive target (diabetes); classification metrics score two and three
classes, with labels or with probabilities as the metric asks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from trainyard.core.metrics import Metric
from trainyard.testing import data
from trainyard.testing.components import (
    ComponentKit,
    adapter_of,
    config_of,
    configured_id,
    kind_values,
    kinds_of,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass(frozen=True)
class Task:
    """Targets with a perfect and a bad prediction of them (labels, and probabilities for classes)."""

    name: str
    targets: pd.DataFrame
    perfect: pd.DataFrame
    bad: pd.DataFrame
    perfect_probas: np.ndarray | None = None
    bad_probas: np.ndarray | None = None
    labels: list[Any] | None = None


def regression_task() -> Task:
    """A positive target; the bad prediction is the target in reverse order."""
    import pandas as pd

    _, targets = data.regression(100)
    truth = targets.iloc[:, 0]
    perfect = pd.DataFrame({"prediction": truth.to_numpy()}, index=targets.index)
    bad = pd.DataFrame({"prediction": truth.to_numpy()[::-1]}, index=targets.index)
    return Task("regression", targets, perfect, bad)


def classification_task(classes: int) -> Task:
    """``classes`` balanced classes 0..classes-1; the bad prediction is always the next class, with
    probability 0.9 (a confident mistake on every row)."""
    import numpy as np
    import pandas as pd

    labels = np.tile(np.arange(classes), 20)
    wrong = (labels + 1) % classes
    index = pd.RangeIndex(data.FIRST_LABEL, data.FIRST_LABEL + len(labels))
    perfect_probas = np.eye(classes)[labels]
    bad_probas = np.full((len(labels), classes), 0.1 / (classes - 1))
    bad_probas[np.arange(len(labels)), wrong] = 0.9
    return Task(
        f"{classes} classes",
        pd.DataFrame({"label": labels}, index=index),
        pd.DataFrame({"prediction": labels}, index=index),
        pd.DataFrame({"prediction": wrong}, index=index),
        perfect_probas,
        bad_probas,
        list(range(classes)),
    )


class MetricKit(ComponentKit[Metric]):
    """Checks of every metric: its direction, its use of probabilities, its name."""

    variants: ClassVar[Sequence[Metric]] = ()

    def cases(self) -> Sequence[Metric]:
        """One metric per name of each kind's ``KIND`` Literal, then ``variants``."""
        named = [
            kind.model_validate({"KIND": name}) for kind in kinds_of(self.union) for name in kind_values(kind)
        ]
        return [*named, *self.variants]

    def case_id(self, case: Metric) -> str:
        return configured_id(case)

    def component(self, case: Metric) -> Metric:
        return case

    @staticmethod
    def tasks(metric: Metric) -> Iterator[Task]:
        """The tasks ``metric`` applies to."""
        if metric.for_classifiers:
            yield classification_task(2)
            yield classification_task(3)
        else:
            yield regression_task()

    def test_direction_is_maximize_or_minimize(self, case: Metric) -> None:
        """``direction`` is what Optuna and the jobs compare scores with."""
        assert case.direction in ("maximize", "minimize"), f"direction {case.direction!r}"

    def test_a_perfect_prediction_scores_better_than_a_bad_one(self, case: Metric) -> None:
        """Scored as ``direction`` says, an exact prediction beats a confidently wrong one: the score
        is a finite float on both, and strictly better on the perfect one."""
        for task in self.tasks(case):
            perfect = case.score(task.targets, task.perfect, task.perfect_probas, task.labels)
            bad = case.score(task.targets, task.bad, task.bad_probas, task.labels)
            for which, score in (("perfect", perfect), ("bad", bad)):
                assert isinstance(score, float) and math.isfinite(score), (
                    f"{task.name}: the {which} prediction scored {score!r}"
                )
            better = perfect > bad if case.direction == "maximize" else perfect < bad
            assert better, (
                f"{task.name}: {case.name} ({case.direction}) scores a perfect prediction {perfect} "
                f"and a bad one {bad}: the direction is wrong"
            )

    def test_probability_metrics_take_probabilities(self, case: Metric) -> None:
        """A ``needs_proba`` metric is a classification metric that scores probabilities (also of rows
        that lack a class of ``labels``, as a fold's test rows may), and refuses to score without them;
        any other metric scores predicted values alone."""
        for task in self.tasks(case):
            if not case.needs_proba:
                score = case.score(task.targets, task.perfect)
                assert math.isfinite(score), f"{task.name}: scored {score} without probabilities"
                continue
            assert case.for_classifiers, f"{case.name} needs probabilities but is not for classifiers"
            assert task.bad_probas is not None and task.labels is not None
            with pytest.raises(ValueError, match="probabilities"):
                case.score(task.targets, task.perfect)
            score = case.score(task.targets, task.perfect, task.bad_probas, task.labels)
            assert math.isfinite(score), f"{task.name}: scored probabilities {score}"
            classes = len(task.labels)
            lacking = (task.targets.iloc[:, 0] != classes - 1).to_numpy()  # rows of the other classes
            if classes > 2:
                score = case.score(
                    task.targets[lacking], task.perfect[lacking], task.bad_probas[lacking], task.labels
                )
                assert math.isfinite(score), f"{task.name}: rows lacking a class scored {score}"

    def test_name_is_stable(self, case: Metric) -> None:
        """``name`` is the metric's ``KIND``, the same after the config is validated again, and a
        config's bare name gives the metric of that name (``metrics: [rmse]``)."""
        assert isinstance(case.name, str) and case.name == case.KIND, f"name {case.name!r} of {case.KIND!r}"
        adapter = adapter_of(self.union)
        assert adapter.validate_python(config_of(case)).name == case.name
        assert adapter.validate_python(case.name).name == case.name
