"""Search spaces: every config form, the Hydra sweeper's expressions, Optuna equivalents, every error."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
import warnings
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from trainyard.tuning.spaces import Dimension, grid_size, parse_dimension, parse_space


def optuna_of(value: object) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna warns when it must adjust a range: we never make it
        return parse_dimension(value).to_optuna()


# Hydra's plugin tests (hydra-optuna-sweeper, tests/test_optuna_sweeper_plugin.py) and docs, in Optuna 5 terms
HYDRA_EXPRESSIONS = [
    ("choice(1,2)", CategoricalDistribution([1, 2])),
    ("choice(32,48,64)", CategoricalDistribution([32, 48, 64])),
    ("choice(gini, entropy)", CategoricalDistribution(["gini", "entropy"])),
    ("choice(true, false)", CategoricalDistribution([True, False])),
    ("choice('hello', 'world')", CategoricalDistribution(["hello", "world"])),
    ("choice(-5.0, 0.0, 5.0)", CategoricalDistribution([-5.0, 0.0, 5.0])),
    (
        "choice(null, 1e-3, 1_000, 'a, b', \"c\", x y)",
        CategoricalDistribution([None, 0.001, 1000, "a, b", "c", "x y"]),
    ),
    ("range(1,3)", IntDistribution(1, 3)),  # stop included: it is Optuna's high
    ("range(3,12)", IntDistribution(3, 12)),
    ("range(1, 10, 2)", IntDistribution(1, 9, step=2)),  # high cut to the last step, as Optuna does
    ("range(5)", IntDistribution(0, 5)),
    ("range(start=2, stop=8, step=3)", IntDistribution(2, 8, step=3)),
    ("range(0.5, 5.5, step=1)", FloatDistribution(0.5, 5.5, step=1)),
    ("range(0.9,1.7,step=0.1)", FloatDistribution(0.9, 1.7, step=0.1)),
    ("range(-5.0, 5.0)", FloatDistribution(-5.0, 5.0, step=1.0)),
    ("range(0, 5, step=0.5)", FloatDistribution(0.0, 5.0, step=0.5)),
    ("interval(0.1,1.0)", FloatDistribution(0.1, 1.0)),
    ("interval(1, 5)", FloatDistribution(1.0, 5.0)),  # always float in Hydra: it casts the bounds
    ("interval(1, 10)", FloatDistribution(1.0, 10.0)),
    ("int(interval(1, 5))", IntDistribution(1, 5)),
    ("int(interval(-5.0, 5.0))", IntDistribution(-5, 5)),
    ("float(range(1, 4))", FloatDistribution(1.0, 4.0, step=1.0)),
    ("tag(log, interval(1, 5))", FloatDistribution(1.0, 5.0, log=True)),
    ("tag(log, interval(1e-4,1e-1))", FloatDistribution(1e-4, 0.1, log=True)),
    ("tag(log, int(interval(1, 5)))", IntDistribution(1, 5, log=True)),
    ("int(tag(log, interval(1, 5)))", IntDistribution(1, 5, log=True)),
    ("tag(log, range(1, 1000))", IntDistribution(1, 1000, log=True)),  # Hydra drops this tag; we keep it
    ("  range( 3 , 12 )  ", IntDistribution(3, 12)),
    # Hydra's sweep list, as written after x= on its command line
    ("32,48,64", CategoricalDistribution([32, 48, 64])),
    ("gini, entropy", CategoricalDistribution(["gini", "entropy"])),
    ("0.1,1,null,true", CategoricalDistribution([0.1, 1, None, True])),
]


@pytest.mark.parametrize(("expression", "expected"), HYDRA_EXPRESSIONS)
def test_hydra_expressions_give_hydras_distributions(expression: str, expected: Any) -> None:
    assert optuna_of(expression) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([0.0, 0.1, 1.0], CategoricalDistribution([0.0, 0.1, 1.0])),
        (["gini", "entropy"], CategoricalDistribution(["gini", "entropy"])),
        ((None, True, 1, 1.0, "1"), CategoricalDistribution([None, True, 1, 1.0, "1"])),
        ({"type": "int", "low": 3, "high": 12, "step": 1, "log": False}, IntDistribution(3, 12)),
        ({"type": "int", "low": 0, "high": 10, "step": 3}, IntDistribution(0, 9, step=3)),
        ({"type": "int", "low": 1.0, "high": 1e3, "log": True}, IntDistribution(1, 1000, log=True)),
        ({"type": "float", "low": 1e-4, "high": 0.1, "log": True}, FloatDistribution(1e-4, 0.1, log=True)),
        ({"type": "float", "low": 0.1, "high": 0.9, "step": 0.1}, FloatDistribution(0.1, 0.9, step=0.1)),
        ({"type": "float", "low": 0, "high": 1}, FloatDistribution(0.0, 1.0)),
        ({"type": "float", "low": 0.5, "high": 0.5}, FloatDistribution(0.5, 0.5)),
        ({"type": "categorical", "choices": ["a", "b"]}, CategoricalDistribution(["a", "b"])),
        (5, CategoricalDistribution([5])),
        (0.5, CategoricalDistribution([0.5])),
        ("gini", CategoricalDistribution(["gini"])),
        ("", CategoricalDistribution([""])),
        (False, CategoricalDistribution([False])),
    ],
)
def test_lists_mappings_and_fixed_values(value: object, expected: Any) -> None:
    assert optuna_of(value) == expected


def test_fixed_values_are_one_choice_categoricals() -> None:
    assert parse_dimension(5).fixed and parse_dimension("choice(5)").fixed
    assert not parse_dimension([5, 6]).fixed and not parse_dimension("range(1, 1)").fixed
    assert parse_dimension("gini").describe() == "fixed 'gini'"


def test_dimensions_are_frozen_hashable_and_equal_across_forms() -> None:
    dimension = parse_dimension("range(1, 10, 2)")
    assert dimension == parse_dimension({"type": "int", "low": 1, "high": 9, "step": 2})
    assert dimension == Dimension("int", low=1, high=10, step=2)
    assert hash(dimension) == hash(Dimension("int", 1, 9, 2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        dimension.low = 2  # type: ignore[misc]
    assert parse_dimension(["a", "b"]).choices == ("a", "b")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("range(3, 12)", "int in [3, 12]"),
        ("range(1, 10, 2)", "int in [1, 9] step 2"),
        ("tag(log, range(1, 1000))", "int in [1, 1000] log"),
        ("tag(log, interval(1e-4, 0.1))", "float in [0.0001, 0.1] log"),
        ("range(0.1, 0.9, 0.1)", "float in [0.1, 0.9] step 0.1"),
        ([0.0, 0.1], "one of [0.0, 0.1]"),
        (3, "fixed 3"),
    ],
)
def test_describe(value: object, text: str) -> None:
    assert parse_dimension(value).describe() == text


@pytest.mark.parametrize(
    ("value", "values"),
    [
        (["gini", "entropy"], ["gini", "entropy"]),
        ("range(3, 6)", [3, 4, 5, 6]),
        ("range(1, 10, 4)", [1, 5, 9]),
        ("range(1, 10, 3)", [1, 4, 7, 10]),
        ("tag(log, range(1, 5))", [1, 2, 3, 4, 5]),
        ("range(0.1, 0.5, 0.1)", [0.1, 0.2, 0.3, 0.4, 0.5]),  # no 0.30000000000000004
        ("range(0.9, 1.7, step=0.1)", [0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7]),
        ("range(0.0, 1.0, 0.3)", [0.0, 0.3, 0.6, 0.9]),
        ("int(interval(2, 4))", [2, 3, 4]),
        (7, [7]),
    ],
)
def test_grid_values(value: object, values: list[object]) -> None:
    dimension = parse_dimension(value)
    assert dimension.grid_values() == values
    assert [type(v) for v in dimension.grid_values()] == [type(v) for v in values]
    assert dimension.grid_count() == len(values)


def test_grid_needs_a_step_for_floats() -> None:
    with pytest.raises(
        ValueError, match=r"a grid needs a step or explicit choices, got float in \[0.1, 1.0\]"
    ):
        parse_dimension("interval(0.1, 1.0)").grid_values()
    space = parse_space({"depth": "range(1, 4)", "rate": "tag(log, interval(0.01, 0.3))"})
    with pytest.raises(ValueError, match=r"^rate: a grid needs a step"):
        grid_size(space)


def test_grid_size_is_the_product() -> None:
    space = parse_space({"a": "range(1, 4)", "b": ["x", "y"], "c": "range(0.1, 0.5, 0.1)", "d": 3})
    assert grid_size(space) == 4 * 2 * 5 * 1
    assert grid_size(space.values()) == 40 and grid_size([]) == 1


def test_parse_space_keeps_order_and_names_errors() -> None:
    space = parse_space({"learning_rate": "tag(log, interval(0.01, 0.3))", "max_depth": "range(3, 12)"})
    assert list(space) == ["learning_rate", "max_depth"]
    assert space["max_depth"] == Dimension("int", 3, 12)
    with pytest.raises(
        ValueError, match=r"^max_depth: unknown function rnge\(\); expected a list of choices"
    ):
        parse_space({"learning_rate": [0.1], "max_depth": "rnge(1,2)"})
    with pytest.raises(
        ValueError, match=r"^the search space is empty: give at least one parameter to search$"
    ):
        parse_space({})
    with pytest.raises(ValueError, match="must map parameter names"):
        parse_space([("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="parameter names must be non-empty strings, got 1"):
        parse_space({1: [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="parameter names must be non-empty strings"):
        parse_space({"": [1, 2]})


@pytest.mark.parametrize(
    ("space", "whole"),
    [
        ({"max_depth": "range(2", "10)": None}, "range(2, 10)"),  # YAML's {max_depth: range(2, 10)}
        ({"lr": "range(0.9", 1.7: None, "step=0.1)": None, "n": [1]}, "range(0.9, 1.7, step=0.1)"),
        ({"n": [1], "depth": "range(2", 10: None, "2)": None}, "range(2, 10, 2)"),
        ({"k": "choice(1", 2: None, "3)": None}, "choice(1, 2, 3)"),
        ({"depth": "range(2", "lr": [0.1], 10: None, "2)": None}, "range(2, 10, 2)"),  # an override, merged
        ({"lr": "tag(log", "interval(1e-4": None, "1e-1))": None}, "tag(log, interval(1e-4, 1e-1))"),
    ],
)
def test_an_expression_cut_by_a_yaml_flow_mapping_is_told_to_be_quoted(
    space: dict[object, object], whole: str
) -> None:
    with pytest.raises(ValueError, match="inside a YAML") as caught:
        parse_space(space)  # type: ignore[arg-type]
    assert f"quote the expression ('{whole}')" in str(caught.value)


def test_an_incomplete_call_without_a_yaml_cut_gets_no_yaml_hint() -> None:
    # the next parameter has a value: it is not a piece of this one
    with pytest.raises(ValueError, match=r"^max_depth: not a complete call, check its parentheses"):
        parse_space({"max_depth": "range(2", "10)": [1]})


def test_the_misspelt_function_message() -> None:
    with pytest.raises(ValueError) as error:
        parse_dimension("rnge(1,2)")
    assert str(error.value) == (
        "unknown function rnge(); expected a list of choices, a {type: int|float|categorical, ...} mapping, "
        "or an expression like choice(1,2), range(1,10), interval(0.1,1.0), tag(log, interval(...)); "
        "got 'rnge(1,2)'"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("rnge(1,2)", r"unknown function rnge\(\)"),
        ("shuffle(range(1,3))", r"unknown function shuffle\(\)"),
        ("range(1,2", "not a complete call, check its parentheses"),
        ("range(2", "not a complete call, check its parentheses"),  # a typo: no YAML cut (below)
        ("choice(1,2))", "unbalanced parentheses"),
        ("choice('a, b)", "unbalanced quotes or parentheses"),
        ("choice()", r"choice\(\) needs at least one value"),
        ("choice(1, 1)", r"choices repeat a value: \[1, 1\]"),
        ("choice(range(1,2))", "cannot read the value 'range"),
        ("choice(a=1)", "cannot read the value 'a=1'"),
        ("choice(1,,2)", "cannot read the value ''"),
        ("range()", r"range\(\) needs at least a stop"),
        ("range(step=2)", r"range\(\) needs at least a stop"),
        ("range(1, 2, 3, 4)", r"range\(\) takes \(start, stop, step\), got '4'"),
        ("range(1, 5, step=1, step=2)", r"range\(\) takes \(start, stop, step\), got 'step=2'"),
        ("range(1, 5, by=2)", r"range\(\) takes \(start, stop, step\), got 'by=2'"),
        ("range(a, 5)", r"range\(\) takes numbers, got 'a'"),
        ("range(true, 5)", r"range\(\) takes numbers, got 'true'"),
        ("range(1, 10, 0)", "step must be positive, got 0"),
        ("range(1, 10, -1)", "step must be positive, got -1"),
        ("range(10, 1)", r"low \(10\) must not be above high \(1\)"),
        ("interval(1)", r"interval\(\) takes \(start, end\)"),
        ("interval(1, 2, 3)", r"interval\(\) takes \(start, end\), got '3'"),
        ("interval(2, 1)", r"low \(2.0\) must not be above high \(1.0\); got 'interval\(2, 1\)'"),
        ("interval(0, inf)", "high must be a finite number, got inf"),
        ("interval(nan, 1)", "low must be a finite number, got nan"),
        ("interval(1e400, 1e401)", "low must be a finite number, got inf"),
        ("tag(log, interval(0, 1))", "a log scale needs low > 0, got low 0.0"),
        ("tag(log, range(0, 10))", "a log scale needs low > 0, got low 0"),
        ("tag(log, range(1, 100, 2))", r"a log scale cannot have a step \(Optuna refuses it\)"),
        ("tag(log, range(0.1, 1.0, 0.1))", "a log scale cannot have a step"),
        ("tag(foo, interval(1,2))", r"tag\(\) supports only tag\(log, ...\), got tags \['foo'\]"),
        ("tag(log, foo, interval(1,2))", r"supports only tag\(log, ...\), got tags \['foo', 'log'\]"),
        ("tag(interval(1,2))", r"supports only tag\(log, ...\), got tags \[\]"),
        ("tag(log, choice(1,2))", r"tag\(log, ...\) applies to interval\(\) or range\(\), not choice\(\)"),
        ("tag(log)", "not a complete call"),
        ("tag()", r"unknown function tag\(\)"),
        ("int(choice(1,2))", r"int\(\) casts one interval\(\) or range\(\)"),
        ("float(interval(1, 2), interval(2, 3))", r"float\(\) casts one interval\(\) or range\(\)"),
        ("int(interval(0.5, 2))", "low must be a finite whole number, got 0.5"),
        ("int(range(0, 1, 0.25))", "step must be a finite whole number, got 0.25"),
        (
            {"type": "int", "low": 1, "high": 5, "foo": 1},
            r"unknown keys \['foo'\] for type int: expected \['high', 'log', 'low', 'step'\]",
        ),
        ({"type": "categorical", "choices": ["a"], "low": 1}, r"unknown keys \['low'\] for type categorical"),
        ({"low": 1, "high": 2}, "a mapping needs type: int, float or categorical; got type None"),
        ({"type": "normal", "low": 1, "high": 2}, "got type 'normal'"),
        ({"type": ["int"]}, r"got type \['int'\]"),
        ({"type": "int", "low": 1}, "int ranges take low and high"),
        ({"type": "float", "high": 1.0}, "float ranges take low and high"),
        ({"type": "int", "low": 1.5, "high": 3}, "low must be a finite whole number, got 1.5"),
        ({"type": "int", "low": True, "high": 3}, "low must be a finite whole number, got True"),
        ({"type": "int", "low": "1", "high": 3}, "low must be a finite whole number, got '1'"),
        ({"type": "int", "low": 1, "high": 10**400}, "high must be a finite whole number"),
        ({"type": "float", "low": "a", "high": 1}, "low must be a finite number, got 'a'"),
        ({"type": "float", "low": 0, "high": 1, "step": 0}, "step must be positive, got 0.0"),
        ({"type": "float", "low": -1, "high": 0, "step": 1e-45}, r"step 1e-45 is too fine for \[-1.0, 0.0\]"),
        (
            {"type": "float", "low": 1e-4, "high": 0.1, "log": True, "step": 0.01},
            "a log scale cannot have a step",
        ),
        ({"type": "int", "low": 1, "high": 10, "log": True, "step": 2}, "a log scale cannot have a step"),
        ({"type": "float", "low": 0, "high": 1, "log": True}, "a log scale needs low > 0"),
        ({"type": "int", "low": 1, "high": 10, "log": "yes"}, "log must be true or false, got 'yes'"),
        ({"type": "categorical"}, r"type categorical needs choices: \[...\]"),
        ({"type": "categorical", "choices": []}, "choices are empty: give at least one value"),
        ({"type": "categorical", "choices": "ab"}, "choices must be a list, got 'ab'"),
        ({"type": "categorical", "choices": 3}, "choices must be a list, got 3"),
        ([], "choices are empty"),
        ([[1, 2], [3]], r"choices must be numbers, strings, booleans or null, got \[1, 2\]"),
        ([{"a": 1}], "choices must be numbers, strings, booleans or null"),
        ([1, 2, 1], r"choices repeat a value: \[1, 2, 1\]"),
        (None, r"or a fixed number, string or boolean; got None \(write \[null\] to fix the value to null\)"),
        (b"bytes", "expected a list of choices"),
        ({1, 2}, "expected a list of choices"),
        (object(), "expected a list of choices"),
    ],
)
def test_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_dimension(value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "normal"}, "unknown type 'normal'"),
        (
            {"kind": "categorical", "choices": (1,), "low": 1},
            "categorical choices take no low, high, step or log",
        ),
        ({"kind": "categorical", "choices": (1,), "log": True}, "categorical choices take no low"),
        ({"kind": "int", "low": 1, "high": 5, "choices": (1,)}, "int ranges take low and high"),
    ],
)
def test_dimension_checks_itself(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Dimension(**fields)


def test_module_does_not_import_optuna() -> None:
    code = "import sys, trainyard.tuning.spaces as s; s.parse_space({'a': 'range(1, 3)'}); print('optuna' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# Properties over large input spaces


@given(
    low=st.integers(-(10**6), 10**6),
    span=st.integers(0, 10**4),
    step=st.integers(1, 50),
    keyword=st.booleans(),
)
def test_int_ranges_round_trip(low: int, span: int, step: int, keyword: bool) -> None:
    high = low + span
    expression = f"range({low}, {high}, step={step})" if keyword else f"range({low},{high},{step})"
    dimension = parse_dimension(expression)
    last = low + span // step * step
    assert optuna_of(expression) == IntDistribution(low, last, step=step)
    assert dimension == parse_dimension({"type": "int", "low": low, "high": high, "step": step})
    values: list[Any] = dimension.grid_values()
    assert values[0] == low and values[-1] == last and len(values) == grid_size([dimension])
    assert all(low <= v <= high and isinstance(v, int) for v in values)
    assert all(b - a == step for a, b in itertools.pairwise(values))


@given(
    low=st.decimals(-1000, 1000, places=3),
    span=st.decimals(0, 20, places=3),
    step=st.decimals(Decimal("0.02"), 10, places=3),
)
def test_float_ranges_round_trip_with_exact_steps(low: Decimal, span: Decimal, step: Decimal) -> None:
    high = low + span
    expression = (
        f"range({low}, {high}, step={step})"  # decimals as written, e.g. range(0.000, 1.500, step=0.500)
    )
    dimension = parse_dimension(expression)
    expected = [float(low + i * step) for i in range(int(span // step) + 1)]
    assert dimension.kind == "float" and dimension.grid_values() == expected  # the nearest floats, exactly
    assert all(float(low) <= v <= float(high) for v in expected)
    assert optuna_of(expression) == FloatDistribution(float(low), expected[-1], step=float(step))


@given(
    low=st.floats(1e-12, 1e6, allow_nan=False),
    factor=st.floats(1, 1e6, allow_nan=False),
    log=st.booleans(),
)
def test_intervals_round_trip(low: float, factor: float, log: bool) -> None:
    high = low * factor
    expression = f"interval({low!r}, {high!r})"
    distribution = optuna_of(f"tag(log, {expression})" if log else expression)
    assert distribution == FloatDistribution(low, high, log=log)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
)


@given(st.lists(scalars, min_size=1, max_size=6, unique_by=lambda v: (type(v), v)))
def test_lists_of_scalars_are_their_choices(choices: list[object]) -> None:
    assert parse_dimension(choices).choices == tuple(choices)
    assert parse_dimension(choices).grid_values() == choices


@given(
    st.lists(
        st.one_of(st.integers(), st.floats(allow_nan=False)),
        min_size=1,
        max_size=6,
        unique_by=lambda v: (type(v), v),
    )
)
def test_choice_expressions_read_numbers_back(numbers: list[int | float]) -> None:
    dimension = parse_dimension(f"choice({', '.join(repr(n) for n in numbers)})")
    assert dimension.choices == tuple(numbers)
    assert [type(c) for c in dimension.choices] == [type(n) for n in numbers]


def _parses_or_refuses(value: object) -> None:
    try:
        dimension = parse_dimension(value)
    except ValueError:
        return
    dimension.to_optuna()  # whatever is accepted is a valid Optuna distribution
    dimension.describe()


@given(st.text())
def test_any_string_parses_or_raises_value_error(text: str) -> None:
    _parses_or_refuses(text)


@given(
    st.sampled_from(
        ["choice(", "range(", "interval(", "tag(log, ", "tag(log, interval(", "int(", "float(", "x("]
    ),
    st.text(alphabet="0123456789.,-+_e ()'\"=abcgilnortxyz", max_size=30),
)
def test_expression_garbage_raises_value_error(prefix: str, rest: str) -> None:
    _parses_or_refuses(prefix + rest)


yaml_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["type", "low", "high", "step", "log", "choices", "x"]), inner, max_size=5
        )
    ),
    max_leaves=10,
)


@given(yaml_like)
def test_any_config_value_parses_or_raises_value_error(value: object) -> None:
    _parses_or_refuses(value)


@pytest.mark.filterwarnings("ignore:The distribution is specified by")  # steps like 5.96e-08 round
@given(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["int", "float"]), "low": st.integers(-100, 100) | st.floats(-100, 100)},
        optional={
            "high": st.integers(-100, 200) | st.floats(-100, 200),
            "step": st.integers(-2, 5) | st.floats(-1, 5),
            "log": st.booleans(),
        },
    )
)
def test_numeric_mappings_parse_or_raise_value_error(value: dict[str, Any]) -> None:
    _parses_or_refuses(value)


def test_omegaconf_containers_parse_like_plain_ones() -> None:
    from omegaconf import OmegaConf

    config = OmegaConf.create(
        """
        learning_rate: tag(log, interval(0.01, 0.3))
        max_depth: range(3, 12)
        l2_regularization: choice(0.0, 0.1, 1.0)
        criterion: [gini, entropy]
        min_samples_leaf: {type: int, low: 1, high: 20, step: 1, log: false}
        loss: squared_error
        """
    )
    space = parse_space(config)  # type: ignore[arg-type]
    assert space == parse_space(OmegaConf.to_container(config))  # type: ignore[arg-type]
    assert space["l2_regularization"].choices == (0.0, 0.1, 1.0)
    assert space["criterion"].to_optuna() == CategoricalDistribution(["gini", "entropy"])
    assert (
        space["loss"].fixed
        and grid_size([d for n, d in space.items() if n != "learning_rate"]) == 10 * 3 * 2 * 20
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [("a,,b", "a comma list of choices has an empty value"), ("\\b\\w{2,}\\b", "cannot read the value")],
)
def test_a_comma_list_that_cannot_be_read_points_to_the_one_item_list(value: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_dimension(value)
    assert problem in str(caught.value) and "a one-item list" in str(caught.value)


def test_a_fixed_string_with_a_comma_is_a_one_item_list() -> None:
    assert optuna_of(["a,b"]) == CategoricalDistribution(["a,b"])
