"""Readers: load a table from a file and describe it for MLflow lineage."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field

from trainyard.core.component import Component
from trainyard.errors import DataAccessError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.data.pandas_dataset import PandasDataset


class Reader(Component, abc.ABC):
    """Reads a table from ``path``; ``columns`` selects columns, ``limit`` caps rows while reading."""

    KIND: str
    path: str = Field(description="File to read, relative to the working folder or absolute.")
    columns: list[str] | None = Field(None, description="Columns to keep, in this order (all if unset).")
    drop: list[str] = Field(default_factory=list, description="Columns to leave out (e.g. the target).")
    limit: int | None = Field(None, gt=0, description="Read at most this many rows (from the top).")

    FORMAT: ClassVar[str] = "table"  # what the file holds, for messages: "a CSV file"

    def check(self) -> None:
        """Check, without loading the data, that the path is a file with the columns and some rows.

        Cheap (the header and one row at most), so a job runs it before it starts its MLflow run.
        """
        path = Path(self.path)
        if path.is_dir():
            raise DataAccessError(f"'{self.path}' is a folder, expected a {self.FORMAT} file")
        if not path.is_file():
            raise DataAccessError(f"file not found: '{self.path}' (looked in {path.resolve().parent})")
        if path.stat().st_size == 0:
            raise DataAccessError(
                f"'{self.path}' is empty (0 bytes): expected a {self.FORMAT} file with rows"
            )
        available = self._column_names(path)
        if not available:
            raise DataAccessError(f"'{self.path}' is empty (no header row): expected a {self.FORMAT} file")
        missing = [name for name in [*(self.columns or []), *self.drop] if name not in available]
        if missing:
            raise DataAccessError(
                f"'{self.path}' has no column {', '.join(map(repr, missing))}; "
                f"its columns are: {', '.join(available)}"
            )
        if not self._has_rows(path):
            raise DataAccessError(f"'{self.path}' has no rows, only its columns: {', '.join(available)}")

    def read(self) -> pd.DataFrame:
        """Read the table, checking first that the file, the requested columns and some rows exist."""
        self.check()
        path = Path(self.path)
        try:
            data = self._read(path)
        except (OSError, ValueError) as error:
            raise DataAccessError(f"cannot read '{self.path}' as {self.KIND}: {error}") from error
        data = data[self.columns] if self.columns else data
        return data.drop(columns=self.drop) if self.drop else data

    def line(self, position: int) -> str:
        """Where the data row at ``position`` (0 for the first) is in the file, for messages."""
        return f"row {position + 1}"

    def lineage(self, data: pd.DataFrame, name: str) -> PandasDataset:
        """An MLflow dataset for ``data``: its source file, digest, schema and row count."""
        import warnings

        from mlflow.data.pandas_dataset import from_pandas

        with warnings.catch_warnings():
            # MLflow registers its local-file source under two schemes and warns that it picked one.
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            return from_pandas(data, source=str(Path(self.path).resolve()), name=name)

    @abc.abstractmethod
    def _column_names(self, path: Path) -> list[str]:
        """The column names of the file, read without loading the data."""

    @abc.abstractmethod
    def _has_rows(self, path: Path) -> bool:
        """Whether the file holds at least one data row, read without loading the data."""

    @abc.abstractmethod
    def _read(self, path: Path) -> pd.DataFrame:
        """Load the selected columns and rows."""


class CsvReader(Reader):
    """A comma-separated file with a header row."""

    KIND: Literal["csv"] = "csv"
    FORMAT: ClassVar[str] = "CSV"
    separator: str = Field(",", description="Field separator.")

    def line(self, position: int) -> str:
        # the header is line 1; a blank line or a quoted line break before the row shifts this
        return f"line {position + 2}"

    def _has_rows(self, path: Path) -> bool:
        import pandas as pd

        return not pd.read_csv(path, sep=self.separator, nrows=1).empty

    def _column_names(self, path: Path) -> list[str]:
        import csv

        with path.open(newline="") as file:
            header = next(csv.reader(file, delimiter=self.separator), [])
        return header

    def _read(self, path: Path) -> pd.DataFrame:
        import pandas as pd

        return pd.read_csv(path, sep=self.separator, usecols=self.columns, nrows=self.limit)


class ParquetReader(Reader):
    """An Apache Parquet file; ``limit`` reads only the first row batches it needs."""

    KIND: Literal["parquet"] = "parquet"
    FORMAT: ClassVar[str] = "Parquet"

    def _has_rows(self, path: Path) -> bool:
        import pyarrow.parquet as pq

        return bool(pq.read_metadata(path).num_rows)

    def _column_names(self, path: Path) -> list[str]:
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as error:  # pyarrow raises its own ArrowInvalid for non-parquet files
            raise DataAccessError(f"cannot read '{self.path}' as parquet: {error}") from error

    def _read(self, path: Path) -> pd.DataFrame:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.limit is None:
            return pq.read_table(path, columns=self.columns).to_pandas()
        file = pq.ParquetFile(path)
        batches, rows = [], 0
        for batch in file.iter_batches(batch_size=min(self.limit, 65_536), columns=self.columns):
            batches.append(batch)
            rows += batch.num_rows
            if rows >= self.limit:
                break
        if not batches:
            return pq.read_table(path, columns=self.columns).to_pandas()
        return pa.Table.from_batches(batches).slice(0, self.limit).to_pandas()


ReaderKind = Annotated[CsvReader | ParquetReader, Field(discriminator="KIND")]
