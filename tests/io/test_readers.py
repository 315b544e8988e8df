"""Reading a table in chunks: the pieces put together are the whole read, with the selection, the
limit and row positions; the header and the row count come without reading the data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

from trainyard.errors import DataAccessError
from trainyard.io.readers import CsvReader, ParquetReader, Reader

READERS: dict[str, type[Reader]] = {"csv": CsvReader, "parquet": ParquetReader}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    data = load_diabetes(as_frame=True, scaled=False).frame
    csv, parquet = tmp_path / "d.csv", tmp_path / "d.parquet"
    data.to_csv(csv, index=False)
    data.to_parquet(parquet, index=False, row_group_size=100)  # chunks cross row groups
    return {"csv": csv, "parquet": parquet}


@pytest.mark.parametrize("kind", READERS)
@pytest.mark.parametrize(
    "selection",
    [{}, {"columns": ["bmi", "age"]}, {"drop": ["target"]}, {"limit": 150}, {"columns": ["s1"], "limit": 1}],
)
@pytest.mark.parametrize("rows", [1_000, 64, 7])
def test_chunks_put_together_are_the_whole_read(
    files: dict[str, Path], kind: str, selection: dict[str, object], rows: int
) -> None:
    reader = READERS[kind].model_validate({"path": str(files[kind]), **selection})
    pieces = list(reader.chunks(rows))
    whole = reader.read()
    assert all(0 < len(piece) <= rows for piece in pieces)
    pd.testing.assert_frame_equal(pd.concat(pieces), whole)  # indexed by row position, like a read
    assert reader.header() == list(whole.columns)


@pytest.mark.parametrize("kind", READERS)
def test_the_row_count_is_told_without_parsing(files: dict[str, Path], kind: str, tmp_path: Path) -> None:
    assert READERS[kind](path=str(files[kind])).approximate_rows() == 442
    assert READERS[kind](path=str(files[kind]), limit=10).approximate_rows() == 10
    if kind == "csv":
        unterminated = tmp_path / "u.csv"
        unterminated.write_text("a,b\n1,2\n3,4")  # no line break after the last row
        assert CsvReader(path=str(unterminated)).approximate_rows() == 2
    assert READERS[kind](path=str(tmp_path / f"none.{kind}")).approximate_rows() is None


@pytest.mark.parametrize("kind", READERS)
def test_chunks_check_the_file_first(files: dict[str, Path], kind: str) -> None:
    with pytest.raises(DataAccessError, match="has no column 'wheels'"):
        next(READERS[kind](path=str(files[kind]), columns=["wheels"]).chunks(10))
    with pytest.raises(DataAccessError, match="file not found"):
        READERS[kind](path="nope").header()


def test_a_csv_that_breaks_after_its_first_chunks_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_text("a,b\n" + "1,2\n" * 50 + "1,2,3,4\n")
    pieces = CsvReader(path=str(broken)).chunks(20)
    assert len(next(pieces)) == 20
    with pytest.raises(DataAccessError, match=r"cannot read '.*broken\.csv' as csv: .*Expected 2 fields"):
        list(pieces)


def test_a_file_that_is_not_parquet_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "fake.parquet"
    fake.write_text("a,b\n1,2\n")
    with pytest.raises(DataAccessError, match=r"cannot read '.*fake\.parquet' as parquet"):
        list(ParquetReader(path=str(fake)).chunks(10))
