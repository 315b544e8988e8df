"""Splitters: partition rows into train and test positions."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from trainyard.component import Component
from trainyard.errors import ConfigurationError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    Index = np.ndarray


class Splitter(Component, abc.ABC):
    """Splits a table's rows; returns positional indices (train, test)."""

    KIND: str
    test_size: float = Field(0.2, gt=0.0, lt=1.0, description="Fraction of rows held out for testing.")

    @abc.abstractmethod
    def split(self, inputs: pd.DataFrame, targets: pd.DataFrame) -> tuple[Index, Index]:
        """Train and test row positions."""


class TrainTestSplitter(Splitter):
    """A random hold-out split, optionally stratified on the target."""

    KIND: Literal["train_test"] = "train_test"
    shuffle: bool = Field(True, description="Shuffle rows before splitting.")
    seed: int | None = Field(42, description="Random seed of the shuffle (unset: random each run).")
    stratify: bool = Field(False, description="Keep class proportions equal in both parts.")

    def split(self, inputs: pd.DataFrame, targets: pd.DataFrame) -> tuple[Index, Index]:
        import numpy as np
        from sklearn.model_selection import train_test_split

        if self.stratify and not self.shuffle:
            raise ConfigurationError("splitter.stratify needs splitter.shuffle: true")
        positions = np.arange(len(inputs))
        try:
            train, test = train_test_split(
                positions,
                test_size=self.test_size,
                shuffle=self.shuffle,
                random_state=self.seed,
                stratify=targets.iloc[:, 0] if self.stratify else None,
            )
        except ValueError as error:
            raise ConfigurationError(f"splitter: cannot split {len(inputs)} rows: {error}") from error
        return train, test


class TimeSeriesSplitter(Splitter):
    """Rows are in time order: train on the first part, test on the last ``test_size``."""

    KIND: Literal["time_series"] = "time_series"

    def split(self, inputs: pd.DataFrame, targets: pd.DataFrame) -> tuple[Index, Index]:
        import numpy as np

        rows = len(inputs)
        cut = rows - max(1, round(rows * self.test_size))
        if cut < 1:
            raise ConfigurationError(f"splitter: {rows} rows are too few to split in time order")
        return np.arange(cut), np.arange(cut, rows)


SplitterKind = Annotated[TrainTestSplitter | TimeSeriesSplitter, Field(discriminator="KIND")]
