"""Each preparation step on a small table: what it does, and how it refuses what it cannot do."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

from trainyard.core.steps import StepKind
from trainyard.errors import ConfigurationError, DataValidationError

STEP: TypeAdapter[Any] = TypeAdapter(StepKind)


def table() -> pd.DataFrame:
    """Five rows labelled 1 to 5, as the job labels the rows it read."""
    return pd.DataFrame(
        {
            "id": ["a", "b", "b", "c", "d"],
            "age": [30.0, np.nan, np.nan, 61.0, 45.0],
            "count": ["1", "2", "2", "x", "4"],
            "flag": ["yes", "no", "no", "maybe", "0"],
            "day": ["2024-01-31", "2024-02-01", "2024-02-01", "2024-02-30", None],
        },
        index=range(1, 6),
    )


def apply(step: dict[str, Any], data: pd.DataFrame | None = None) -> pd.DataFrame:
    data = table() if data is None else data
    before = data.copy()
    result = STEP.validate_python(step).apply(data)
    pd.testing.assert_frame_equal(data, before)  # the input is left as it was
    return result  # type: ignore[no-any-return]


def test_select_keeps_the_columns_in_order() -> None:
    assert list(apply({"KIND": "select", "columns": ["age", "id"]}).columns) == ["age", "id"]


def test_drop_removes_columns() -> None:
    assert list(apply({"KIND": "drop", "columns": ["count", "day"]}).columns) == ["id", "age", "flag"]


def test_rename_renames_and_refuses_a_clash() -> None:
    assert list(apply({"KIND": "rename", "columns": {"age": "years"}}).columns)[:2] == ["id", "years"]
    with pytest.raises(ConfigurationError, match="the table already has a column 'id': drop it first"):
        apply({"KIND": "rename", "columns": {"age": "id"}})
    swapped = apply({"KIND": "rename", "columns": {"age": "id", "id": "age"}})  # a swap is no clash
    assert swapped["id"].iloc[0] == 30.0


@pytest.mark.parametrize(
    "step",
    [
        {"KIND": "select", "columns": ["id", "agee"]},
        {"KIND": "drop", "columns": ["agee"]},
        {"KIND": "rename", "columns": {"agee": "years"}},
        {"KIND": "cast", "columns": {"agee": "int"}},
        {"KIND": "fill", "columns": {"agee": 0}},
        {"KIND": "deduplicate", "subset": ["agee"]},
        {"KIND": "filter", "condition": "agee > 3"},
        {"KIND": "derive", "column": "old", "expression": "agee > 60"},
    ],
)
def test_an_unknown_column_is_named_with_the_columns_there(step: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        apply(step)
    message = str(caught.value)
    assert "unknown column 'agee'. Did you mean age? The columns here: id, age, count, flag, day" in message


def test_cast_converts_each_type() -> None:
    data = table().drop(index=4).dropna(subset=["age"])  # the rows that convert
    cast = apply(
        {
            "KIND": "cast",
            "columns": {"count": "int", "age": "str", "flag": "bool", "id": "category", "day": "datetime"},
        },
        data,
    )
    assert cast["count"].tolist() == [1, 4] and cast["count"].dtype == "int64"
    assert cast["age"].tolist() == ["30.0", "45.0"]
    assert cast["flag"].tolist() == [True, False] and cast["flag"].dtype == bool
    assert isinstance(cast["id"].dtype, pd.CategoricalDtype)
    assert cast["day"].iloc[0] == pd.Timestamp("2024-01-31") and pd.isna(cast["day"].iloc[1])
    floats = apply({"KIND": "cast", "columns": {"count": "float"}}, data)
    assert floats["count"].tolist() == [1.0, 4.0]


def test_cast_reads_dates_in_the_format_given() -> None:
    data = pd.DataFrame({"day": ["31/01/2024", "01/02/2024"]}, index=[1, 2])
    cast = apply({"KIND": "cast", "columns": {"day": "datetime"}, "datetime_format": "%d/%m/%Y"}, data)
    assert cast["day"].tolist() == [pd.Timestamp("2024-01-31"), pd.Timestamp("2024-02-01")]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"count": "float"}, "column 'count' has 1 values that are not numbers (row 4: 'x'): correct them"),
        ({"age": "int"}, "column 'age' has 2 missing values (rows 2, 3), which int cannot hold: fill them"),
        ({"flag": "bool"}, "column 'flag' has 1 values that are not true/false (row 4: 'maybe')"),
        (
            {"day": "datetime"},
            "column 'day' has 1 values that are not dates (row 4: '2024-02-30'): set datetime_format",
        ),
    ],
)
def test_cast_names_the_values_that_do_not_convert(columns: dict[str, str], message: str) -> None:
    with pytest.raises(DataValidationError) as caught:
        apply({"KIND": "cast", "columns": columns})
    assert message in str(caught.value)


def test_cast_to_int_refuses_fractions_and_bool_refuses_missing_values() -> None:
    data = pd.DataFrame({"n": [1.0, 2.5], "b": [True, None]}, index=[1, 2])
    with pytest.raises(
        DataValidationError, match=r"'n' has values that are not whole numbers \(row 2: 2.5\)"
    ):
        apply({"KIND": "cast", "columns": {"n": "int"}}, data)
    with pytest.raises(
        DataValidationError, match=r"'b' has 1 missing values \(rows 2\), which bool cannot hold"
    ):
        apply({"KIND": "cast", "columns": {"b": "bool"}}, data)


def test_filter_keeps_the_rows_where_the_condition_holds() -> None:
    kept = apply({"KIND": "filter", "condition": "age > 40 or id == 'a'"})
    assert kept.index.tolist() == [1, 4, 5]  # missing ages compare as false; the labels stay


def test_filter_refuses_a_condition_that_is_not_true_or_false() -> None:
    with pytest.raises(DataValidationError, match=r"'age \+ 1' gives float64 values, not true/false"):
        apply({"KIND": "filter", "condition": "age + 1"})


def test_derive_adds_a_column_and_replaces_one_only_when_asked() -> None:
    derived = apply({"KIND": "derive", "column": "older", "expression": "age >= 45"})
    assert derived["older"].tolist() == [False, False, False, True, True]
    with pytest.raises(ConfigurationError, match="already has a column 'age': set replace: true"):
        apply({"KIND": "derive", "column": "age", "expression": "age * 12"})
    months = apply({"KIND": "derive", "column": "age", "expression": "age * 12", "replace": True})
    assert months["age"].iloc[0] == 360.0


@pytest.mark.parametrize(
    ("rule", "filled"), [({"strategy": "mean"}, 45.0 + 1 / 3), ({"strategy": "median"}, 45.0), (7, 7.0)]
)
def test_fill_with_a_statistic_or_a_value(rule: Any, filled: float) -> None:
    result = apply({"KIND": "fill", "columns": {"age": rule}})
    assert result["age"].tolist()[1:3] == pytest.approx([filled, filled])


def test_fill_text_with_the_mode_a_category_with_a_new_value_and_dates_with_a_date() -> None:
    data = pd.DataFrame(
        {
            "city": ["x", "y", "y", None],
            "kind": pd.Categorical(["a", None, "a", "a"]),
            "day": pd.to_datetime(pd.Series(["2024-01-01", None, "2024-01-03", "2024-01-04"])).array,
        },
        index=range(1, 5),
    )
    result = apply(
        {"KIND": "fill", "columns": {"city": {"strategy": "mode"}, "kind": "other", "day": "2024-01-02"}},
        data,
    )
    assert result["city"].tolist() == ["x", "y", "y", "y"]
    assert result["kind"].tolist() == ["a", "other", "a", "a"]
    assert result["day"].iloc[1] == pd.Timestamp("2024-01-02")


@pytest.mark.parametrize(
    ("columns", "error", "message"),
    [
        (
            {"id": {"strategy": "mean"}},
            ConfigurationError,
            "column 'id' holds str values, and mean needs numbers",
        ),
        (
            {"age": "unknown"},
            ConfigurationError,
            "column 'age' holds numbers: fill it with a number, not 'unknown'",
        ),
        ({"age": True}, ConfigurationError, "column 'age' holds numbers: fill it with a number, not True"),
        (
            {"day": 0},
            ConfigurationError,
            "column 'day' holds text: fill it with text (in quotes: '0'), not 0",
        ),
    ],
)
def test_fill_refuses_a_value_that_does_not_suit_the_column(
    columns: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        apply({"KIND": "fill", "columns": columns})
    assert message in str(caught.value)


def test_fill_with_a_statistic_of_no_values_is_refused() -> None:
    data = pd.DataFrame({"x": [np.nan, np.nan]}, index=[1, 2])
    with pytest.raises(DataValidationError, match="column 'x' has no values to take the median of"):
        apply({"KIND": "fill", "columns": {"x": {"strategy": "median"}}}, data)


def test_deduplicate_on_a_subset_keeps_the_first_or_the_last() -> None:
    assert apply({"KIND": "deduplicate"}).index.tolist() == [1, 2, 4, 5]
    assert apply({"KIND": "deduplicate", "subset": ["age"], "keep": "last"}).index.tolist() == [1, 3, 4, 5]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"KIND": "select", "columns": []}, "at least 1 item"),
        ({"KIND": "select", "columns": ["a", "a"]}, "'a' listed more than once"),
        ({"KIND": "drop", "columns": ["a", "b", "a"]}, "'a' listed more than once"),
        ({"KIND": "rename", "columns": {"a": "c", "b": "c"}}, "two columns would be named 'c'"),
        ({"KIND": "rename", "columns": {"a": " "}}, "a new column name is empty"),
        ({"KIND": "cast", "columns": {"a": "integer"}}, "Input should be 'int', 'float'"),
        ({"KIND": "fill", "columns": {"a": {"strategy": "constant"}}}, "strategy constant needs a value"),
        ({"KIND": "fill", "columns": {"a": {"strategy": "mean", "value": 1}}}, "leave value out"),
        ({"KIND": "fill", "columns": {"a": {"strategy": "average"}}}, "Input should be 'constant', 'mean'"),
        ({"KIND": "deduplicate", "keep": "none"}, "Input should be 'first' or 'last'"),
        ({"KIND": "filter", "condition": "1 > 0"}, "names no column"),
        ({"KIND": "filter", "condition": "age.max() > 1"}, "filter condition: 'age.max()' calls a function"),
        (
            {"KIND": "derive", "column": "x", "expression": "len(id)"},
            "derive expression: the expression calls a function",
        ),
        ({"KIND": "derive", "column": "", "expression": "age"}, "at least 1 character"),
    ],
)
def test_invalid_steps_are_refused_when_the_config_is_read(step: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        STEP.validate_python(step)
    assert message in str(caught.value)
