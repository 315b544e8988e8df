"""Lineage of a streamed table: its file's source, the digest of its bytes, a sample's schema, its rows."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from trainyard.io.lineage import file_digest, streamed_lineage


def test_a_streamed_table_is_described_by_its_file(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    table = pd.DataFrame({"id": ["a", "b", "c"], "prediction": [0.5, 1.5, 2.5]})
    table.to_csv(path, index=False)
    dataset = streamed_lineage(path, "predictions", table.head(2), rows=3)
    assert dataset.digest == hashlib.sha256(path.read_bytes()).hexdigest()[:8] == file_digest(path)
    entity = dataset._to_mlflow_entity()
    assert entity.name == "predictions" and str(path) in entity.source
    assert json.loads(entity.profile) == {"num_rows": 3, "num_elements": 6}
    assert [column["name"] for column in json.loads(entity.schema)["mlflow_colspec"]] == ["id", "prediction"]
    path.write_text(path.read_text().replace("2.5", "2.6"))
    assert file_digest(path) != dataset.digest


def test_a_data_set_that_another_job_logged_at_the_same_moment_is_logged_on_a_second_try() -> None:
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import IntegrityError

    from trainyard.io.lineage import logged_despite_a_race

    calls: list[int] = []

    def raced() -> str:
        calls.append(1)
        if len(calls) == 1:
            unique = IntegrityError("INSERT INTO datasets ...", {}, Exception("UNIQUE constraint failed"))
            raise MlflowException(str(unique)) from unique
        return "logged"

    assert logged_despite_a_race(raced) == "logged" and len(calls) == 2

    def broken() -> None:
        raise MlflowException("the store is gone")

    with pytest.raises(MlflowException, match="the store is gone"):
        logged_despite_a_race(broken)
