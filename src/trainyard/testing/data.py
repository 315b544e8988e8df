"""Small data sets the kits check on: scikit-learn's bundled ones and tables made here (no downloads).

Their rows are labelled from ``FIRST_LABEL`` on, never 0, 1, 2...: a component that confuses row
labels with row positions fails the kits instead of passing by chance.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

FIRST_LABEL = 1000


@cache
def _iris() -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    inputs = data.data.rename(columns=lambda name: name.replace(" (cm)", "").replace(" ", "_"))
    return _relabelled(inputs), _relabelled(data.target.to_frame("species"))


@cache
def _diabetes(rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.datasets import load_diabetes

    data = load_diabetes(as_frame=True, scaled=False)
    return _relabelled(data.data.head(rows)), _relabelled(data.target.head(rows).to_frame("progression"))


def classification(rows: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Inputs and targets with three balanced classes 0, 1, 2 (iris; ``rows``: every third row kept
    up to that many, so the classes stay balanced). Copies: a check may change them."""
    inputs, targets = _iris()
    if rows is not None:
        step = max(1, len(inputs) // rows)
        inputs, targets = inputs.iloc[::step].head(rows), targets.iloc[::step].head(rows)
    return inputs.copy(), targets.copy()


def regression(rows: int = 150) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Numeric inputs and a positive numeric target (the first ``rows`` of diabetes). Copies."""
    inputs, targets = _diabetes(rows)
    return inputs.copy(), targets.copy()


def table() -> pd.DataFrame:
    """A small table of integers, floats (one missing), text and booleans, as a file would hold."""
    import numpy as np
    import pandas as pd

    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "height": [1.5, 2.25, np.nan, -0.125, 1e6],
            "colour": ["red", "green", "blue", "red", "dark green"],
            "ripe": [True, False, True, True, False],
        }
    )


def _relabelled(frame: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    return frame.set_axis(pd.RangeIndex(FIRST_LABEL, FIRST_LABEL + len(frame)), axis=0)
