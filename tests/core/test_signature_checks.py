"""A table against a model's input signature: every missing, extra and mistyped column at once, by
MLflow's own type rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.types import ColSpec, DataType, Schema, TensorSpec

from trainyard.core.signature_checks import (
    Mistyped,
    SignatureFit,
    check_columns,
    check_types,
    conform,
    input_names,
)

SCHEMA = Schema(
    [
        ColSpec(DataType.double, "size"),
        ColSpec(DataType.long, "rooms"),
        ColSpec(DataType.string, "city"),
        ColSpec(DataType.double, "garden", required=False),
    ]
)
GOOD = pd.DataFrame({"size": [50.0, 72.5], "rooms": [2, 3], "city": ["Lyon", "Nice"]}, index=[10, 11])


def test_a_table_that_fits_has_no_problems_and_extra_columns_are_listed() -> None:
    fit = check_columns(GOOD.assign(id=[1, 2], label=[0, 1]), SCHEMA, ignored=("id",))
    assert fit == SignatureFit(missing=[], extra=["label"], mistyped=[]) and fit.fits
    upcast = GOOD[["size", "rooms"]].astype({"size": "float32", "rooms": "int32"})  # widened by MLflow
    assert (
        check_types(upcast, Schema([ColSpec(DataType.double, "size"), ColSpec(DataType.long, "rooms")])) == []
    )


def test_every_problem_is_listed_at_once() -> None:
    data = pd.DataFrame(
        {"size": ["50", "big", "70"], "rooms": [2.0, np.nan, 3.0], "garden": [1, 2, 2**60]},
        index=[100, 101, 102],
    )
    fit = check_columns(data, SCHEMA)
    assert not fit.fits and fit.missing == ["city"] and fit.extra == []
    assert fit.mistyped == [
        Mistyped("size", "double", "str", first_odd=(101, "big")),
        Mistyped("rooms", "long", "float64", missing_values=True),
        Mistyped("garden", "double", "int64"),  # 2**60 has no exact double
    ]


def test_whole_numbers_fit_a_double_input_when_they_convert_exactly() -> None:
    schema = Schema([ColSpec(DataType.double, "size"), ColSpec(DataType.long, "rooms")])
    data = pd.DataFrame({"size": [50, 2**53], "rooms": [2, 3]})  # MLflow alone refuses int64 for double
    assert check_types(data, schema) == []
    conformed = conform(data, schema)
    assert conformed.dtypes.tolist() == [np.float64, np.int64] and conformed["size"].tolist() == [
        50.0,
        2.0**53,
    ]
    assert data["size"].dtype == np.int64, "the table given is left as it is"
    assert conform(GOOD, SCHEMA) is GOOD


def test_an_optional_column_may_be_missing() -> None:
    assert check_columns(GOOD, SCHEMA).missing == []


def test_names_come_only_from_a_named_signature() -> None:
    assert input_names(SCHEMA) == ["size", "rooms", "city", "garden"]
    assert input_names(None) is None
    tensor = Schema([TensorSpec(np.dtype("float64"), (-1, 3))])
    assert input_names(tensor) is None
    with pytest.raises(ValueError, match="no named inputs"):
        check_columns(GOOD, tensor)
