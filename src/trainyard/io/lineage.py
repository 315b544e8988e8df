"""MLflow lineage of a table that was streamed (read or written in chunks), never held whole; and
logging lineage when other jobs log the same table at the same moment.

MLflow's pandas dataset describes a DataFrame in memory: its digest and row count come from the
whole frame. A streamed table is described by its file instead: the digest of the file's bytes (read
once more, in blocks), the row count counted while streaming, and the schema of a sample of rows.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd
    from mlflow.data.dataset import Dataset

BLOCK = 1 << 20
_T = TypeVar("_T")


def logged_despite_a_race(log: Callable[[], _T]) -> _T:
    """``log()`` (an MLflow call that logs data sets), once more if another job logged the same data
    set in between: MLflow looks a data set up, then inserts it, so two jobs that log a new one at
    once both insert it and one fails on the store's UNIQUE constraint; the second try finds it."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import IntegrityError

    try:
        return log()
    except MlflowException as error:
        if not isinstance(error.__cause__, IntegrityError):  # SQLite's or PostgreSQL's, as MLflow raised it
            raise
        return log()


def log_input(dataset: Dataset, context: str) -> None:
    """``mlflow.log_input`` into the active run, despite a race (``logged_despite_a_race``)."""
    import mlflow

    logged_despite_a_race(lambda: mlflow.log_input(dataset, context=context))


def file_digest(path: Path) -> str:
    """The first 8 hex digits of the SHA-256 of the file's bytes (MLflow's digests are 8 long)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()[:8]


def streamed_lineage(path: str | Path, name: str, sample: pd.DataFrame, rows: int) -> Dataset:
    """An MLflow dataset for the table in ``path``: source file, digest of its bytes, the schema of
    ``sample`` (some of its rows) and ``rows`` in its profile."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.models import infer_signature

    class StreamedTable(MetaDataset):
        """A MetaDataset with the row count a pandas dataset would show (``profile``)."""

        @property
        def profile(self) -> Any | None:
            return {"num_rows": rows, "num_elements": rows * len(sample.columns)}

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self.profile)}

    resolved = Path(path).resolve()
    with warnings.catch_warnings():
        # MLflow registers its local-file source under two schemes and warns that it picked one.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        source = resolve_dataset_source(str(resolved))
    schema = infer_signature(sample).inputs
    return StreamedTable(source, name=name, digest=file_digest(resolved), schema=schema)
