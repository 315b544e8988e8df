"""The preparation job: read a raw table, apply its steps in order, validate, write; lineage raw -> processed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from trainyard.core.schemas import TableSchema
from trainyard.core.steps import PreparationStep, StepKind
from trainyard.errors import DataAccessError, DataValidationError, TrainyardError
from trainyard.io.lineage import log_input
from trainyard.io.readers import ReaderKind
from trainyard.io.tracking import RunRecord
from trainyard.io.writers import WriterKind
from trainyard.jobs.base import Job, Locals
from trainyard.records import PROCESSED_CONTEXT, RAW_CONTEXT

if TYPE_CHECKING:
    import pandas as pd


class PreparationJob(Job):
    """Turn a raw table into a clean one: read it, apply the steps in order, check the result against
    the schema, write it, and log both tables on the run as lineage (contexts raw and processed)."""

    KIND: Literal["preparation"] = "preparation"
    inputs: ReaderKind = Field(description="The raw table.")
    steps: list[StepKind] = Field(
        default_factory=list,
        description="The changes, applied in order (each one to the result of the last).",
    )
    data_schema: TableSchema = Field(
        default_factory=TableSchema, alias="schema", description="Rules the prepared table must follow."
    )
    outputs: WriterKind = Field(description="Where the prepared table is written (CSV or Parquet).")

    def prepare(self) -> None:
        """Before any MLflow run: the raw file can be read, and the output written without losing it."""
        for field, check in (("inputs", self.inputs.check), ("outputs", self.outputs.check)):
            try:
                check()
            except DataAccessError as error:
                raise DataAccessError(f"job.{field}: {error}") from error
        if Path(self.outputs.path).resolve() == Path(self.inputs.path).resolve():
            raise DataAccessError(
                f"job.outputs: '{self.outputs.path}' is the raw table job.inputs reads: write the prepared "
                "table to another file, so that the raw one stays as its lineage says"
            )

    def run_record(self, tags: dict[str, str] | None = None) -> RunRecord:
        """The base record, with the steps as params one by one (``steps.2`` = ``{KIND: filter, ...}``)
        and ``steps`` their kinds in order, instead of the whole list cut to 500 characters."""
        import yaml

        record = super().run_record(tags)
        params = {key: value for key, value in record.params.items() if key != "steps"}
        params["steps"] = ", ".join(change.KIND for change in self.steps) or "none"
        for index, change in enumerate(self.steps):
            text = yaml.safe_dump(
                change.model_dump(mode="json"), default_flow_style=True, sort_keys=False, width=10**6
            )
            params[f"steps.{index}"] = text.strip()[:500]
        return dataclasses.replace(record, params=params)

    def run(self) -> Locals:
        import mlflow

        with self.tracked_run() as run:
            with self.step("read") as step:
                raw = self.read(self.inputs, "inputs")
                raw_lineage = self.inputs.lineage(raw, RAW_CONTEXT)
                log_input(raw_lineage, RAW_CONTEXT)
                mlflow.log_metrics({"rows_in": len(raw), "columns_in": raw.shape[1]})
                step.note(f"{raw.shape}, digest {raw_lineage.digest}")
            data = raw.set_axis(raw.index + 1)  # a row's label is its number in the raw table, from 1
            for index, change in enumerate(self.steps):
                with self.step(f"steps[{index}] {change.KIND}") as step:
                    before, data = data, self.apply_step(index, change, data)
                    prefix = f"steps.{index}.{change.KIND}"
                    mlflow.log_metrics({f"{prefix}.rows_in": len(before), f"{prefix}.rows_out": len(data)})
                    step.note(_changes(before, data))
            with self.step("validate") as step:
                data = self.check_schema(data)
                step.note(f"{len(self.data_schema.columns)} columns with rules")
            with self.step("write") as step:
                prepared = data.reset_index(drop=True)  # as it reads back
                path = self.outputs.write(prepared)
                step.note(f"{prepared.shape} to {path}")
            with self.step("log lineage") as step:
                processed_lineage = self.outputs.lineage(prepared, PROCESSED_CONTEXT)
                log_input(processed_lineage, PROCESSED_CONTEXT)
                mlflow.log_metrics({"rows_out": len(prepared), "columns_out": prepared.shape[1]})
                step.note(f"raw {raw_lineage.digest} -> processed {processed_lineage.digest}")
            self.report(
                "Preparation finished",
                {
                    "run": run.info.run_id,
                    "rows": f"{len(raw)} -> {len(prepared)}",
                    "columns": f"{raw.shape[1]} -> {prepared.shape[1]}",
                    "written": str(path),
                    "look": self.mlflow.ui_command(),
                },
            )
        return locals()

    def apply_step(self, index: int, change: PreparationStep, data: pd.DataFrame) -> pd.DataFrame:
        """``change`` applied to ``data``; a failure names the step (``job.steps[2] (filter)``)."""
        where = f"job.steps[{index}] ({change.KIND})"
        try:
            changed = change.apply(data)
        except TrainyardError as error:
            raise type(error)(f"{where}: {error}") from error
        except Exception as error:  # not foreseen by the step: still say which step it was
            raise TrainyardError(f"{where}: {type(error).__name__}: {error}") from error
        if changed.shape[1] == 0:
            raise DataValidationError(f"{where}: no column is left")
        if len(changed) == 0:
            raise DataValidationError(
                f"{where}: no row is left of the {len(data)} it was given: is the condition the right way round?"
                if change.KIND == "filter"
                else f"{where}: no row is left of the {len(data)} it was given"
            )
        return changed

    def check_schema(self, data: pd.DataFrame) -> pd.DataFrame:
        """``data`` checked (and coerced where asked) against ``schema``; rows are named by their number
        in the raw table."""
        try:
            return self.data_schema.validate_table(data, "the prepared rows")
        except DataValidationError as error:
            raise DataValidationError(f"job.schema: {error}") from error


def _changes(before: pd.DataFrame, after: pd.DataFrame) -> str:
    """What a step changed, for its log line: ``442 rows (10 removed); columns +bmi_over_30``."""
    removed = len(before) - len(after)
    notes = [f"{len(after)} rows" + (f" ({removed} removed)" if removed else "")]
    names = [
        *(f"+{c}" for c in after.columns if c not in before),
        *(f"-{c}" for c in before.columns if c not in after),
    ]
    if names:
        notes.append(f"columns {' '.join(names)}")
    retyped = [
        f"{column} {before[column].dtype} -> {after[column].dtype}"
        for column in after.columns
        if column in before and before[column].dtype != after[column].dtype
    ]
    if retyped:
        notes.append(", ".join(retyped))
    common = [column for column in after.columns if column in before]
    if not removed and common:
        filled = int(before[common].isna().sum().sum() - after[common].isna().sum().sum())
        if filled > 0:
            notes.append(f"{filled} missing values filled")
    return "; ".join(notes)
