"""Example data: scikit-learn's bundled real data sets written as CSV files (no network needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

RAW_SEED = 20240131  # the raw table is the same on every machine, and so are its lineage digests


def write_example_data(folder: Path) -> list[Path]:
    """Write ``diabetes.csv`` (regression), ``breast_cancer.csv`` (binary classification) and
    ``diabetes_raw.csv`` (the diabetes rows as a raw export, for the preparation job)."""
    from sklearn.datasets import load_breast_cancer, load_diabetes

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    frames = {}
    for name, loader, kwargs in (
        ("diabetes", load_diabetes, {"scaled": False}),
        ("breast_cancer", load_breast_cancer, {}),
    ):
        frame = loader(as_frame=True, **kwargs).frame
        frame.columns = [str(column).replace(" ", "_") for column in frame.columns]
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        written.append(path)
        frames[name] = frame
    path = folder / "diabetes_raw.csv"
    raw_diabetes(frames["diabetes"]).to_csv(path, index=False)
    written.append(path)
    return written


def raw_diabetes(frame: pd.DataFrame) -> pd.DataFrame:
    """The diabetes table as a clinic's export might hold it, for the preparation job to clean:
    a patient id, the visit date as text, capitalised headers (``Age``, ``BMI``, ``BP``), a free-text
    ``notes`` column, 12 missing BMI and 9 missing BP values, 3 ages entered as 0, and 10 visits entered
    twice (the copy right after the first, noted ``re-entered``): 452 rows."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(RAW_SEED)
    rows = len(frame)
    days = pd.to_timedelta(rng.integers(0, 365, rows), unit="D")
    raw = pd.DataFrame(
        {
            "patient_id": [f"P{number:04d}" for number in range(1, rows + 1)],
            "visit_date": (pd.Timestamp("2023-01-02") + days).strftime("%Y-%m-%d"),
            "Age": frame["age"],
            "sex": frame["sex"],
            "BMI": frame["bmi"],
            "BP": frame["bp"],
            **{f"s{number}": frame[f"s{number}"] for number in range(1, 7)},
            "notes": pd.Series([None] * rows, dtype="object"),
            "target": frame["target"],
        }
    )
    raw.loc[rng.choice(rows, 40, replace=False), "notes"] = "fasting"
    raw.loc[rng.choice(rows, 12, replace=False), "BMI"] = np.nan
    raw.loc[rng.choice(rows, 9, replace=False), "BP"] = np.nan
    raw.loc[rng.choice(rows, 3, replace=False), "Age"] = 0.0
    copies = raw.loc[np.sort(rng.choice(rows, 10, replace=False))].assign(notes="re-entered")
    return pd.concat([raw, copies]).sort_index(kind="stable").reset_index(drop=True)
