"""The reader kit: every reader kind reads the files the kit writes, and refuses bad ones by name.

A case is a reader kind and a writer of its format (``writers``, by ``KIND``); a new kind in the
union needs its writer here (or in the subclass's ``writers``), and every check then runs on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import pytest

from trainyard.errors import DataAccessError
from trainyard.io.readers import Reader
from trainyard.testing import data
from trainyard.testing.components import ComponentKit, kind_values, kinds_of

if TYPE_CHECKING:
    import pandas as pd

Writer = Callable[["pd.DataFrame", Path], None]
"""Writes a table to a file of the reader's format, without its index."""


def write_csv(table: pd.DataFrame, path: Path) -> None:
    table.to_csv(path, index=False)


def write_parquet(table: pd.DataFrame, path: Path) -> None:
    table.to_parquet(path, index=False)


WRITERS: dict[str, tuple[str, Writer]] = {
    "csv": (".csv", write_csv),
    "parquet": (".parquet", write_parquet),
}
"""For each reader ``KIND``: the file suffix of its format and how to write such a file."""


@dataclass(frozen=True)
class ReaderCase:
    """A reader kind, the suffix of its files and how to write one (None: no writer is known)."""

    kind: type[Reader]
    suffix: str
    write: Writer | None

    def reader(self, path: Path, **config: object) -> Reader:
        """The kind's reader of ``path`` with the other ``config`` keys."""
        return self.kind.model_validate({"path": str(path), **config})

    def written(self, table: pd.DataFrame, path: Path) -> Path:
        """``path`` holding ``table`` in the kind's format."""
        if self.write is None:
            pytest.fail(
                f"no writer for reader kind {kind_values(self.kind)[0]!r}: add its suffix and writer to "
                "trainyard.testing.readers.WRITERS (or to the kit subclass's writers)"
            )
        self.write(table, path)
        return path


class ReaderKit(ComponentKit[ReaderCase]):
    """Checks of every reader kind: read(), check() and lineage() on files in a temporary folder."""

    writers: ClassVar[Mapping[str, tuple[str, Writer]]] = WRITERS

    def cases(self) -> Sequence[ReaderCase]:
        """One case per kind of the union, with the writer of its ``KIND``."""
        cases = []
        for kind in kinds_of(self.union):
            suffix, write = self.writers.get(kind_values(kind)[0], (".data", None))
            cases.append(ReaderCase(kind, suffix, write))
        return cases

    def case_id(self, case: ReaderCase) -> str:
        return str(kind_values(case.kind)[0])

    def component(self, case: ReaderCase) -> Reader:
        return case.reader(Path(f"table{case.suffix}"))

    @pytest.fixture
    def table(self) -> pd.DataFrame:
        """The table the kit writes: integers, floats with a missing value, text, booleans."""
        return data.table()

    @pytest.fixture
    def path(self, case: ReaderCase, table: pd.DataFrame, tmp_path: Path) -> Path:
        """A file of the case's format holding ``table``."""
        return case.written(table, tmp_path / f"table{case.suffix}")

    def test_reads_the_columns_and_rows_of_the_file(
        self, case: ReaderCase, path: Path, table: pd.DataFrame
    ) -> None:
        """read() gives a DataFrame with the file's columns, in order, and its rows and values."""
        import pandas as pd

        read = case.reader(path).read()
        assert isinstance(read, pd.DataFrame), f"read() gave a {type(read).__name__}"
        assert list(read.columns) == list(table.columns), f"columns {list(read.columns)}"
        assert len(read) == len(table), f"{len(read)} rows read of {len(table)}"
        pd.testing.assert_frame_equal(read.reset_index(drop=True), table, check_dtype=False)

    def test_selects_drops_and_limits(self, case: ReaderCase, path: Path, table: pd.DataFrame) -> None:
        """``columns`` picks and orders columns, ``drop`` leaves some out, ``limit`` keeps the first rows."""
        picked = case.reader(path, columns=["colour", "id"]).read()
        assert list(picked.columns) == ["colour", "id"], f"columns [colour, id] gave {list(picked.columns)}"
        dropped = case.reader(path, drop=["height"]).read()
        assert list(dropped.columns) == ["id", "colour", "ripe"], f"drop gave {list(dropped.columns)}"
        limited = case.reader(path, limit=2).read()
        assert limited["id"].tolist() == table["id"].head(2).tolist(), (
            f"limit 2 gave {limited['id'].tolist()}"
        )

    def test_check_accepts_a_good_file(self, case: ReaderCase, path: Path) -> None:
        """check() returns quietly for a file with the columns asked for and rows."""
        case.reader(path, columns=["id"], drop=["ripe"]).check()

    def test_refuses_a_missing_file_by_name(self, case: ReaderCase, tmp_path: Path) -> None:
        """check() and read() name a file that does not exist."""
        missing = tmp_path / f"missing{case.suffix}"
        self._refused(case.reader(missing), f"file not found: '{missing}'")

    def test_refuses_an_empty_file_by_name(self, case: ReaderCase, tmp_path: Path) -> None:
        """check() and read() name a file of 0 bytes."""
        empty = tmp_path / f"empty{case.suffix}"
        empty.touch()
        self._refused(case.reader(empty), f"'{empty}' is empty")

    def test_refuses_a_file_with_only_its_header_by_name(
        self, case: ReaderCase, table: pd.DataFrame, tmp_path: Path
    ) -> None:
        """check() and read() name a file with columns but no rows, and list its columns."""
        header = case.written(table.head(0), tmp_path / f"header{case.suffix}")
        self._refused(
            case.reader(header), f"'{header}' has no rows, only its columns: id, height, colour, ripe"
        )

    def test_refuses_a_missing_column_by_name(self, case: ReaderCase, path: Path) -> None:
        """check() and read() name the file, the missing column and the columns it has."""
        message = f"'{path}' has no column 'wheels'; its columns are: id, height, colour, ripe"
        self._refused(case.reader(path, columns=["id", "wheels"]), message)
        self._refused(case.reader(path, drop=["wheels"]), message)

    def test_refuses_a_folder_by_name(self, case: ReaderCase, tmp_path: Path) -> None:
        """check() and read() name a folder given as the path."""
        self._refused(case.reader(tmp_path), f"'{tmp_path}' is a folder")

    @pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer column")
    def test_lineage_is_an_mlflow_dataset_of_the_file(self, case: ReaderCase, path: Path) -> None:
        """lineage() gives an MLflow dataset: the name given, the file's absolute path as its source,
        the data's columns and row count, and a digest that changes with the data."""
        from mlflow.data.dataset import Dataset

        reader = case.reader(path)
        read = reader.read()
        dataset = reader.lineage(read, "inputs")
        assert isinstance(dataset, Dataset), f"lineage() gave a {type(dataset).__name__}"
        assert dataset.name == "inputs", f"named {dataset.name!r}"
        assert str(path.resolve()) in dataset.source.to_json(), f"source {dataset.source.to_json()}"
        assert dataset.schema is not None and dataset.schema.input_names() == list(read.columns)
        assert dataset.profile is not None and dataset.profile["num_rows"] == len(read)
        assert reader.lineage(read.head(2), "inputs").digest != dataset.digest, "the digest ignores the rows"

    @staticmethod
    def _refused(reader: Reader, message: str) -> None:
        """Both check() and read() raise a DataAccessError that says ``message``."""
        for method in (reader.check, reader.read):
            with pytest.raises(DataAccessError) as caught:
                method()
            assert message in str(caught.value), (
                f"{method.__name__}() said {str(caught.value)!r}, expected it to say {message!r}"
            )
