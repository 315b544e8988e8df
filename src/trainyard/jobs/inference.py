"""The inference job: resolve and load a model, stream the inputs through it chunk by chunk, write
the predictions, and log where they came from."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from trainyard.core.signature_checks import (
    Mistyped,
    SignatureFit,
    check_columns,
    check_types,
    conform,
    input_names,
)
from trainyard.errors import ConfigurationError, DataAccessError, DataValidationError, TrainingJobError
from trainyard.io.console import console
from trainyard.io.lineage import log_input, streamed_lineage
from trainyard.io.logging import get_logger
from trainyard.io.model_refs import LoadedModel, ModelRef
from trainyard.io.progress import RowProgress
from trainyard.io.readers import ReaderKind
from trainyard.io.writers import AppendChunk, WriterKind
from trainyard.jobs.base import Job, Locals

if TYPE_CHECKING:
    import pandas as pd

SAMPLE_ROWS = 1000  # rows kept of the inputs and of the predictions, for their lineage's schema


class InferenceJob(Job):
    """Predict with a model from the store on a table of any size, chunk by chunk, into a file.

    The inputs are checked against the model's signature before anything is written: a missing or
    mistyped column fails the job; an extra column (an id, the label) is ignored with a warning,
    as MLflow's own pyfunc does, unless `keep_columns` copies it beside the predictions.
    """

    KIND: Literal["inference"] = "inference"
    model: ModelRef = Field(description="The model to predict with, named one of four ways.")
    inputs: ReaderKind = Field(description="The rows to predict: the model's input columns, and any kept.")
    outputs: WriterKind = Field(description="Where the predictions go (the kept columns first).")
    chunk_size: int = Field(
        100_000, gt=0, description="Rows read, predicted and written at a time (memory holds one chunk)."
    )
    keep_columns: list[str] = Field(
        default_factory=list, description="Input columns copied beside the predictions (an id, say)."
    )
    probabilities: bool = Field(
        False, description="Also write each class's probability, as probability_<class> (classifiers)."
    )

    @field_validator("keep_columns")
    @classmethod
    def _each_once(cls, columns: list[str]) -> list[str]:
        repeated = sorted({name for name in columns if columns.count(name) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} given more than once: list each column once")
        return columns

    def prepare(self) -> None:
        """Check the files before any MLflow run: the inputs exist with the kept columns, and the
        predictions may be written."""
        try:
            header = self.inputs.header()
        except DataAccessError as error:
            raise DataAccessError(f"job.inputs: {error}") from error
        absent = [name for name in self.keep_columns if name not in header]
        if absent:
            raise DataAccessError(
                f"job.keep_columns: '{self.inputs.path}' has no column {', '.join(map(repr, absent))} "
                f"(read with job.inputs' selection); its columns are: {', '.join(header)}"
            )
        try:
            self.outputs.check()
        except DataAccessError as error:
            raise DataAccessError(f"job.outputs: {error}") from error
        if Path(self.outputs.path).resolve() == Path(self.inputs.path).resolve():
            raise ConfigurationError(
                f"job.outputs.path: '{self.outputs.path}' is the inputs' file: write the predictions elsewhere"
            )

    def run(self) -> Locals:
        import mlflow

        with self.tracked_run() as run:
            with self.step("resolve model") as step:
                resolved = self.model.resolve("job.model")
                mlflow.log_params(resolved.params())
                step.note(resolved.describe())
            with self.step("load model") as step:
                model = resolved.load()
                self._check_probabilities(model)
                step.note(f"{model.flavor} flavor, {_describe_signature(model)}")
            with contextlib.closing(self._chunks()) as chunks:
                start = time.perf_counter()  # the rate counts the first chunk's reading and check
                with self.step("check inputs") as step:
                    first = next(chunks, None)
                    if first is None:  # the file had rows when checked before the run
                        raise DataAccessError(f"job.inputs: '{self.inputs.path}' has no rows")
                    features = self._features(model, first)
                    step.note(
                        f"{len(features) if features is not None else len(first.columns)} input columns"
                    )
                with self.step("predict", spinner=False) as step:
                    stream = _first_then(first, chunks)
                    del first  # memory holds one chunk at a time
                    rows, chunk_count, inputs_sample, outputs_sample = self._stream(model, stream, features)
                    seconds = time.perf_counter() - start
                    rate = rows / seconds if seconds > 0 else 0.0
                    step.note(f"{rows:,} rows in {chunk_count} chunk(s), {rate:,.0f} rows/s")
                    mlflow.log_metrics({"rows": rows, "rows_per_second": rate, "chunks": chunk_count})
            with self.step("log lineage") as step:
                inputs_lineage = streamed_lineage(self.inputs.path, "inputs", inputs_sample, rows)
                outputs_lineage = streamed_lineage(self.outputs.path, "predictions", outputs_sample, rows)
                log_input(inputs_lineage, "inference")
                log_input(outputs_lineage, "predictions")
                step.note(
                    f"inputs digest {inputs_lineage.digest}, predictions digest {outputs_lineage.digest}"
                )
            self.report(
                "Inference finished",
                {
                    "run": run.info.run_id,
                    "model": resolved.describe(),
                    "rows": f"{rows:,} ({rate:,.0f} rows/s)",
                    "predictions": self.outputs.path,
                    "look": self.mlflow.ui_command(),
                },
            )
        return locals()

    # -- the steps' parts -------------------------------------------------------------------------

    def _chunks(self) -> Generator[pd.DataFrame]:
        """The input chunks; a reading error names ``job.inputs``."""
        pieces = self.inputs.chunks(self.chunk_size)
        try:
            while True:
                try:
                    piece = next(pieces)
                except StopIteration:
                    return
                except DataAccessError as error:
                    raise DataAccessError(f"job.inputs: {error}") from error
                yield piece
        finally:
            pieces.close()

    def _check_probabilities(self, model: LoadedModel) -> None:
        if self.probabilities and model.classes is None:
            what = type(model.model).__name__
            raise ConfigurationError(
                f"job.probabilities: {model.ref.describe()} predicts no probabilities (a {what} of the "
                f"{model.flavor} flavor): only a classifier with predict_proba does; set probabilities: false"
            )

    def _features(self, model: LoadedModel, first: pd.DataFrame) -> list[str] | None:
        """The model's input columns, after checking the first chunk against its signature (None: the
        model has no named inputs, and takes every column read)."""
        schema = model.input_schema
        names = input_names(schema)
        if schema is None or names is None:
            get_logger().warning(
                "%s has no signature with column names: the inputs are not checked, and the model gets "
                "every column read (choose them with job.inputs.columns)",
                model.ref.describe(),
            )
            return None
        fit = check_columns(first, schema, ignored=tuple(self.keep_columns))
        if not fit.fits:
            raise DataValidationError(self._misfit(model, fit, names))
        if fit.extra:
            get_logger().warning(
                "job.inputs: %s %s not among the model's inputs: ignored (copy them beside the "
                "predictions with job.keep_columns, or leave them out with job.inputs.drop)",
                ", ".join(map(repr, fit.extra)),
                "is" if len(fit.extra) == 1 else "are",
            )
        return [name for name in names if name in first.columns]

    def _misfit(self, model: LoadedModel, fit: SignatureFit, names: list[str], where: str = "") -> str:
        lines = []
        if fit.missing:
            lines.append(
                f"  - missing {'column' if len(fit.missing) == 1 else 'columns'} "
                f"{', '.join(map(repr, fit.missing))} (the model takes: {', '.join(names)})"
            )
        lines += [f"  - {self._mistyped(problem)}" for problem in fit.mistyped]
        return (
            f"job.inputs: '{self.inputs.path}'{where} does not fit the inputs of the model "
            f"{model.ref.describe()}:\n" + "\n".join(lines)
        )

    def _mistyped(self, problem: Mistyped) -> str:
        text = f"column {problem.column!r}: expected {problem.expected}, found {problem.found}"
        if problem.first_odd is not None:
            row, value = problem.first_odd
            text += f" ({self.inputs.line(int(row))}: {value!r} is not a number)"
        elif problem.missing_values:
            text += f" (it has missing values, which {problem.expected} cannot hold)"
        return text

    def _stream(
        self, model: LoadedModel, chunks: Iterator[pd.DataFrame], features: list[str] | None
    ) -> tuple[int, int, pd.DataFrame, pd.DataFrame]:
        """Predict each chunk and append it to the output file; the rows, the chunks and samples of
        the inputs and the predictions."""
        total = self.inputs.approximate_rows() if console.is_terminal else None  # a pass over a CSV
        inputs_sample: Any = None
        outputs_sample: Any = None
        with self._writing() as append, RowProgress(total) as progress:
            for chunk in chunks:
                self.cancellation.check()
                if inputs_sample is None:
                    inputs_sample = chunk.head(SAMPLE_ROWS).copy()  # not a view that holds the chunk
                elif features is not None and model.input_schema is not None:
                    self._check_chunk(model, chunk[features], features)
                table = self._predict(model, chunk, features)
                if outputs_sample is None:
                    self._check_output_columns(table)
                    outputs_sample = table.head(SAMPLE_ROWS).copy()
                append(table)
                progress.advance(len(chunk))
        return progress.rows, progress.chunks, inputs_sample, outputs_sample

    def _check_chunk(self, model: LoadedModel, data: pd.DataFrame, names: list[str]) -> None:
        assert model.input_schema is not None
        mistyped = check_types(data, model.input_schema)
        if mistyped:
            rows = f" (rows {data.index[0] + 1:,} to {data.index[-1] + 1:,})"
            raise DataValidationError(self._misfit(model, SignatureFit(mistyped=mistyped), names, rows))

    def _predict(self, model: LoadedModel, chunk: pd.DataFrame, features: list[str] | None) -> pd.DataFrame:
        import pandas as pd

        inputs = chunk[features] if features is not None else chunk
        if features is not None and model.input_schema is not None:
            inputs = conform(inputs, model.input_schema)  # whole numbers for a double input
        try:
            parts = [model.predict(inputs)]
            if self.probabilities:
                parts.append(model.predict_proba(inputs))
        except (ValueError, TypeError, KeyError) as error:
            rows = f"rows {chunk.index[0] + 1:,} to {chunk.index[-1] + 1:,}"
            raise TrainingJobError(
                f"job.model: {model.ref.describe()} failed to predict {rows} of '{self.inputs.path}': {error}"
            ) from error
        if self.keep_columns:
            parts.insert(0, chunk[self.keep_columns])
        return parts[0] if len(parts) == 1 else pd.concat(parts, axis=1)

    def _check_output_columns(self, table: pd.DataFrame) -> None:
        repeated = list(dict.fromkeys(str(c) for c in table.columns[table.columns.duplicated()]))
        if repeated:
            raise ConfigurationError(
                f"job.keep_columns: {', '.join(map(repr, repeated))} is also the name of a column of the "
                "predictions: rename it in the inputs, or leave it out of keep_columns"
            )

    @contextlib.contextmanager
    def _writing(self) -> Iterator[AppendChunk]:
        """The output file, chunk by chunk (in place only if all went well); its errors name
        ``job.outputs``."""
        raised_inside: BaseException | None = None

        def append_chunk(table: pd.DataFrame) -> None:
            try:
                append(table)
            except DataAccessError as error:
                raise DataAccessError(f"job.outputs: {error}") from error

        try:
            with self.outputs.chunks() as append:
                try:
                    yield append_chunk
                except BaseException as error:
                    raised_inside = error
                    raise
        except DataAccessError as error:
            if error is raised_inside:
                raise
            raise DataAccessError(f"job.outputs: {error}") from error


def _first_then(first: pd.DataFrame, rest: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``first`` then the rest, holding no reference to ``first`` once it is handed on."""
    pending = [first]
    del first
    while pending:
        yield pending.pop()
    yield from rest


def _describe_signature(model: LoadedModel) -> str:
    names = input_names(model.input_schema)
    if names is None:
        return "no named inputs in its signature"
    return f"signature of {len(names)} input columns"
