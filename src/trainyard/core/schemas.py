"""Schemas: declare columns (dtype, nullability, ranges, allowed values) and validate with pandera."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from trainyard.core.component import Component
from trainyard.errors import DataValidationError

if TYPE_CHECKING:
    import pandas as pd

DType = Literal["int", "float", "str", "bool", "category", "datetime"]
_PANDERA_DTYPES = {
    "int": "int64",
    "float": "float64",
    "str": "str",
    "bool": "bool",
    "category": "category",
    "datetime": "datetime64[ns]",
}
FAILING_ROWS_SHOWN = 5


class ColumnSchema(Component):
    """What one column must hold."""

    dtype: DType | None = Field(None, description="Expected type; unset accepts any.")
    coerce: bool = Field(False, description="Convert the column to `dtype` instead of rejecting it.")
    nullable: bool = Field(False, description="Whether missing values are allowed.")
    ge: float | None = Field(None, description="Every value is >= this.")
    le: float | None = Field(None, description="Every value is <= this.")
    gt: float | None = Field(None, description="Every value is > this.")
    lt: float | None = Field(None, description="Every value is < this.")
    isin: list[Any] | None = Field(None, description="Every value is one of these.")
    unique: bool = Field(False, description="No value appears twice.")


class DataSchemas(Component):
    """Column rules for the inputs and the targets of a job; ``strict`` rejects undeclared columns."""

    inputs: dict[str, ColumnSchema] = Field(default_factory=dict, description="Rules per input column.")
    targets: dict[str, ColumnSchema] = Field(default_factory=dict, description="Rules per target column.")
    strict: bool = Field(False, description="Reject columns that are not declared (when any are).")

    def validate_inputs(self, data: pd.DataFrame) -> pd.DataFrame:
        """Validated inputs (coerced where asked); raises DataValidationError listing failures."""
        return _validate(data, self.inputs, self.strict, "inputs")

    def validate_targets(self, data: pd.DataFrame) -> pd.DataFrame:
        """Validated targets (coerced where asked); raises DataValidationError listing failures."""
        return _validate(data, self.targets, self.strict, "targets")


class TableSchema(Component):
    """Column rules for one table; ``strict`` rejects undeclared columns."""

    columns: dict[str, ColumnSchema] = Field(default_factory=dict, description="Rules per column.")
    strict: bool = Field(False, description="Reject columns that are not declared (when any are).")

    def validate_table(self, data: pd.DataFrame, name: str) -> pd.DataFrame:
        """Validated ``data`` (coerced where asked); raises DataValidationError listing failures, the
        table called ``name`` in the message ("the prepared rows do not match their schema")."""
        return _validate(data, self.columns, self.strict, name)


def _validate(data: pd.DataFrame, columns: dict[str, ColumnSchema], strict: bool, name: str) -> pd.DataFrame:
    if not columns:
        return data
    import pandera.errors
    import pandera.pandas as pa

    schema = pa.DataFrameSchema(
        {column: _pandera_column(spec) for column, spec in columns.items()}, strict=strict
    )
    try:
        return schema.validate(data, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        raise DataValidationError(_describe(name, errors.failure_cases)) from None


def _pandera_column(spec: ColumnSchema) -> Any:
    import pandera.pandas as pa

    checks = []
    for bound, check in (
        ("ge", pa.Check.ge),
        ("le", pa.Check.le),
        ("gt", pa.Check.gt),
        ("lt", pa.Check.lt),
    ):
        value = getattr(spec, bound)
        if value is not None:
            checks.append(check(value))
    if spec.isin is not None:
        checks.append(pa.Check.isin(spec.isin))
    dtype = _PANDERA_DTYPES[spec.dtype] if spec.dtype else None
    return pa.Column(dtype, checks=checks, nullable=spec.nullable, unique=spec.unique, coerce=spec.coerce)


def _describe(name: str, failures: pd.DataFrame) -> str:
    """A readable report: which columns fail which checks, and the first failing rows."""
    lines = [f"{name} do not match their schema ({len(failures)} failures):"]
    for (column, check), group in failures.groupby(["column", "check"], dropna=False, sort=False):
        rows = [int(i) for i in group["index"].dropna().unique()[:FAILING_ROWS_SHOWN]]
        values = [repr(v) for v in group["failure_case"].head(FAILING_ROWS_SHOWN)]
        where = f"; first failing rows {rows}" if rows else ""
        lines.append(
            f"  - column {column!r}: {check} — {len(group)} failing, e.g. {', '.join(values)}{where}"
        )
    return "\n".join(lines)


def non_numbers(column: pd.Series) -> pd.Series:
    """The values of ``column`` that are neither missing nor numbers (pandas' own parsing), by position."""
    import pandas as pd

    values = column.reset_index(drop=True)
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return values.iloc[:0]
    parsed = pd.to_numeric(values.astype(object), errors="coerce")
    return values[parsed.isna() & values.notna()]
