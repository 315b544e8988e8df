"""Table writers: whole or chunked, read back equal, and never a half-written file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from trainyard.errors import DataAccessError
from trainyard.io.readers import CsvReader, ParquetReader, Reader
from trainyard.io.writers import CsvWriter, ParquetWriter, TableWriter

TABLE = pd.DataFrame({"a": [1, 2, 3, 4], "b": [0.5, 1.5, 2.5, 3.5], "c": ["x", "y", "z", "w"]})
KINDS: list[tuple[type[TableWriter], type[Reader], str]] = [
    (CsvWriter, CsvReader, "csv"),
    (ParquetWriter, ParquetReader, "parquet"),
]


@pytest.mark.parametrize(("writer", "reader", "suffix"), KINDS)
def test_a_table_written_whole_or_in_chunks_reads_back_equal(
    tmp_path: Path, writer: type[TableWriter], reader: type[Reader], suffix: str
) -> None:
    whole = tmp_path / "out" / f"whole.{suffix}"  # the folder is made
    assert writer(path=str(whole)).write(TABLE) == whole
    chunked = tmp_path / f"chunked.{suffix}"
    with writer(path=str(chunked)).chunks() as append:
        append(TABLE.iloc[:1])
        append(TABLE.iloc[1:3])
        append(TABLE.iloc[3:])
    for path in (whole, chunked):
        pd.testing.assert_frame_equal(reader(path=str(path)).read(), TABLE)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", chunked.name])  # no .part left


@pytest.mark.parametrize(("writer", "reader", "suffix"), KINDS)
def test_a_failed_write_leaves_the_previous_file(
    tmp_path: Path, writer: type[TableWriter], reader: type[Reader], suffix: str
) -> None:
    path = tmp_path / f"t.{suffix}"
    writer(path=str(path)).write(TABLE)
    with pytest.raises(RuntimeError, match="stopped"), writer(path=str(path)).chunks() as append:
        append(TABLE.iloc[:2] * 0)
        raise RuntimeError("stopped")
    pd.testing.assert_frame_equal(reader(path=str(path)).read(), TABLE)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_chunk_parquet_cannot_store_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    with (
        pytest.raises(DataAccessError, match=r"cannot write '.*t\.parquet'"),
        ParquetWriter(path=str(path)).chunks() as append,
    ):
        append(TABLE)
        append(TABLE.assign(a=["not", "a", "number", "!"]))
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_a_folder_or_a_kept_file_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(DataAccessError, match="is a folder, expected a CSV file to write"):
        CsvWriter(path=str(tmp_path)).write(TABLE)
    kept = tmp_path / "kept.csv"
    kept.write_text("a\n1\n")
    with pytest.raises(DataAccessError, match="exists and overwrite is false"):
        CsvWriter(path=str(kept), overwrite=False).write(TABLE)
    assert kept.read_text() == "a\n1\n"


def test_an_empty_parquet_table_is_still_a_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    with ParquetWriter(path=str(path)).chunks():
        pass
    assert path.is_file()
