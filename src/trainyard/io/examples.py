"""Example data: scikit-learn's bundled real data sets written as CSV files (no network needed)."""

from __future__ import annotations

from pathlib import Path


def write_example_data(folder: Path) -> list[Path]:
    """Write ``diabetes.csv`` (regression) and ``breast_cancer.csv`` (binary classification)."""
    from sklearn.datasets import load_breast_cancer, load_diabetes

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, loader, kwargs in (
        ("diabetes", load_diabetes, {"scaled": False}),
        ("breast_cancer", load_breast_cancer, {}),
    ):
        frame = loader(as_frame=True, **kwargs).frame
        frame.columns = [str(column).replace(" ", "_") for column in frame.columns]
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        written.append(path)
    return written
