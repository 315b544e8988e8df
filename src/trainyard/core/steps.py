"""Preparation steps: small table transformations, one class per KIND, each ``apply(data) -> data``.

A step never changes its input table; it returns a new one, with the rows keeping their index labels
(a removed row's label is gone, the others are unchanged), so that an error names a row by its label.
A step's failure is a ConfigurationError when the config names a column the table does not have (its
message lists the columns the table has at that step), and a DataValidationError when the data
cannot be changed as asked (the failing values and their rows). The job says which step it was.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from trainyard.core.component import Component
from trainyard.core.expressions import ExpressionError, check_expression, evaluate, unknown_columns
from trainyard.core.schemas import FAILING_ROWS_SHOWN, DType
from trainyard.errors import ConfigurationError, DataValidationError

if TYPE_CHECKING:
    import pandas as pd

Scalar = str | int | float | bool
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


class PreparationStep(Component, abc.ABC):
    """One change to a table."""

    KIND: str

    @abc.abstractmethod
    def apply(self, data: pd.DataFrame) -> pd.DataFrame:
        """The changed table (``data`` itself is left as it was)."""


class _ColumnsStep(PreparationStep):
    """A step on a list of columns, each named once."""

    columns: list[str] = Field(min_length=1, description="The columns.")

    @field_validator("columns")
    @classmethod
    def _once_each(cls, columns: list[str]) -> list[str]:
        return _unique_names(columns)


class SelectStep(_ColumnsStep):
    """Keep these columns, in this order; the others are dropped."""

    KIND: Literal["select"] = "select"
    columns: list[str] = Field(min_length=1, description="The columns to keep, in order.")

    def apply(self, data: pd.DataFrame) -> pd.DataFrame:
        _require(data, self.columns)
        return data[self.columns]


class DropStep(_ColumnsStep):
    """Remove these columns."""

    KIND: Literal["drop"] = "drop"
    columns: list[str] = Field(min_length=1, description="The columns to remove.")

    def apply(self, data: pd.DataFrame) -> pd.DataFrame:
        _require(data, self.columns)
        return data.drop(columns=self.columns)


class RenameStep(PreparationStep):
    """Give columns new names; the others keep theirs."""

    KIND: Literal["rename"] = "rename"
    columns: dict[str, str] = Field(min_length=1, description="Old name -> new name.")

    @field_validator("columns")
    @classmethod
    def _distinct_names(cls, columns: dict[str, str]) -> dict[str, str]:
        new = list(columns.values())
        if any(not name.strip() for name in new):
            raise ValueError("a new column name is empty")
        repeated = sorted({name for name in new if new.count(name) > 1})
        if repeated:
            raise ValueError(f"two columns would be named {', '.join(map(repr, repeated))}")
        return columns

    def apply(self, data: pd.DataFrame) -> pd.DataFrame:
        _require(data, list(self.columns))
        kept = [str(column) for column in data.columns if column not in self.columns]
        clashes = [new for new in self.columns.values() if new in kept]
        if clashes:
            raise ConfigurationError(
                f"the table already has a column {', '.join(map(repr, clashes))}: drop it first or "
                "choose another name"
            )
        return data.rename(columns=self.columns)


class CastStep(PreparationStep):
    """Convert columns to a type. A value that does not convert is an error naming it and its row;
    ``int`` and ``bool`` cannot hold missing values (fill them first, or cast to ``float``)."""

    KIND: Literal["cast"] = "cast"
    columns: dict[str, DType] = Field(min_length=1, description="Column -> its new type.")
    datetime_format: str | None = Field(
        None,
        description="How `datetime` columns are written (strftime codes, e.g. `%d/%m/%Y`); unset: "
        "inferred from the first value, so every value must be written alike.",
    )

    def apply(self, data: pd.DataFrame) -> pd.DataFrame:
        _require(data, list(self.columns))
        return data.assign(
            **{
                column: _cast(data[column], dtype, self.datetime_format)
                for column, dtype in self.columns.items()
            }
        )


class FilterStep(PreparationStep):
    """Keep the rows where a condition holds (a missing value compares as false).

    The condition is an expression over the columns (see [Expressions](preparation.md#expressions)):
    ``age >= 18 and sex in [1, 2]``.
    """

    KIND: Literal["filter"] = "filter"
    condition: str = Field(description="Keep a row when this is true for it.")

    @field_validator("condition")
    @classmethod
    def _safe(cls, condition: str) -> str:
        if not _checked("filter condition", condition):
            raise ValueError("the filter condition names no column: it would keep every row or none")
        return condition

    def apply(self, data: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        mask = evaluate(data, self.condition)
        if not isinstance(mask, pd.Series) or not pd.api.types.is_bool_dtype(mask):
            kind = getattr(mask, "dtype", type(mask).__name__)
            raise DataValidationError(
                f"the condition {self.condition!r} gives {kind} values, not true/false: compare "
                "(==, <, in, ...) to make a condition"
            )
        return data[mask.fillna(False).astype(bool)]


class DeriveStep(PreparationStep):
    """Add a column computed from the others (an expression, as a filter's condition is):
    ``{column: ratio, expression: s1 / s2}``."""

    KIND: Literal["derive"] = "derive"
    column: str = Field(min_length=1, description="The new column's name.")
    expression: str = Field(description="How each row's value is computed from its columns.")
    replace: bool = Field(False, description="Replace the column when it exists (false: refuse to).")

    @field_validator("expression")
    @classmethod
    def _safe(cls, expression: str) -> str:
        _checked("derive expression", expression)
        return expression

    def apply(self, data: pd.DataFrame) -> pd.DataFrame:
        if self.column in data.columns and not self.replace:
            raise ConfigurationError(
                f"the table already has a column {self.column!r}: set replace: true to replace it, or "
                "choose another name"
            )
        return data.assign(**{self.column: evaluate(data, self.expression)})


class FillRule(Component):
    """How the missing values of one column are filled: ``{strategy: median}``, or a value."""

    strategy: Literal["constant", "mean", "median", "mode"] = Field(
        "constant", description="`constant` (`value`), or a statistic of the column's values."
    )
    value: Scalar | None = Field(None, description="The value of `constant`.")

    @model_validator(mode="after")
    def _value_for_constant(self) -> FillRule:
        if self.strategy == "constant" and self.value is None:
            raise ValueError("strategy constant needs a value")
        if self.strategy != "constant" and self.value is not None:
            raise ValueError(f"strategy {self.strategy} computes the value: leave value out")
        return self


class FillStep(PreparationStep):
    """Fill the missing values of columns, each with a value or a statistic of the column
    (computed on the rows at this step): ``{bmi: {strategy: median}, city: unknown}``."""

    KIND: Literal["fill"] = "fill"
    columns: dict[str, FillRule] = Field(
        min_length=1, description="Column -> a value, or `{strategy: mean, median, mode}`."
    )

    @field_validator("columns", mode="before")
    @classmethod
    def _values_are_constants(cls, columns: Any) -> Any:
        if not isinstance(columns, dict):
            return columns
        return {
            column: rule if isinstance(rule, dict | FillRule) else {"strategy": "constant", "value": rule}
            for column, rule in columns.items()
        }

    def apply(self, data: pd.DataFrame) -> pd.DataFrame:
        _require(data, list(self.columns))
        return data.assign(**{column: _fill(data[column], rule) for column, rule in self.columns.items()})


class DeduplicateStep(PreparationStep):
    """Remove rows that repeat an earlier (or a later) row on ``subset`` (every column if unset)."""

    KIND: Literal["deduplicate"] = "deduplicate"
    subset: list[str] | None = Field(
        None, min_length=1, description="The columns that make two rows the same (unset: all)."
    )
    keep: Literal["first", "last"] = Field("first", description="Which of the repeated rows stays.")

    @field_validator("subset")
    @classmethod
    def _once_each(cls, subset: list[str] | None) -> list[str] | None:
        return None if subset is None else _unique_names(subset)

    def apply(self, data: pd.DataFrame) -> pd.DataFrame:
        if self.subset is not None:
            _require(data, self.subset)
        return data.drop_duplicates(subset=self.subset, keep=self.keep)


StepKind = Annotated[
    SelectStep | DropStep | RenameStep | CastStep | FilterStep | DeriveStep | FillStep | DeduplicateStep,
    Field(discriminator="KIND"),
]


# -- helpers ----------------------------------------------------------------------------------------------


def _unique_names(columns: list[str]) -> list[str]:
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise ValueError(f"{', '.join(map(repr, repeated))} listed more than once")
    return columns


def _checked(what: str, expression: str) -> frozenset[str]:
    """The columns ``expression`` names; a ValueError (a config error) says what is refused."""
    try:
        return check_expression(expression)
    except ExpressionError as error:
        raise ValueError(f"{what}: {error}") from None


def _require(data: pd.DataFrame, names: list[str]) -> None:
    columns = [str(column) for column in data.columns]
    unknown = [name for name in names if name not in columns]
    if unknown:
        raise ConfigurationError(unknown_columns(unknown, columns))


def _shown(values: pd.Series) -> str:
    """``row 3: 'abc', row 9: '?'`` (the first few, and how many more)."""
    head = values.head(FAILING_ROWS_SHOWN)
    shown = ", ".join(f"row {label}: {value!r}" for label, value in head.items())
    more = len(values) - len(head)
    return shown + (f" (and {more} more)" if more else "")


def _missing(column: pd.Series, dtype: str) -> DataValidationError:
    rows = column.index[column.isna()].tolist()
    shown = ", ".join(map(str, rows[:FAILING_ROWS_SHOWN])) + (
        " ..." if len(rows) > FAILING_ROWS_SHOWN else ""
    )
    return DataValidationError(
        f"column {column.name!r} has {len(rows)} missing values (rows {shown}), which {dtype} cannot "
        "hold: fill them first (a fill step), or cast to float"
    )


def _cast(column: pd.Series, dtype: DType, datetime_format: str | None) -> pd.Series:
    """``column`` as ``dtype``; a value that does not convert is a DataValidationError."""
    import pandas as pd

    name = column.name
    if dtype == "str":
        return column.astype("str").where(column.notna())  # a missing value stays missing
    if dtype == "category":
        return column.astype("category")
    if dtype == "datetime":
        converted = pd.to_datetime(column, errors="coerce", format=datetime_format)
        _refuse_unconverted(column, converted, "dates", "set datetime_format to how they are written")
        return converted
    if dtype == "bool":
        if column.isna().any():
            raise _missing(column, "bool")
        if pd.api.types.is_bool_dtype(column):
            return column.astype(bool)
        words = column.astype("str").str.strip().str.lower()
        converted = words.map(lambda word: True if word in _TRUE else False if word in _FALSE else None)
        _refuse_unconverted(column, converted, "true/false", "true/false, yes/no and 1/0 convert")
        return converted.astype(bool)
    numbers = column if pd.api.types.is_numeric_dtype(column) else pd.to_numeric(column, errors="coerce")
    _refuse_unconverted(column, numbers, "numbers", "correct them, or empty the cells")
    if dtype == "float":
        return numbers.astype("float64")
    if numbers.isna().any():  # the values that did not convert are refused: these were missing
        raise _missing(column, "int")
    fractional = numbers[numbers % 1 != 0]
    if not fractional.empty:
        raise DataValidationError(
            f"column {name!r} has values that are not whole numbers ({_shown(fractional)}): cast it to "
            "float, or round them first"
        )
    return numbers.astype("int64")


def _refuse_unconverted(original: pd.Series, converted: pd.Series, what: str, fix: str) -> None:
    """Values present in ``original`` and missing in ``converted`` did not convert: name them."""
    failed = original[original.notna() & converted.isna()]
    if not failed.empty:
        raise DataValidationError(
            f"column {original.name!r} has {len(failed)} values that are not {what} ({_shown(failed)}): {fix}"
        )


def _fill(column: pd.Series, rule: FillRule) -> pd.Series:
    """``column`` with its missing values filled as ``rule`` says."""
    import pandas as pd

    name = column.name
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if rule.strategy == "constant":
        value: Any = rule.value
        if numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigurationError(f"column {name!r} holds numbers: fill it with a number, not {value!r}")
        if _holds_text(column) and not isinstance(value, str):
            raise ConfigurationError(
                f"column {name!r} holds text: fill it with text (in quotes: '{value}'), not {value!r}"
            )
        if pd.api.types.is_datetime64_any_dtype(column):
            try:
                value = pd.Timestamp(value)
            except (TypeError, ValueError):
                raise ConfigurationError(
                    f"column {name!r} holds dates: fill it with a date (e.g. '2024-01-31'), not {value!r}"
                ) from None
    else:
        if rule.strategy != "mode" and not (numeric or pd.api.types.is_datetime64_any_dtype(column)):
            raise ConfigurationError(
                f"column {name!r} holds {column.dtype} values, and {rule.strategy} needs numbers: "
                "use mode or a constant"
            )
        present = column.dropna()
        if present.empty:
            raise DataValidationError(f"column {name!r} has no values to take the {rule.strategy} of")
        value = present.mode().iloc[0] if rule.strategy == "mode" else getattr(present, rule.strategy)()
    if isinstance(column.dtype, pd.CategoricalDtype) and value not in column.cat.categories:
        column = column.cat.add_categories([value])
    try:
        return column.fillna(value)
    except (TypeError, ValueError) as error:
        raise DataValidationError(
            f"column {name!r} ({column.dtype}) cannot be filled with {value!r}: {error}"
        ) from error


def _holds_text(column: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.is_string_dtype(column) and not isinstance(column.dtype, pd.CategoricalDtype)
