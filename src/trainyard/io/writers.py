"""Table writers: put a table into a file (CSV, Parquet), whole or chunk by chunk, never half-written.

Every writer writes to a temporary file beside its target and renames it into place at the end, so a
job that fails or is stopped leaves the previous file (or none), never a truncated one. A chunked
write (``chunks()``) appends one piece at a time, so a table larger than memory streams through.
"""

from __future__ import annotations

import abc
import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field

from trainyard.core.component import Component
from trainyard.errors import DataAccessError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.data.pandas_dataset import PandasDataset

AppendChunk = Callable[["pd.DataFrame"], None]


class TableWriter(Component, abc.ABC):
    """Writes a table to ``path`` (its folder is made if missing)."""

    KIND: str
    path: str = Field(description="File to write, relative to the working folder or absolute.")
    overwrite: bool = Field(True, description="Replace an existing file (false: refuse to).")

    FORMAT: ClassVar[str] = "table"  # what the file holds, for messages: "a CSV file"

    def check(self) -> None:
        """Check, before any work, that the file may be written: not a folder, and not existing
        unless ``overwrite``."""
        path = Path(self.path)
        if path.is_dir():
            raise DataAccessError(f"'{self.path}' is a folder, expected a {self.FORMAT} file to write")
        if path.exists() and not self.overwrite:
            raise DataAccessError(
                f"'{self.path}' exists and overwrite is false: remove it or set overwrite: true"
            )

    def write(self, data: pd.DataFrame) -> Path:
        """Write the whole table; return the file's path."""
        with self.chunks() as append:
            append(data)
        return Path(self.path)

    @contextlib.contextmanager
    def chunks(self) -> Iterator[AppendChunk]:
        """Inside: append pieces of the table in order (same columns each time). On a normal exit the
        file is in place; on an error, nothing is left behind and the previous file stands."""
        self.check()
        target = Path(self.path)
        temporary = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.part"
        try:
            with self._cannot_write():
                target.parent.mkdir(parents=True, exist_ok=True)
                opened = self._open(temporary)
                append = opened.__enter__()

            def checked(chunk: pd.DataFrame) -> None:
                with self._cannot_write():
                    append(chunk)

            try:
                yield checked
            except BaseException:
                opened.__exit__(None, None, None)
                raise
            with self._cannot_write():
                opened.__exit__(None, None, None)
                os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _cannot_write(self) -> Iterator[None]:
        """The file system's or the format library's error, as a DataAccessError naming the file."""
        try:
            yield
        except (OSError, ValueError, TypeError) as error:  # pyarrow's errors derive from these
            raise DataAccessError(f"cannot write '{self.path}': {error}") from error

    def lineage(self, data: pd.DataFrame, name: str) -> PandasDataset:
        """An MLflow dataset for what was written (a sample or the whole table): its file and schema."""
        import warnings

        from mlflow.data.pandas_dataset import from_pandas

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            return from_pandas(data, source=str(Path(self.path).resolve()), name=name)

    @abc.abstractmethod
    def _open(self, path: Path) -> contextlib.AbstractContextManager[AppendChunk]:
        """A context in which each call appends a chunk to ``path`` (which exists, empty)."""


class CsvWriter(TableWriter):
    """A comma-separated file with a header row, without the index."""

    KIND: Literal["csv"] = "csv"
    FORMAT: ClassVar[str] = "CSV"
    separator: str = Field(",", description="Field separator.")

    @contextlib.contextmanager
    def _open(self, path: Path) -> Iterator[AppendChunk]:
        with path.open("w", newline="") as file:
            first = True

            def append(chunk: pd.DataFrame) -> None:
                nonlocal first
                chunk.to_csv(file, sep=self.separator, index=False, header=first)
                first = False

            yield append


class ParquetWriter(TableWriter):
    """An Apache Parquet file (one row group per chunk), without the index."""

    KIND: Literal["parquet"] = "parquet"
    FORMAT: ClassVar[str] = "Parquet"
    compression: Literal["snappy", "zstd", "gzip", "none"] = Field("snappy", description="Codec.")

    @contextlib.contextmanager
    def _open(self, path: Path) -> Iterator[AppendChunk]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer: Any = None
        schema: Any = None

        def append(chunk: pd.DataFrame) -> None:
            nonlocal writer, schema
            table = pa.Table.from_pandas(chunk, preserve_index=False, schema=schema)
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(path, schema, compression=self.compression)
            writer.write_table(table)

        try:
            yield append
        finally:
            if writer is not None:
                writer.close()
        if writer is None:  # nothing appended: still a valid (empty) file
            pq.write_table(pa.table({}), path)


WriterKind = Annotated[CsvWriter | ParquetWriter, Field(discriminator="KIND")]
