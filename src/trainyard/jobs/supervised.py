"""What every job that learns from inputs and targets shares: its data, model and metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from trainyard.core.metrics import Metric, MetricKind
from trainyard.core.models import ModelKind
from trainyard.core.schemas import FAILING_ROWS_SHOWN, DataSchemas, non_numbers
from trainyard.core.splitters import Holdout, fingerprint
from trainyard.errors import ConfigurationError, DataAccessError, DataValidationError
from trainyard.io.lineage import log_input
from trainyard.io.readers import ReaderKind
from trainyard.jobs.base import Job
from trainyard.records import DATA_DIGEST_TAG, HOLDOUT_TAG, TEST_DIGEST_TAG, TEST_ROWS_TAG

if TYPE_CHECKING:
    import pandas as pd


class SupervisedJob(Job):
    """A job over inputs and targets read from files, validated, and logged as MLflow lineage."""

    inputs: ReaderKind = Field(description="Where the input columns (features) come from.")
    targets: ReaderKind = Field(description="Where the target column comes from (same rows as inputs).")
    data_schema: DataSchemas = Field(
        default_factory=DataSchemas, alias="schema", description="Rules the data must follow."
    )
    model: ModelKind = Field(description="The model to fit.")
    metrics: list[MetricKind] = Field(min_length=1, description="Scores computed on held-out rows.")
    holdout: Holdout | None = Field(
        None,
        description="Rows set aside as the test part before any split, for an evaluation job: never "
        "trained on or tuned on (unset: none; the splitter's held-out rows are the validation part).",
    )

    @field_validator("metrics", mode="before")
    @classmethod
    def _one_metric(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | dict) else value

    @field_validator("metrics")
    @classmethod
    def _metrics_fit_model(cls, metrics: list[Metric], info: ValidationInfo) -> list[Metric]:
        names = [m.name for m in metrics]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:  # a tuning study would optimise the same score twice, as two objectives
            raise ValueError(f"{', '.join(repeated)} given more than once: list each metric once")
        model = info.data.get("model")
        if model is None:
            return metrics
        wrong = [m.name for m in metrics if m.for_classifiers != model.is_classifier]
        if wrong:
            task = "classifier" if model.is_classifier else "regressor"
            raise ValueError(f"{', '.join(wrong)} do not apply to a {task} ({model.estimator})")
        needs_proba = [m.name for m in metrics if m.needs_proba]
        if needs_proba and not model.predicts_probabilities():
            raise ValueError(
                f"{', '.join(needs_proba)} need predicted probabilities, and {model.estimator} with these "
                "params gives none (e.g. SVC needs probability: true)"
            )
        return metrics

    @model_validator(mode="after")
    def _stratify_classes_only(self) -> SupervisedJob:
        splitter = getattr(self, "splitter", None)
        stratified = (
            getattr(splitter, "stratify", False) or getattr(splitter, "KIND", "") == "stratified_kfold"
        )
        if stratified and not self.model.is_classifier:
            raise ValueError(
                f"splitter: stratifying needs classes, and {self.model.estimator} is a regressor"
            )
        if self.holdout is not None and self.holdout.stratify and not self.model.is_classifier:
            raise ValueError(f"holdout: stratifying needs classes, and {self.model.estimator} is a regressor")
        return self

    def prepare(self) -> None:
        """Check the data files before any MLflow run is made (see ``check_data``)."""
        self.check_data()

    def check_data(self) -> None:
        """Each data file is a file with the columns asked for and some rows (header and a row read)."""
        for field, reader in (("inputs", self.inputs), ("targets", self.targets)):
            try:
                reader.check()
            except DataAccessError as error:
                raise DataAccessError(f"job.{field}: {error}") from error

    def read_data(
        self, check: Callable[[dict[str, str]], None] | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Read and validate inputs and targets (a step), then log both as lineage (a step).

        ``check`` is given the digests (``{"inputs": ..., "targets": ...}``) before they are logged,
        and raises to refuse them (a resumed run's data must be the data it was trained on).
        """

        inputs, targets = self.read_inputs_and_targets()
        with self.step("log lineage") as step:
            inputs_lineage = self.inputs.lineage(inputs, "inputs")
            targets_lineage = self.targets.lineage(targets, "targets")
            if check is not None:
                check({"inputs": inputs_lineage.digest, "targets": targets_lineage.digest})
            log_input(inputs_lineage, "inputs")
            log_input(targets_lineage, "targets")
            step.note(f"inputs digest {inputs_lineage.digest}, targets digest {targets_lineage.digest}")
        return inputs, targets

    def hold_out(
        self, inputs: pd.DataFrame, targets: pd.DataFrame
    ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
        """The rows training or tuning may use, and the tags that record the test rows set aside (the
        hold-out's definition, fingerprints of all rows and of the test rows); all rows without one."""
        import json

        if self.holdout is None:
            return inputs, targets, {}
        rest, test = self.holdout.split(inputs, targets)
        tags = {
            HOLDOUT_TAG: json.dumps(self.holdout.model_dump(), sort_keys=True),
            DATA_DIGEST_TAG: fingerprint(inputs, targets),
            TEST_DIGEST_TAG: fingerprint(inputs, targets, test),
            TEST_ROWS_TAG: str(len(test)),
        }
        return inputs.iloc[rest], targets.iloc[rest], tags

    def read_inputs_and_targets(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Read and validate inputs and targets (a step)."""
        with self.step("read inputs and targets") as step:
            inputs = self.data_schema.validate_inputs(self.read(self.inputs, "inputs"))
            targets = self.data_schema.validate_targets(self.read(self.targets, "targets"))
            self.check_numbers(inputs, "inputs", categorical=self.model.categorical)
            if not self.model.is_classifier:
                self.check_numbers(targets, "targets")
            step.note(f"inputs {inputs.shape}, targets {targets.shape}")
            _check_same_rows(inputs, targets)
        return inputs, targets

    def check_numbers(self, data: pd.DataFrame, field: str, categorical: list[str] | None = None) -> None:
        """Refuse text where the model takes numbers (every column but ``categorical``, if given).

        A column of numbers with a few values that are not (more numbers than not) is named with
        those values and their lines; a column of text is named with the fix: ``model.categorical``.
        """

        reader = getattr(self, field)
        odd, text = [], []
        for column in data.columns:
            if categorical is not None and column in categorical:
                continue
            found = non_numbers(data[column])
            if found.empty:
                continue
            if 2 * len(found) > data[column].count():
                text.append(str(column))
                continue
            head = found.head(FAILING_ROWS_SHOWN)  # indexed by row position (non_numbers)
            shown = ", ".join(
                f"{reader.line(i)}: {v!r}" for i, v in zip(head.index.tolist(), head, strict=True)
            )
            more = f" (and {len(found) - FAILING_ROWS_SHOWN} more)" if len(found) > FAILING_ROWS_SHOWN else ""
            odd.append(f"  - column {column!r}: {shown}{more}")
        if odd:
            fix = "correct them, or empty the cells (an empty cell is a missing value)"
            if categorical is not None:
                fix += ", or list the column in model.categorical to take its values as categories"
            lines = "\n".join(odd)
            raise DataValidationError(
                f"job.{field}: '{reader.path}' has values that are not numbers in columns of numbers:\n"
                f"{lines}\n{fix}"
            )
        if text and categorical is None:
            raise ConfigurationError(
                f"job.{field}: '{reader.path}' has text in {', '.join(map(repr, text))}, and "
                f"{self.model.estimator} is a regressor, which predicts numbers: choose a classifier"
            )
        if text:
            columns = f"column {text[0]!r}" if len(text) == 1 else f"columns {', '.join(map(repr, text))}"
            categories = ", ".join([*(categorical or []), *text])
            dropped = ", ".join([*reader.drop, *text])
            raise ConfigurationError(
                f"job.{field}: '{reader.path}' has text in {columns}, which the model takes as numbers: "
                f"list them as categories (model.categorical: [{categories}]) or leave them out "
                f"(job.{field}.drop: [{dropped}])"
            )


def _check_same_rows(inputs: pd.DataFrame, targets: pd.DataFrame) -> None:
    """Inputs and targets must describe the same rows, and no target may leak into the inputs."""
    if len(inputs) != len(targets):
        raise DataValidationError(
            f"inputs have {len(inputs)} rows but targets have {len(targets)}: they must align"
        )
    leaked = [column for column in targets.columns if column in inputs.columns]
    if leaked:
        raise DataValidationError(
            f"target column {', '.join(map(repr, leaked))} is also an input: list the input columns "
            "in job.inputs.columns or leave it out with job.inputs.drop"
        )
