"""A table against a model's input signature: the columns it lacks, the extra ones, the mistyped ones.

Pure checks, no I/O. Whether a column's type fits is MLflow's own rule (``mlflow.models.validate_schema``,
what a served model applies: ``int`` -> ``long``, ``float`` -> ``double`` upcasts, text for ``string``),
asked column by column so that every problem is listed at once instead of the first; with one
leniency: whole numbers fit a ``double`` (or ``float``) input when every value converts exactly, and
``conform()`` converts them. MLflow refuses ``int64`` for ``double`` by type alone, yet a CSV column of
decimals is ``int64`` in any chunk that happens to hold only whole numbers (``0``, ``1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trainyard.core.schemas import non_numbers

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.types import Schema


@dataclass(frozen=True)
class Mistyped:
    """A column whose values do not have the type the signature gives it."""

    column: str
    expected: str  # the signature's type: double, long, string, ...
    found: str  # the column's dtype: int64, str, ...
    # (row label, value) of the first value that is not a number, when numbers are expected
    first_odd: tuple[Any, Any] | None = None
    missing_values: bool = False  # the column holds NaN where the signature has an integer type


@dataclass(frozen=True)
class SignatureFit:
    """How a table fits a signature's named inputs (``missing``: only required ones count)."""

    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    mistyped: list[Mistyped] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        """No required column missing and no column mistyped (extra columns are ignored)."""
        return not self.missing and not self.mistyped


def input_names(schema: Schema | None) -> list[str] | None:
    """The named input columns of a signature's inputs, in order; None without names (a tensor
    signature) or without a signature."""
    if schema is None or not schema.has_input_names():
        return None
    return [str(name) for name in schema.input_names()]


def check_columns(data: pd.DataFrame, schema: Schema, ignored: tuple[str, ...] = ()) -> SignatureFit:
    """Compare ``data``'s columns and types with the named ``schema``; ``ignored`` columns (copied
    beside the predictions, say) are never reported as extra."""
    names = input_names(schema)
    if names is None:
        raise ValueError("the signature has no named inputs")
    required = {str(spec.name) for spec in schema.inputs if spec.required}
    missing = [name for name in names if name in required and name not in data.columns]
    extra = [str(c) for c in data.columns if c not in names and c not in ignored]
    present = [name for name in names if name in data.columns]
    return SignatureFit(missing, extra, check_types(data[present], schema))


def conform(data: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """``data`` with its columns of whole numbers converted to floating point where ``schema`` has a
    ``double`` (or ``float``) input and every value converts exactly; the other columns as they are."""
    import numpy as np

    specs = {str(spec.name): spec for spec in schema.inputs}
    converted = {}
    for column in data.columns:
        spec = specs.get(str(column))
        limit = _EXACT_INTEGERS.get(getattr(getattr(spec, "type", None), "name", ""))
        values = data[column]
        if limit is None or values.dtype.kind not in "iu" or values.empty:
            continue
        if int(values.max()) <= limit and int(values.min()) >= -limit:
            converted[column] = values.astype(
                np.float64 if limit == _EXACT_INTEGERS["double"] else np.float32
            )
    if not converted:
        return data
    data = data.copy(deep=False)
    for column, values in converted.items():
        data[column] = values
    return data


_EXACT_INTEGERS = {"double": 2**53, "float": 2**24}  # every integer up to these converts exactly


def check_types(data: pd.DataFrame, schema: Schema) -> list[Mistyped]:
    """The columns of ``data`` (all in ``schema``) whose values the schema's types do not accept
    (whole numbers ``conform()`` converts are accepted)."""
    from mlflow.exceptions import MlflowException
    from mlflow.models import validate_schema
    from mlflow.types import Schema

    data = conform(data, schema)
    specs = {str(spec.name): spec for spec in schema.inputs}
    try:  # one call when all is well (about 2 ms for 100,000 rows of 12 columns)
        validate_schema(data, Schema([specs[str(c)] for c in data.columns]))
        return []
    except MlflowException:
        pass
    mistyped = []
    for column in data.columns:
        spec = specs[str(column)]
        try:
            validate_schema(data[[column]], Schema([spec]))
        except MlflowException:
            mistyped.append(_mistyped(data[column], spec.type))
    return mistyped


def _mistyped(values: pd.Series, expected: Any) -> Mistyped:
    import numpy as np

    expected_name = getattr(expected, "name", str(expected))
    numeric = _numeric(expected)
    odd = non_numbers(values) if numeric else values.iloc[:0]
    first_odd = (values.index[int(odd.index[0])], odd.iloc[0]) if len(odd) else None
    integer = numeric and np.dtype(expected.to_numpy()).kind in "iu"
    return Mistyped(
        str(values.name),
        expected_name,
        str(values.dtype),
        first_odd=first_odd,
        missing_values=bool(integer and values.isna().any()),
    )


def _numeric(expected: Any) -> bool:
    """Whether an MLflow type holds numbers."""
    import numpy as np

    to_numpy = getattr(expected, "to_numpy", None)
    if to_numpy is None:
        return False
    try:
        return np.dtype(to_numpy()).kind in "iuf"
    except TypeError:
        return False
