"""The preparation job end to end through the command line: the example, every step kind, CSV and
Parquet outputs, the lineage on the run, and every way it can fail (never leaving a run RUNNING)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import yaml

from tests.conftest import CONFS, write_config
from trainyard.cli import main
from trainyard.core.steps import FilterStep
from trainyard.errors import ConfigurationError
from trainyard.io.readers import CsvReader, ParquetReader
from trainyard.records import ERROR_TAG, KIND_TAG, PROCESSED_CONTEXT, RAW_CONTEXT

PREPARATION = CONFS / "preparation.yaml"
RAW = "data/diabetes_raw.csv"
OUTPUT = "data/diabetes_prepared.parquet"


def runs(tracking_uri: str) -> list[mlflow.entities.Run]:
    """Every run of the store; none of them may be left RUNNING."""
    client = mlflow.MlflowClient(tracking_uri)
    found = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert not [run.info.run_id for run in found if run.info.status == "RUNNING"]
    return list(found)


def only_run(tracking_uri: str) -> mlflow.entities.Run:
    found = runs(tracking_uri)
    assert len(found) == 1
    return found[0]


def job_config(workdir: Path, **changes: Any) -> str:
    """The example config with some job fields replaced, written into the working folder."""
    config = yaml.safe_load(PREPARATION.read_text())
    config["job"].update(changes)
    return write_config(workdir, yaml.safe_dump(config, sort_keys=False), "preparation.yaml")


def with_step(index: int, step: dict[str, Any]) -> list[dict[str, Any]]:
    """The example's steps with the one at ``index`` replaced."""
    steps = yaml.safe_load(PREPARATION.read_text())["job"]["steps"]
    steps[index] = step
    return list(steps)


def expected_table() -> pd.DataFrame:
    """What the example config must produce, computed with pandas directly from the raw file."""
    raw = pd.read_csv(RAW)
    table = (
        raw.rename(columns={"Age": "age", "BMI": "bmi", "BP": "bp"})
        .drop(columns=["notes"])
        .drop_duplicates(subset=["patient_id", "visit_date"])
        .assign(visit_date=lambda t: pd.to_datetime(t["visit_date"], format="%Y-%m-%d"))
    )
    table = table[table["age"] > 0]
    table = table.fillna({"bmi": table["bmi"].median(), "bp": table["bp"].mean()})
    table["bmi_over_30"] = table["bmi"] > 30
    columns = ["patient_id", "visit_date", "age", "sex", "bmi", "bp", *[f"s{i}" for i in range(1, 7)]]
    return table[[*columns, "bmi_over_30", "target"]].reset_index(drop=True)


def test_the_raw_example_needs_preparing(workdir: Path) -> None:
    raw = pd.read_csv(RAW)
    assert raw.shape == (452, 14)
    assert raw.duplicated(["patient_id", "visit_date"]).sum() == 10
    assert raw["BMI"].isna().sum() == 12 and raw["BP"].isna().sum() == 9 and (raw["Age"] == 0).sum() == 3
    assert pd.api.types.is_string_dtype(raw["visit_date"]) and raw["visit_date"].iloc[0] == "2023-05-10"


def test_the_example_end_to_end(workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(PREPARATION)]) == 0
    run = only_run(tracking_uri)
    assert run.info.status == "FINISHED" and run.data.tags[KIND_TAG] == "preparation"
    # the table written is the one pandas gives for the same changes
    written = pd.read_parquet(OUTPUT)
    pd.testing.assert_frame_equal(written, expected_table(), check_dtype=False)
    assert written["visit_date"].dtype.kind == "M" and written["bmi_over_30"].dtype == bool
    assert len(written) == 439 and not written[["bmi", "bp"]].isna().any().any()
    # metrics: rows and columns in and out, and rows in and out of each step
    metrics = run.data.metrics
    totals = {name: metrics[name] for name in ("rows_in", "rows_out", "columns_in", "columns_out")}
    assert totals == {"rows_in": 452, "rows_out": 439, "columns_in": 14, "columns_out": 14}
    assert metrics["steps.2.deduplicate.rows_in"] == 452 and metrics["steps.2.deduplicate.rows_out"] == 442
    assert metrics["steps.4.filter.rows_out"] == 439
    # params: each step on its own, and the kinds in order
    params = run.data.params
    assert params["steps.4"] == "{KIND: filter, condition: age > 0}"
    assert params["steps"] == "rename, drop, deduplicate, cast, filter, fill, derive, select"
    assert params["outputs.path"] == OUTPUT and params["inputs.path"] == RAW
    # lineage: the raw table and the processed one, with their files, digests and row counts
    datasets = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(datasets) == {RAW_CONTEXT, PROCESSED_CONTEXT}
    for name, path, rows in ((RAW_CONTEXT, RAW, 452), (PROCESSED_CONTEXT, OUTPUT, 439)):
        dataset = datasets[name]
        assert [(tag.key, tag.value) for tag in dataset.tags] == [("mlflow.data.context", name)]
        assert json.loads(dataset.dataset.source)["uri"] == str(Path(path).resolve())
        assert json.loads(dataset.dataset.profile)["num_rows"] == rows
    # the digests are those of the files as any job reads them: a training job's lineage matches
    raw = CsvReader(path=RAW)
    processed = ParquetReader(path=OUTPUT)
    assert datasets[RAW_CONTEXT].dataset.digest == raw.lineage(raw.read(), "x").digest
    assert datasets[PROCESSED_CONTEXT].dataset.digest == processed.lineage(processed.read(), "x").digest
    config = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config.yaml"))
    assert config["job"]["steps"][4] == {"KIND": "filter", "condition": "age > 0"}
    err = capsys.readouterr().err
    assert "steps[2] deduplicate" in err and "442 rows (10 removed)" in err
    assert "21 missing values filled" in err and "visit_date str -> datetime64" in err


def test_a_training_job_learns_from_the_prepared_table(workdir: Path, tracking_uri: str) -> None:
    assert main(["run", str(PREPARATION)]) == 0
    features = "[age, sex, bmi, bp, s1, s2, s3, s4, s5, s6, bmi_over_30]"
    overrides = [
        f"job.inputs={{KIND: parquet, path: {OUTPUT}, columns: {features}}}",
        f"job.targets={{KIND: parquet, path: {OUTPUT}, columns: [target]}}",
        "job.register=null",
    ]
    assert main(["run", str(CONFS / "quickstart.yaml"), *overrides]) == 0
    training = next(run for run in runs(tracking_uri) if run.data.tags[KIND_TAG] == "training")
    assert training.info.status == "FINISHED" and training.data.params["data.train_rows"] == "329"


def test_a_csv_output_holds_the_same_table(workdir: Path, tracking_uri: str) -> None:
    config = job_config(workdir, outputs={"KIND": "csv", "path": "data/prepared.csv"})
    assert main(["run", config]) == 0
    written = pd.read_csv("data/prepared.csv", parse_dates=["visit_date"])
    pd.testing.assert_frame_equal(written, expected_table(), check_dtype=False)
    (processed,) = [d for d in only_run(tracking_uri).inputs.dataset_inputs if d.dataset.name == "processed"]
    assert json.loads(processed.dataset.source)["uri"].endswith("data/prepared.csv")


SMALL = "id,age,city,day\na,30,x,2024-01-31\nb,,y,2024-02-01\nb,,y,2024-02-01\nc,61,,2024-02-03\n"


@pytest.mark.parametrize(
    ("step", "columns", "rows"),
    [
        (
            {"KIND": "select", "columns": ["city", "id"]},
            ["city", "id"],
            [["x", "a"], ["y", "b"], ["y", "b"], [None, "c"]],
        ),
        (
            {"KIND": "drop", "columns": ["age", "day"]},
            ["id", "city"],
            [["a", "x"], ["b", "y"], ["b", "y"], ["c", None]],
        ),
        ({"KIND": "rename", "columns": {"city": "town"}}, ["id", "age", "town", "day"], None),
        ({"KIND": "cast", "columns": {"age": "str"}}, None, None),
        (
            {"KIND": "filter", "condition": "age > 40 or city == 'x'"},
            None,
            [["a", 30.0, "x", "2024-01-31"], ["c", 61.0, None, "2024-02-03"]],
        ),
        (
            {"KIND": "derive", "column": "old", "expression": "age >= 60"},
            ["id", "age", "city", "day", "old"],
            None,
        ),
        (
            {"KIND": "fill", "columns": {"age": {"strategy": "mean"}, "city": "unknown"}},
            None,
            [
                ["a", 30.0, "x", "2024-01-31"],
                ["b", 45.5, "y", "2024-02-01"],
                ["b", 45.5, "y", "2024-02-01"],
                ["c", 61.0, "unknown", "2024-02-03"],
            ],
        ),
        (
            {"KIND": "deduplicate", "subset": ["id"], "keep": "last"},
            None,
            [["a", 30.0, "x", "2024-01-31"], ["b", None, "y", "2024-02-01"], ["c", 61.0, None, "2024-02-03"]],
        ),
    ],
)
def test_each_step_kind(
    workdir: Path,
    tracking_uri: str,
    step: dict[str, Any],
    columns: list[str] | None,
    rows: list[list[Any]] | None,
) -> None:
    Path("data/small.csv").write_text(SMALL)
    output = {"KIND": "csv", "path": "data/small_out.csv"}
    config = job_config(
        workdir, inputs={"KIND": "csv", "path": "data/small.csv"}, steps=[step], schema={}, outputs=output
    )
    assert main(["run", config]) == 0
    written = pd.read_csv("data/small_out.csv").astype(object).where(lambda t: t.notna(), None)
    if columns is not None:
        assert list(written.columns) == columns
    if rows is not None:
        assert written.to_numpy().tolist() == rows
    if step["KIND"] == "derive":
        assert written["old"].tolist() == [False, False, False, True]
    if step["KIND"] == "cast":
        lines = Path("data/small_out.csv").read_text().splitlines()
        assert lines[1:3] == ["a,30.0,x,2024-01-31", "b,,y,2024-02-01"]  # a missing value stays missing
    assert only_run(tracking_uri).data.metrics["steps.0." + step["KIND"] + ".rows_in"] == 4


MARKER = "pwned"
ATTACKS = [
    (
        f"__import__('os').system('touch {MARKER}')",
        "the expression calls a function, and functions are not allowed",
    ),
    ("@x > 1", "'@' at character 1: variables (@name) and the @ operator are not allowed"),
    ("age.__class__ == 1", "'age.__class__' reads an attribute, and attribute access is not allowed"),
    (f"open('{MARKER}', 'w') == 1", "\"open('pwned', 'w')\" calls a function, and functions are not allowed"),
]


@pytest.mark.parametrize(("expression", "refusal"), ATTACKS)
@pytest.mark.parametrize("kind", ["filter", "derive"])
def test_an_unsafe_expression_is_refused_before_anything_runs(
    workdir: Path,
    tracking_uri: str,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    expression: str,
    refusal: str,
) -> None:
    step = (
        {"KIND": "filter", "condition": expression}
        if kind == "filter"
        else {"KIND": "derive", "column": "x", "expression": expression}
    )
    config = job_config(workdir, steps=with_step(4, step))
    assert main(["run", config]) == 2
    err = capsys.readouterr().err
    field = "condition" if kind == "filter" else "expression"
    assert f"preparation.yaml: job.steps.4.{field} = " in err
    assert f"{kind} {'condition' if kind == 'filter' else 'expression'}: {refusal}" in err
    assert "Traceback" not in err
    assert not (workdir / MARKER).exists(), "the expression never ran"
    assert not runs(tracking_uri) and not Path(OUTPUT).exists()


def test_an_unsafe_expression_that_skipped_validation_is_refused_by_the_step(workdir: Path) -> None:
    """A step built without validation (model_construct) still checks its expression before pandas sees it."""
    unsafe = FilterStep.model_construct(condition=f"__import__('os').system('touch {MARKER}')")
    with pytest.raises(ConfigurationError, match="calls a function, and functions are not allowed"):
        unsafe.apply(pd.DataFrame({"age": [1]}))
    assert not (workdir / MARKER).exists()


@pytest.mark.parametrize(
    ("index", "step", "message"),
    [
        (
            4,
            {"KIND": "filter", "condition": "agee > 0"},
            "job.steps[4] (filter): in 'agee > 0': unknown column 'agee'. Did you mean age or target?",
        ),
        (
            6,
            {"KIND": "derive", "column": "high", "expression": "BMI > 30"},
            "job.steps[6] (derive): in 'BMI > 30': unknown column 'BMI'. Did you mean bmi?",
        ),
        (
            1,
            {"KIND": "drop", "columns": ["note"]},
            "job.steps[1] (drop): unknown column 'note'. Did you mean notes?",
        ),
        (
            5,
            {"KIND": "fill", "columns": {"Age": 0}},
            "job.steps[5] (fill): unknown column 'Age'. Did you mean age?",
        ),
    ],
)
def test_an_unknown_column_fails_the_run_naming_the_step_and_the_columns(
    workdir: Path,
    tracking_uri: str,
    capsys: pytest.CaptureFixture[str],
    index: int,
    step: dict[str, Any],
    message: str,
) -> None:
    assert main(["run", job_config(workdir, steps=with_step(index, step))]) == 2
    err = capsys.readouterr().err
    assert message in err and "The columns here: patient_id, visit_date, age, sex, bmi, bp" in err
    assert "Traceback" not in err
    run = only_run(tracking_uri)
    assert run.info.status == "FAILED" and message in run.data.tags[ERROR_TAG]
    assert not Path(OUTPUT).exists()


@pytest.mark.parametrize(
    ("index", "step", "message"),
    [
        (
            3,
            {"KIND": "cast", "columns": {"visit_date": "datetime"}, "datetime_format": "%d/%m/%Y"},
            "job.steps[3] (cast): column 'visit_date' has 442 values that are not dates (row 1: '2023-05-10', row 2: '2023-05-20'",
        ),
        (
            3,
            {"KIND": "cast", "columns": {"patient_id": "float"}},
            "job.steps[3] (cast): column 'patient_id' has 442 values that are not numbers (row 1: 'P0001'",
        ),
        (
            3,
            {"KIND": "cast", "columns": {"bmi": "int"}},
            "job.steps[3] (cast): column 'bmi' has 12 missing values (rows ",
        ),
        (
            4,
            {"KIND": "filter", "condition": "age > 200"},
            "job.steps[4] (filter): no row is left of the 442 it was given",
        ),
        (
            4,
            {"KIND": "filter", "condition": "patient_id > 3"},
            "job.steps[4] (filter): 'patient_id > 3' cannot be computed on this table: TypeError",
        ),
        (
            4,
            {"KIND": "filter", "condition": "age * 2"},
            "job.steps[4] (filter): the condition 'age * 2' gives float64 values, not true/false",
        ),
        (
            5,
            {"KIND": "fill", "columns": {"patient_id": {"strategy": "median"}}},
            "job.steps[5] (fill): column 'patient_id' holds str values, and median needs numbers",
        ),
        (
            6,
            {"KIND": "derive", "column": "bmi", "expression": "bmi * 2"},
            "job.steps[6] (derive): the table already has a column 'bmi': set replace: true",
        ),
        (
            0,
            {"KIND": "rename", "columns": {"Age": "sex"}},
            "job.steps[0] (rename): the table already has a column 'sex'",
        ),
    ],
)
def test_a_step_that_cannot_change_the_data_fails_the_run_naming_it(
    workdir: Path,
    tracking_uri: str,
    capsys: pytest.CaptureFixture[str],
    index: int,
    step: dict[str, Any],
    message: str,
) -> None:
    assert main(["run", job_config(workdir, steps=with_step(index, step))]) in {1, 2}
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    run = only_run(tracking_uri)
    assert run.info.status == "FAILED" and message in run.data.tags[ERROR_TAG]
    assert not Path(OUTPUT).exists()


def test_a_schema_violation_names_the_column_and_rows_and_keeps_the_previous_output(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(PREPARATION)]) == 0
    before = Path(OUTPUT).read_bytes()
    config = yaml.safe_load(PREPARATION.read_text())
    config["job"]["schema"]["columns"]["age"]["ge"] = 30
    path = write_config(workdir, yaml.safe_dump(config), "strict.yaml")
    assert main(["run", path]) == 1
    err = capsys.readouterr().err
    assert "job.schema: the prepared rows do not match their schema (42 failures):" in err
    assert "column 'age': greater_than_or_equal_to(30.0) — 42 failing, e.g. 24.0, 23.0" in err
    assert "first failing rows [4, 6, 10, 11, 24]" in err  # numbered from 1 in the raw table
    assert pd.read_csv(RAW).loc[3, "Age"] == 24.0  # row 4 of the raw table
    failed = next(run for run in runs(tracking_uri) if run.info.status == "FAILED")
    assert "column 'age'" in failed.data.tags[ERROR_TAG]
    assert {d.dataset.name for d in failed.inputs.dataset_inputs} == {"raw"}, "what it read is on the run"
    assert Path(OUTPUT).read_bytes() == before, "the previous output stands"


def test_the_files_are_checked_before_any_run(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "data" / "folder").mkdir()
    Path("data/taken.csv").write_text("x\n1\n")
    cases = [
        (
            {"inputs": {"KIND": "csv", "path": "data/nothing.csv"}},
            "job.inputs: file not found: 'data/nothing.csv'",
        ),
        (
            {"outputs": {"KIND": "csv", "path": "data/folder"}},
            "job.outputs: 'data/folder' is a folder, expected a CSV file to write",
        ),
        (
            {"outputs": {"KIND": "csv", "path": "data/taken.csv", "overwrite": False}},
            "job.outputs: 'data/taken.csv' exists and overwrite is false: remove it or set overwrite: true",
        ),
        (
            {"outputs": {"KIND": "csv", "path": f"./{RAW}"}},
            f"job.outputs: './{RAW}' is the raw table job.inputs reads",
        ),
    ]
    for changes, message in cases:
        assert main(["run", job_config(workdir, **changes)]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not runs(tracking_uri)
    assert Path("data/taken.csv").read_text() == "x\n1\n"


def test_an_unknown_step_kind_lists_the_kinds(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", job_config(workdir, steps=[{"KIND": "dedup"}])]) == 2
    assert (
        "job.steps.0.KIND = 'dedup': unknown KIND; expected one of: cast, deduplicate, derive, drop, fill, "
        "filter, rename, select"
    ) in capsys.readouterr().err


def test_ctrl_c_during_a_step_ends_the_run_killed_and_writes_nothing(
    workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: FilterStep, data: pd.DataFrame) -> pd.DataFrame:
        raise KeyboardInterrupt

    monkeypatch.setattr(FilterStep, "apply", interrupted)
    assert main(["run", str(PREPARATION)]) == 130
    run = only_run(tracking_uri)
    assert run.info.status == "KILLED" and "interrupted" in run.data.tags[ERROR_TAG]
    assert not Path(OUTPUT).exists()


def test_an_unforeseen_error_in_a_step_still_names_the_step(
    workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(self: FilterStep, data: pd.DataFrame) -> pd.DataFrame:
        raise ValueError("something pandas said")

    monkeypatch.setattr(FilterStep, "apply", broken)
    assert main(["run", str(PREPARATION)]) == 1
    err = capsys.readouterr().err
    assert "error: job.steps[4] (filter): ValueError: something pandas said" in err and "Traceback" not in err
    assert only_run(tracking_uri).info.status == "FAILED"
