"""Expressions of filter and derive steps: what the checker accepts, what it refuses, and that a refused
expression never runs, whichever engine pandas would use."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainyard.core import expressions
from trainyard.core.expressions import ExpressionError, check_columns, check_expression, evaluate
from trainyard.errors import ConfigurationError, DataValidationError

TABLE = pd.DataFrame(
    {"age": [30.0, 61.0, 45.0], "sex": [1.0, 2.0, 2.0], "blood pressure": [80, 95, None], "city": list("xyz")}
)
ENGINES = [
    "python",
    pytest.param(
        "numexpr",
        marks=pytest.mark.skipif(expressions.engine() != "numexpr", reason="numexpr is not installed"),
    ),
]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(expressions, "engine", lambda: request.param)
    return str(request.param)


@pytest.mark.parametrize(
    ("expression", "columns"),
    [
        ("age > 40", {"age"}),
        ("age >= 18 and sex in [1, 2]", {"age", "sex"}),
        ("(age > 40) & ~(sex == 1) | (city != 'x')", {"age", "sex", "city"}),
        ("`blood pressure` / 2 + age ** 2 - -1 // 3 % 2", {"blood pressure", "age"}),
        ("not city in ('a', 'b') or 30 < age <= 60", {"city", "age"}),
        ("city == 'a@b.example'", {"city"}),  # an @ in text is text
        ("age > 1  # a comment", {"age"}),
        ("2 ** 10 + 3", set()),
    ],
)
def test_allowed_expressions_give_the_columns_they_name(expression: str, columns: set[str]) -> None:
    assert check_expression(expression) == columns


@pytest.mark.parametrize(
    ("expression", "refusal"),
    [
        ("__import__('os').system('true')", "calls a function"),
        ("abs(age) > 1", "'abs(age)' calls a function"),
        ("age.__class__", "the expression reads an attribute"),
        ("age.__class__ > 1", "'age.__class__' reads an attribute"),
        ("age.__class__.__init__.__globals__", "reads an attribute"),
        ("`blood pressure`.sum() > 1", "'`blood pressure`.sum()' calls a function"),
        ("city[0] == 'x'", "'city[0]' takes a subscript"),
        ("(lambda: 1)", "is a lambda"),
        ("@limit < age", "'@' at character 1: variables (@name)"),
        ("age @ sex", "'@' at character 5"),
        ("age if sex else 0", "conditional expression"),
        ("age is None", "is / is not"),
        ("None", "is not a number"),
        ("[x for x in age]", "comprehension"),
        ("f'{age}'", "f-string"),
        ("{1: age}", "is a dict"),
        ("age ^ sex", "the expression uses an operator that is not allowed"),
        ("age << 2", "uses an operator that is not allowed"),
        ("[1, 2]", "is a list"),
        ("age in [sex, 1]", "is a list"),
        ("9 ** 9 ** 9", "raises a constant to a power"),
        ("(9 ** 99) ** 99 > age", "raises a constant to a power"),
        ("'ab' * 1000000000", "computes with text"),
        ("age = 3", "not a valid expression at character 5: invalid syntax (= assigns: compare with ==)"),
        ("age >", "not a valid expression"),
        ("age;1", "not a valid expression"),
        ("age > 1\nsex < 2", "not a valid expression"),
        ("`blood pressure > 1", "the backtick at character 1 is not closed"),
        ("", "the expression is empty"),
        ("age + " * 400 + "1", "at most 2000"),
    ],
)
def test_refused_constructs_are_named_with_the_reason(expression: str, refusal: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        check_expression(expression)
    assert refusal in str(caught.value)


@given(st.text(max_size=60))
def test_any_text_is_accepted_or_refused_with_an_expression_error(text: str) -> None:
    with contextlib.suppress(ExpressionError):
        check_expression(text)


@pytest.mark.parametrize(
    "attack",
    [
        "__import__('os').system('touch {marker}')",
        "open('{marker}', 'w').close()",
        "age.__class__.__init__.__globals__['__builtins__']['open']('{marker}', 'w')",
        "@pd.io.common.Path('{marker}').touch()",
    ],
)
def test_a_refused_expression_never_runs(engine: str, tmp_path: Path, attack: str) -> None:
    """Even handed straight to evaluate (no config validation before it), the side effect never happens."""
    marker = tmp_path / "ran"
    with pytest.raises(ConfigurationError, match="not allowed"):
        evaluate(TABLE, attack.format(marker=marker))
    assert not marker.exists()


def test_the_names_are_checked_against_the_columns(engine: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_columns("agee > 3 and sexx == 1", list(TABLE.columns))
    assert str(caught.value) == (
        "in 'agee > 3 and sexx == 1': unknown columns 'agee', 'sexx'. Did you mean age? Did you mean sex? "
        "The columns here: age, sex, blood pressure, city"
    )


def test_no_variable_of_the_caller_is_in_scope(engine: str) -> None:
    limit = 40  # a name pandas could otherwise find in the caller's frame
    assert limit
    with pytest.raises(ConfigurationError, match="unknown column 'limit'"):
        evaluate(TABLE, "age > limit")


def test_evaluate_computes_on_the_table(engine: str) -> None:
    assert evaluate(TABLE, "age > 40 and sex == 2").tolist() == [False, True, True]
    assert evaluate(TABLE, "`blood pressure` / 5").tolist()[:2] == [16.0, 19.0]
    assert evaluate(TABLE, "city in ['x', 'z']").tolist() == [True, False, True]
    assert evaluate(TABLE, "3") == 3


def test_a_computation_pandas_refuses_names_the_expression(engine: str) -> None:
    with pytest.raises(DataValidationError, match=r"age > 'x'. cannot be computed on this table: TypeError"):
        evaluate(TABLE, "age > 'x'")
