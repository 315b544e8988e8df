"""Readers: load a table from a file and describe it for MLflow lineage."""

from __future__ import annotations

import abc
from collections.abc import Generator
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

    def header(self) -> list[str]:
        """The names of the columns a read returns, in order, read without loading the data."""
        self.check()
        if self.columns:
            return [name for name in self.columns if name not in self.drop]
        return [name for name in self._column_names(Path(self.path)) if name not in self.drop]

    def chunks(self, rows: int) -> Generator[pd.DataFrame]:
        """Read the table in pieces of at most ``rows`` rows, in order (``columns``, ``drop`` and
        ``limit`` applied), for tables larger than memory: only one piece is held at a time.

        Each piece is indexed by row position in the table (0 for the first row), so ``line()`` names
        a row of any piece. The file is checked first, as by ``read()``.
        """
        import pandas as pd

        self.check()
        pieces = self._chunks(Path(self.path), rows)
        start = 0
        try:
            while True:
                try:
                    piece = next(pieces)
                except StopIteration:
                    return
                except (OSError, ValueError) as error:
                    raise DataAccessError(f"cannot read '{self.path}' as {self.KIND}: {error}") from error
                piece = piece[self.columns] if self.columns else piece
                piece = piece.drop(columns=self.drop) if self.drop else piece
                piece.index = pd.RangeIndex(start, start + len(piece))
                start += len(piece)
                yield piece
        finally:
            pieces.close()

    def approximate_rows(self) -> int | None:
        """How many rows a read returns, told without parsing the data (for a progress bar): exact for
        Parquet (its metadata); for CSV, the file's lines but the header (so a quoted line break
        counts as a row); ``limit`` caps it. None when it cannot be told."""
        try:
            rows = self._approximate_rows(Path(self.path))
        except OSError:
            return None
        return min(rows, self.limit) if self.limit is not None else rows

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

    @abc.abstractmethod
    def _chunks(self, path: Path, rows: int) -> Generator[pd.DataFrame]:
        """Load the selected columns and rows in pieces of at most ``rows`` rows."""

    @abc.abstractmethod
    def _approximate_rows(self, path: Path) -> int:
        """The number of data rows of the whole file, without parsing it."""


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

    def _chunks(self, path: Path, rows: int) -> Generator[pd.DataFrame]:
        import pandas as pd

        with pd.read_csv(
            path, sep=self.separator, usecols=self.columns, nrows=self.limit, chunksize=rows
        ) as pieces:
            yield from pieces

    def _approximate_rows(self, path: Path) -> int:
        lines, last = 0, b"\n"
        with path.open("rb") as file:
            while block := file.read(1 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
        lines += last != b"\n"  # a last line without its line break
        return max(lines - 1, 0)


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

    def _chunks(self, path: Path, rows: int) -> Generator[pd.DataFrame]:
        import pyarrow.parquet as pq

        left = self.limit
        with pq.ParquetFile(path) as file:
            for batch in file.iter_batches(batch_size=rows, columns=self.columns):
                if left is not None:
                    batch = batch.slice(0, left)
                    left -= batch.num_rows
                yield batch.to_pandas()
                if left is not None and left <= 0:
                    return

    def _approximate_rows(self, path: Path) -> int:
        import pyarrow.parquet as pq

        return int(pq.read_metadata(path).num_rows)


ReaderKind = Annotated[CsvReader | ParquetReader, Field(discriminator="KIND")]
