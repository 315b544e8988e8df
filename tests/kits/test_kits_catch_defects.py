"""The kits' checks can fail: each one is run on a kind made to break its contract, and must fail it.

A sound kind passes them (the other modules here show that); these kinds each carry one defect.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import pytest
from pydantic import ConfigDict, Field, field_serializer, field_validator

from trainyard.core.component import Component
from trainyard.core.metrics import Metric
from trainyard.core.models import PREDICTION, SklearnModel
from trainyard.core.splitters import KFoldSplitter, Splitter
from trainyard.errors import DataAccessError
from trainyard.io.alerts import ConsoleAlert, WebhookAlert
from trainyard.io.readers import CsvReader
from trainyard.testing import data
from trainyard.testing.alerts import AlertCase, AlertKit, console_inbox, webhook_inbox
from trainyard.testing.components import ComponentKit
from trainyard.testing.metrics import MetricKit
from trainyard.testing.models import ModelKit, fit_once, registered
from trainyard.testing.readers import ReaderCase, ReaderKit, write_csv
from trainyard.testing.splitters import SplitterKit

FAILED = (AssertionError, pytest.fail.Exception)
Fold = tuple[np.ndarray, np.ndarray]


def fails(check: Callable[..., None], *args: Any) -> None:
    """``check`` fails (an assertion or pytest.fail, as a failed test) on ``args``."""
    with pytest.raises(FAILED):
        check(*args)


# -- every kind ----------------------------------------------------------------------------------


class Sound(Component):
    KIND: Literal["sound"] = "sound"
    size: int = 3


class Loose(Component):
    model_config = ConfigDict(frozen=False, extra="forbid")
    KIND: Literal["loose"] = "loose"


class Lax(Component):
    model_config = ConfigDict(frozen=True, extra="ignore")
    KIND: Literal["lax"] = "lax"


class Drifting(Component):
    """Each validation changes its name: its dump validates to another component."""

    KIND: Literal["drifting"] = "drifting"
    name: str = "x"

    @field_validator("name")
    @classmethod
    def _grow(cls, name: str) -> str:
        return name + "!"


class Forgetful(Component):
    """Dumps ``when`` as 0 whatever it is: its config comes back different."""

    KIND: Literal["forgetful"] = "forgetful"
    when: int = 1

    @field_serializer("when")
    def _zero(self, when: int) -> int:
        return 0


class Stringly(Component):
    """Dumps its integer as text in JSON: its JSON config breaks its own schema."""

    KIND: Literal["stringly"] = "stringly"
    count: int = 1

    @field_serializer("count", when_used="json")
    def _text(self, count: int) -> str:
        return str(count)


class Untagged(Component):
    KIND: str = "untagged"


Family = Annotated[Sound | Loose | Lax | Drifting | Forgetful | Stringly, Field(discriminator="KIND")]


class _Components(ComponentKit[Component]):
    union = Family

    def cases(self) -> list[Component]:
        return [Sound()]

    def case_id(self, case: Component) -> str:
        return type(case).__name__

    def component(self, case: Component) -> Component:
        return case


COMMON_CHECKS = [name for name in dir(ComponentKit) if name.startswith("test_")]


@pytest.mark.parametrize("check", COMMON_CHECKS)
def test_a_sound_kind_passes_the_common_checks(check: str) -> None:
    getattr(_Components(), check)(Sound())


@pytest.mark.parametrize(
    ("component", "check"),
    [
        (Loose(), "test_is_frozen"),
        (Lax(), "test_rejects_unknown_keys"),
        (Untagged(), "test_kind_is_in_the_family_union"),
        (Untagged(), "test_kind_is_a_literal"),
        (Drifting(), "test_dump_revalidates_equal"),
        (Forgetful(), "test_union_chooses_the_kind_from_its_config"),
        (Stringly(), "test_has_a_json_schema"),
    ],
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)
def test_a_common_check_fails_a_kind_that_breaks_it(component: Component, check: str) -> None:
    fails(getattr(_Components(), check), component)


# -- readers -------------------------------------------------------------------------------------


class NamelessCsv(CsvReader):
    """Says what is wrong, never with which file."""

    KIND: Literal["nameless"] = "nameless"

    def check(self) -> None:
        try:
            super().check()
        except DataAccessError:
            raise DataAccessError("cannot read the file") from None


class ShortCsv(CsvReader):
    """Loses the last row."""

    KIND: Literal["short"] = "short"

    def _read(self, path: Path) -> pd.DataFrame:
        return super()._read(path).iloc[:-1]


class _Readers(ReaderKit):
    union = Annotated[CsvReader | NamelessCsv | ShortCsv, Field(discriminator="KIND")]


def test_the_reader_kit_fails_a_reader_that_names_no_file(tmp_path: Path) -> None:
    case = ReaderCase(NamelessCsv, ".csv", write_csv)
    kit = _Readers()
    fails(kit.test_refuses_a_missing_file_by_name, case, tmp_path)
    fails(kit.test_refuses_an_empty_file_by_name, case, tmp_path)
    fails(kit.test_refuses_a_folder_by_name, case, tmp_path)


def test_the_reader_kit_fails_a_reader_that_loses_rows(tmp_path: Path) -> None:
    case, table = ReaderCase(ShortCsv, ".csv", write_csv), data.table()
    path = case.written(table, tmp_path / "table.csv")
    fails(_Readers().test_reads_the_columns_and_rows_of_the_file, case, path, table)


def test_the_reader_kit_fails_a_kind_it_cannot_write(tmp_path: Path) -> None:
    case = ReaderCase(CsvReader, ".csv", None)
    fails(_Readers().test_refuses_a_file_with_only_its_header_by_name, case, data.table(), tmp_path)


# -- splitters -----------------------------------------------------------------------------------


class Overlapping(Splitter):
    """Tests on rows it trains on."""

    KIND: Literal["overlapping"] = "overlapping"

    def folds(self, inputs: pd.DataFrame, targets: pd.DataFrame) -> list[Fold]:
        rows = len(inputs)
        return [(np.arange(rows), np.arange(rows // 2))]


class ByLabel(Splitter):
    """Gives row labels where positions are due."""

    KIND: Literal["by_label"] = "by_label"

    def folds(self, inputs: pd.DataFrame, targets: pd.DataFrame) -> list[Fold]:
        labels = inputs.index.to_numpy()
        return [(labels[:100], labels[100:])]


class Unseeded(Splitter):
    """Shuffles differently on every call."""

    KIND: Literal["unseeded"] = "unseeded"

    def folds(self, inputs: pd.DataFrame, targets: pd.DataFrame) -> list[Fold]:
        order = np.random.default_rng().permutation(len(inputs))
        return [(order[:100], order[100:])]


class FirstFold(KFoldSplitter):
    """Holds out the first fold, not the last."""

    KIND: Literal["first_fold"] = "first_fold"

    def split(self, inputs: pd.DataFrame, targets: pd.DataFrame) -> Fold:
        return self.folds(inputs, targets)[0]


class _Splitters(SplitterKit):
    union = Annotated[Overlapping | ByLabel | Unseeded | FirstFold, Field(discriminator="KIND")]


@pytest.mark.parametrize(
    ("splitter", "check"),
    [
        (Overlapping(), "test_folds_are_disjoint"),
        (ByLabel(), "test_folds_are_row_positions"),
        (Unseeded(), "test_same_config_same_folds"),
        (FirstFold(), "test_split_is_the_last_fold"),
    ],
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)
def test_the_splitter_kit_fails_a_splitter_that_breaks_a_check(splitter: Splitter, check: str) -> None:
    fails(getattr(_Splitters(), check), splitter, data.classification())


# -- metrics -------------------------------------------------------------------------------------


class Backwards(Metric):
    """Says the opposite direction of its score."""

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        return "maximize" if super().direction == "minimize" else "minimize"


class Careless(Metric):
    """Scores 0 where it has no probabilities, instead of refusing."""

    def score(
        self,
        targets: pd.DataFrame,
        outputs: pd.DataFrame,
        probas: np.ndarray | None = None,
        labels: list[Any] | None = None,
    ) -> float:
        return 0.0 if probas is None else super().score(targets, outputs, probas, labels)


class _Metrics(MetricKit):
    union = Metric


@pytest.mark.parametrize("name", ["rmse", "accuracy", "log_loss"])
def test_the_metric_kit_fails_a_metric_with_the_wrong_direction(name: str) -> None:
    fails(_Metrics().test_a_perfect_prediction_scores_better_than_a_bad_one, Backwards(KIND=name))


def test_the_metric_kit_fails_a_probability_metric_that_scores_without_them() -> None:
    fails(_Metrics().test_probability_metrics_take_probabilities, Careless(KIND="roc_auc"))


# -- models --------------------------------------------------------------------------------------


class Unindexed(SklearnModel):
    """Predicts with a fresh index, not the inputs'."""

    KIND: Literal["unindexed"] = "unindexed"

    def predict(self, inputs: pd.DataFrame) -> pd.DataFrame:
        return super().predict(inputs).reset_index(drop=True)


class Eager(SklearnModel):
    """Predicts zeros before it is fitted."""

    KIND: Literal["eager"] = "eager"

    def predict(self, inputs: pd.DataFrame) -> pd.DataFrame:
        if self._pipeline is None:
            return pd.DataFrame({PREDICTION: 0.0}, index=inputs.index)
        return super().predict(inputs)


class Unnormalised(SklearnModel):
    """Probabilities that sum to 2."""

    KIND: Literal["unnormalised"] = "unnormalised"

    def predict_proba(self, inputs: pd.DataFrame, labels: list[Any] | None = None) -> np.ndarray:
        return 2 * super().predict_proba(inputs, labels)


class Jittery(SklearnModel):
    """Adds fresh noise to every prediction."""

    KIND: Literal["jittery"] = "jittery"

    def predict(self, inputs: pd.DataFrame) -> pd.DataFrame:
        noise = np.random.default_rng().normal(size=len(inputs))
        return super().predict(inputs) + noise[:, None]


class _Models(ModelKit):
    union = Annotated[Unindexed | Eager | Unnormalised | Jittery, Field(discriminator="KIND")]


def _like(kind: type[SklearnModel], name: str) -> SklearnModel:
    return kind.model_validate({"estimator": name, "params": registered(name).params})


def test_the_model_kit_fails_a_model_that_loses_the_index() -> None:
    case = _like(Unindexed, "Ridge")
    fails(_Models().test_predict_gives_a_prediction_per_input_row, case, fit_once(case))


def test_the_model_kit_fails_a_model_that_predicts_unfitted() -> None:
    fails(_Models().test_an_unfitted_model_refuses_to_predict, _like(Eager, "Ridge"))


def test_the_model_kit_fails_probabilities_that_do_not_sum_to_one() -> None:
    case = _like(Unnormalised, "LogisticRegression")
    fails(_Models().test_predict_proba_rows_are_distributions, case, fit_once(case))


def test_the_model_kit_fails_a_model_that_predicts_differently_each_time() -> None:
    case = _like(Jittery, "Ridge")
    fails(_Models().test_fit_is_deterministic, case, fit_once(case))


# -- alerts --------------------------------------------------------------------------------------


class Chatty(ConsoleAlert):
    """Says everything twice."""

    KIND: Literal["chatty"] = "chatty"

    def notify(self, title: str, message: str) -> None:
        super().notify(title, message)
        super().notify(title, message)


class Ascii(ConsoleAlert):
    """Drops what is not ASCII."""

    KIND: Literal["ascii"] = "ascii"

    def notify(self, title: str, message: str) -> None:
        super().notify(title.encode("ascii", "replace").decode(), message)


class LeakyHook(WebhookAlert):
    """Its URL is plain text, so every repr and dump shows it."""

    KIND: Literal["leaky"] = "leaky"
    url: str


class _Alerts(AlertKit):
    union = Annotated[Chatty | Ascii | LeakyHook, Field(discriminator="KIND")]


def test_the_alert_kit_fails_an_alert_that_delivers_twice() -> None:
    fails(_Alerts().test_notify_delivers_the_title_and_message, AlertCase(Chatty, console_inbox))


def test_the_alert_kit_fails_an_alert_that_mangles_the_title() -> None:
    fails(_Alerts().test_notify_delivers_the_title_and_message, AlertCase(Ascii, console_inbox))


def test_the_alert_kit_fails_an_alert_that_shows_its_url() -> None:
    fails(_Alerts().test_secrets_are_masked, AlertCase(LeakyHook, webhook_inbox))


# -- the kits themselves -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expected", [{("test_no_such_check", "sound"): "?"}, {("test_is_frozen", "no_such_case"): "?"}]
)
def test_an_expected_failure_must_name_a_check_and_a_case(expected: dict[tuple[str, str], str]) -> None:
    """A stale entry would otherwise silently mark nothing."""
    kit = type("Stale", (_Components,), {"expected_failures": expected})()
    with pytest.raises(ValueError, match="expected_failures: no"):
        kit._identified()
