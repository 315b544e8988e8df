"""A search space is checked against the estimator's own constraints at config time, and stepped float
ranges propose values exactly on their steps (0.009, never 0.009000000000000001)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.conftest import write_config
from tests.jobs.test_tuning import TUNING as TUNING_TEMPLATE
from trainyard.config import OVERRIDES, load_settings
from trainyard.core.models import SklearnModel
from trainyard.errors import ConfigurationError
from trainyard.tuning.searchers import GridSearcher, OptunaSearcher, RandomSearcher, Searcher
from trainyard.tuning.spaces import check_space, on_step, parse_dimension

# The tuning config of the tuning tests, with a small random search.
TUNING = TUNING_TEMPLATE.replace(
    "SEARCHER",
    """
    KIND: random
    n_trials: 3
    space:
      max_depth: range(2, 10)""",
)


def space_error(tmp_path: Path, *overrides: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_settings([write_config(tmp_path, TUNING)], list(overrides))
    return str(caught.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "criterion=[squared_error, nonsense]",
            "criterion = ['squared_error', 'nonsense']: DecisionTreeRegressor refuses choice 'nonsense': "
            "The 'criterion' parameter of DecisionTreeRegressor must be a str among",
        ),
        (
            "criterion=[nonsense, squared_error, bogus]",
            "DecisionTreeRegressor refuses choices 'nonsense', 'bogus': The 'criterion' parameter",
        ),
        ("criterion=nonsense", "criterion = 'nonsense': DecisionTreeRegressor refuses value 'nonsense'"),
        (
            "max_depth=range(1.5, 3)",  # a float range for an int parameter
            "max_depth = 'range(1.5, 3)': DecisionTreeRegressor refuses low 1.5 and high 2.5 of float in "
            "[1.5, 2.5] step 1.0: The 'max_depth' parameter of DecisionTreeRegressor must be an int",
        ),
        (
            "max_depth=interval(1, 10)",  # always floats, as in Hydra: the message says how to get ints
            "refuses low 1.0 and high 10.0 of float in [1.0, 10.0]: The 'max_depth' parameter of "
            "DecisionTreeRegressor must be an int in the range [1, inf) or None. Got 1.0 instead. "
            "(the range gives floats: for ints, give int bounds, type: int, or int(...))",
        ),
        (
            "min_samples_split={type: int, low: 0, high: 5}",
            "min_samples_split: DecisionTreeRegressor refuses low 0 of int in [0, 5]: The 'min_samples_split' "
            "parameter of DecisionTreeRegressor must be an int in the range [2, inf)",
        ),
        (
            "min_weight_fraction_leaf={type: float, low: 0.1, high: 0.9, step: 0.1}",
            "DecisionTreeRegressor refuses high 0.9 of float in [0.1, 0.9] step 0.1: "
            "The 'min_weight_fraction_leaf' parameter of DecisionTreeRegressor must be a float in the range "
            "[0.0, 0.5]. Got 0.9 instead.",
        ),
        (
            "max_leaf_nodes=tag(log, range(1, 100))",  # a log range: its bounds are checked too
            "max_leaf_nodes = 'tag(log, range(1, 100))': DecisionTreeRegressor refuses low 1 of int in [1, 100] log",
        ),
        (
            "ccp_alpha=tag(log, interval(1e-3, 10))",
            "",  # valid
        ),
    ],
)
def test_refused_values_are_config_errors_naming_field_value_and_expectation(
    tmp_path: Path, override: str, expected: str
) -> None:
    override = f"job.searcher.space.{override}"
    if not expected:
        assert load_settings([write_config(tmp_path, TUNING)], [override]).job.KIND == "tuning"
        return
    message = space_error(tmp_path, override)
    assert message.startswith("invalid config (1 problem):")
    assert f"\n  {OVERRIDES}: {override.partition('=')[0]}" in message and expected in message


def test_the_error_names_the_file_that_set_the_value(tmp_path: Path) -> None:
    config = write_config(tmp_path, TUNING.replace("range(2, 10)", "range(0, 10)"))
    with pytest.raises(ConfigurationError) as caught:
        load_settings([config])
    assert (
        f"{config}: job.searcher.space.max_depth = 'range(0, 10)': DecisionTreeRegressor refuses low 0"
        in str(caught.value)
    )


def test_every_refused_parameter_is_a_problem(tmp_path: Path) -> None:
    message = space_error(
        tmp_path, "job.searcher.space.criterion=[nonsense]", "job.searcher.space.splitter=[best, worst]"
    )
    assert message.startswith("invalid config (2 problems):")
    assert "job.searcher.space.criterion" in message and "job.searcher.space.splitter" in message
    assert "job.searcher.space.max_depth" not in message


def test_values_are_checked_as_trials_merge_them_over_the_fixed_params(tmp_path: Path) -> None:
    fixed = "job.model.params={random_state: 0, max_depth: 3}"
    message = space_error(tmp_path, fixed, "job.searcher.space={max_depth: [0, 3]}")
    assert "job.searcher.space.max_depth = [0, 3]: DecisionTreeRegressor refuses choice 0" in message
    ridge = TUNING.replace(
        "DecisionTreeRegressor, params: {random_state: 0}", "Ridge, params: {solver: lbfgs}"
    )
    config = write_config(tmp_path, ridge.replace("max_depth: range(2, 10)", "positive: [true]"))
    settings_ = load_settings([config])  # lbfgs needs positive=True: the searched value gives it
    assert settings_.job.KIND == "tuning"


@pytest.mark.parametrize(
    "space",
    [
        {"max_depth": "range(2, 10)"},
        {"max_depth": "range(2, 11, step=3)"},  # high cut to 8, as in Hydra and Optuna
        {"max_depth": "int(interval(1, 5))"},
        {"max_depth": "tag(log, range(1, 100))"},
        {"max_depth": [None, 2, 4]},
        {"min_samples_split": "range(0.1, 1.0, step=0.1)"},  # a fraction of the rows
        {"min_samples_split": "range(2, 20)"},
        {"min_samples_split": "interval(0.01, 1)"},
        {"max_features": ["sqrt", "log2", None, 0.5, 3]},
        {"min_weight_fraction_leaf": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1}},
        {"ccp_alpha": "tag(log, interval(1e-5, 10))"},
        {"criterion": "choice(squared_error, absolute_error, poisson)"},
        {"random_state": 7},
    ],
)
def test_valid_spaces_stay_valid(space: dict[str, Any]) -> None:
    model = SklearnModel(estimator="DecisionTreeRegressor", params={"random_state": 0})
    check_space(model, space, at=("searcher", "space"))


def test_check_space_locates_its_problems() -> None:
    model = SklearnModel(estimator="DecisionTreeRegressor")
    with pytest.raises(ValidationError) as caught:
        check_space(model, {"max_depth": [0, 3], "criterion": "poisson"}, at=("searcher", "space"))
    [problem] = caught.value.errors()
    assert problem["loc"] == ("searcher", "space", "max_depth") and problem["input"] == [0, 3]
    assert "refuses choice 0" in problem["msg"]


# Stepped float ranges: exact decimals in the grid and in every sampler's proposals


def test_on_step_puts_optunas_binary_sums_on_the_decimal_step() -> None:
    assert 0.001 + 8 * 0.001 == 0.009000000000000001  # what Optuna computes
    assert on_step(0.009000000000000001, 0.001, 0.02, 0.001) == 0.009
    assert on_step(0.0094, 0.001, 0.02, 0.001) == 0.009
    assert on_step(-1.0, 0.001, 0.02, 0.001) == 0.001 and on_step(1.0, 0.001, 0.02, 0.001) == 0.02
    assert on_step(0.30000000000000004, 0.1, 0.7, 0.1) == 0.3


def places(*numbers: Decimal) -> int:
    return max(0, *(-int(number.normalize().as_tuple().exponent) for number in numbers))


def suggested(searcher: Searcher, n_trials: int) -> list[Any]:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=searcher.sampler())

    def objective(trial: optuna.Trial) -> float:  # as the tuning job suggests
        dimension = searcher.dimensions["x"]
        if dimension.kind == "int":
            value = trial.suggest_int(
                "x", int(dimension.low or 0), int(dimension.high or 0), step=int(dimension.step or 1)
            )
        else:
            value = trial.suggest_float("x", dimension.low or 0, dimension.high or 0, step=dimension.step)
        return abs(float(value) - 0.5)

    study.optimize(objective, n_trials=n_trials)
    return [trial.params["x"] for trial in study.trials]


@settings(max_examples=25, deadline=None)
@given(
    low=st.decimals(0, 10, places=4),
    step=st.decimals(Decimal("0.0001"), 1, places=4),
    count=st.integers(1, 40),
    seed=st.integers(0, 2**16),
    mapping=st.booleans(),
)
def test_stepped_float_values_are_exact_decimals(
    low: Decimal, step: Decimal, count: int, seed: int, mapping: bool
) -> None:
    high = low + count * step
    space = (
        {"type": "float", "low": float(low), "high": float(high), "step": float(step)}
        if mapping
        else f"range({low}, {high}, step={step})"
    )
    decimals = places(low, step)
    grid = parse_dimension(space).grid_values()
    assert len(grid) == count + 1
    assert all(isinstance(v, float) and v == round(v, decimals) for v in grid)
    searchers: list[Searcher] = [
        GridSearcher(space={"x": space}),
        RandomSearcher(space={"x": space}, seed=seed),
        OptunaSearcher.model_validate(
            {"space": {"x": space}, "sampler": {"KIND": "tpe", "seed": seed, "n_startup_trials": 2}}
        ),
    ]
    for searcher in searchers:
        values = suggested(searcher, 6)
        assert all(isinstance(v, float) and v == round(v, decimals) for v in values), values
        assert set(values) <= set(grid)


def test_the_reported_case_and_int_ranges_unchanged() -> None:
    space = "range(0.001, 0.02, step=0.001)"
    grid = parse_dimension(space).grid_values()
    assert 0.009 in grid and 0.009000000000000001 not in grid
    values = suggested(RandomSearcher(space={"x": space}, seed=0), 60)
    assert set(values) <= set(grid) and len(set(values)) > 10
    assert (
        suggested(
            RandomSearcher(space={"x": {"type": "float", "low": 0.001, "high": 0.02, "step": 0.001}}, seed=0),
            60,
        )
        == values
    )
    ints = suggested(RandomSearcher(space={"x": "range(3, 30, step=3)"}, seed=0), 30)
    assert all(type(v) is int and v % 3 == 0 and 3 <= v <= 30 for v in ints)
