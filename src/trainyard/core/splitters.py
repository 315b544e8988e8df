"""Splitters: partition rows into train and test positions, once (hold-out) or as folds (CV).

``folds()`` gives every (train, test) pair, which tuning cross-validates on; ``split()`` gives the
last of them, which a training job holds out (for time-ordered folds, the most recent rows).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from trainyard.core.component import Component
from trainyard.errors import ConfigurationError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    Index = np.ndarray
    Fold = tuple[Index, Index]


class Splitter(Component, abc.ABC):
    """Splits a table's rows into positional (train, test) indices."""

    KIND: str

    @abc.abstractmethod
    def folds(self, inputs: pd.DataFrame, targets: pd.DataFrame) -> list[Fold]:
        """Every (train, test) pair of row positions."""

    def split(self, inputs: pd.DataFrame, targets: pd.DataFrame) -> Fold:
        """The hold-out pair: the last fold."""
        return self.folds(inputs, targets)[-1]


class TrainTestSplitter(Splitter):
    """A random hold-out split, optionally stratified on the target."""

    KIND: Literal["train_test"] = "train_test"
    test_size: float = Field(0.2, gt=0.0, lt=1.0, description="Fraction of rows held out for testing.")
    shuffle: bool = Field(True, description="Shuffle rows before splitting.")
    seed: int | None = Field(42, description="Random seed of the shuffle (unset: random each run).")
    stratify: bool = Field(False, description="Keep class proportions equal in both parts.")

    def folds(self, inputs: pd.DataFrame, targets: pd.DataFrame) -> list[Fold]:
        import numpy as np
        from sklearn.model_selection import train_test_split

        if self.stratify and not self.shuffle:
            raise ConfigurationError("splitter.stratify needs splitter.shuffle: true")
        try:
            train, test = train_test_split(
                np.arange(len(inputs)),
                test_size=self.test_size,
                shuffle=self.shuffle,
                random_state=self.seed,
                stratify=targets.iloc[:, 0] if self.stratify else None,
            )
        except ValueError as error:
            raise ConfigurationError(f"splitter: cannot split {len(inputs)} rows: {error}") from error
        return [(train, test)]


class TimeSeriesSplitter(Splitter):
    """Rows are in time order: always train on earlier rows and test on the next ``test_size``.

    With ``n_splits: 1`` the last ``test_size`` of the rows is held out; with more, the folds move
    forward in time (each test block follows its training rows), the last one ending at the end.
    """

    KIND: Literal["time_series"] = "time_series"
    test_size: float = Field(0.2, gt=0.0, lt=1.0, description="Fraction of rows in each test block.")
    n_splits: int = Field(1, ge=1, description="Number of folds (1: a single hold-out).")

    @model_validator(mode="after")
    def _room_to_train(self) -> TimeSeriesSplitter:
        if self.n_splits * self.test_size >= 1:
            raise ValueError(
                f"n_splits x test_size = {self.n_splits} x {self.test_size} leaves no rows to train the "
                "first fold on: lower one of them"
            )
        return self

    def folds(self, inputs: pd.DataFrame, targets: pd.DataFrame) -> list[Fold]:
        import numpy as np

        rows = len(inputs)
        block = max(1, round(rows * self.test_size))
        first_test = rows - block * self.n_splits
        if first_test < 1:
            raise ConfigurationError(
                f"splitter: {rows} rows are too few for {self.n_splits} time-ordered folds"
            )
        starts = [first_test + block * k for k in range(self.n_splits)]
        return [(np.arange(start), np.arange(start, min(start + block, rows))) for start in starts]


class _Folds(Splitter):
    """K folds of (by default shuffled) rows, each held out once."""

    n_splits: int = Field(5, ge=2, description="Number of folds.")
    shuffle: bool = Field(True, description="Shuffle rows before making folds.")
    seed: int | None = Field(42, description="Random seed of the shuffle.")

    def folds(self, inputs: pd.DataFrame, targets: pd.DataFrame) -> list[Fold]:
        import sklearn.model_selection

        stratified = isinstance(self, StratifiedKFoldSplitter)
        if stratified:
            self._check_class_sizes(targets)
        cv = getattr(sklearn.model_selection, "StratifiedKFold" if stratified else "KFold")(
            self.n_splits, shuffle=self.shuffle, random_state=self.seed if self.shuffle else None
        )
        try:
            return list(cv.split(inputs, targets.iloc[:, 0] if stratified else None))
        except ValueError as error:
            raise ConfigurationError(
                f"job.splitter: cannot make folds of {len(inputs)} rows: {error}"
            ) from error

    def _check_class_sizes(self, targets: pd.DataFrame) -> None:
        """Refuse a class with fewer rows than folds: some test folds would lack it (scikit-learn only
        warns, and scores then differ from fold to fold in which classes they judge)."""
        counts = targets.iloc[:, 0].value_counts()
        few = counts[counts < self.n_splits]
        if few.empty:
            return
        classes = ", ".join(f"{label!r} has {count}" for label, count in few.items())
        smallest = int(counts.min())
        fix = (
            f"lower job.splitter.n_splits to {smallest} or fewer, or add rows of that class"
            if smallest >= 2
            else "a class of 1 row cannot be both trained on and tested: remove or relabel its rows"
        )
        raise ConfigurationError(
            f"job.splitter: {self.n_splits} stratified folds need at least {self.n_splits} rows of each "
            f"class of target column {targets.columns[0]!r}, and class {classes}: {fix}"
        )


class KFoldSplitter(_Folds):
    """K folds of (by default shuffled) rows, each held out once."""

    KIND: Literal["kfold"] = "kfold"


class StratifiedKFoldSplitter(_Folds):
    """K folds that keep the class proportions of the target."""

    KIND: Literal["stratified_kfold"] = "stratified_kfold"


class Holdout(Component):
    """Rows set aside before any split, for an evaluation job: training and tuning never see them.

    Recomputable: the same definition on the same rows gives the same test rows (a fixed seed, or the
    time order), so an evaluation can prove its test rows were unseen (``fingerprint``).
    """

    size: float = Field(0.2, gt=0.0, lt=1.0, description="Fraction of rows held out as the test part.")
    order: Literal["random", "time"] = Field(
        "random", description="random: a seeded draw; time: the most recent rows (rows are in time order)."
    )
    seed: int = Field(42, description="Seed of the random draw (fixed, so the split can be recomputed).")
    stratify: bool = Field(False, description="Keep the class proportions of the target (random order).")

    @model_validator(mode="after")
    def _stratify_random_only(self) -> Holdout:
        if self.stratify and self.order == "time":
            raise ValueError("stratify needs order: random (time-ordered test rows are the newest ones)")
        return self

    def split(self, inputs: pd.DataFrame, targets: pd.DataFrame) -> Fold:
        """(rest, test) row positions, both sorted; the rest is what training or tuning may use."""
        import numpy as np
        from sklearn.model_selection import train_test_split

        rows = len(inputs)
        test_rows = round(rows * self.size)
        if test_rows < 1 or test_rows >= rows:
            raise ConfigurationError(
                f"job.holdout: {rows} rows cannot give a test part of size {self.size} and rows to train on"
            )
        if self.order == "time":
            return np.arange(rows - test_rows), np.arange(rows - test_rows, rows)
        try:
            rest, test = train_test_split(
                np.arange(rows),
                test_size=test_rows,
                random_state=self.seed,
                stratify=targets.iloc[:, 0] if self.stratify else None,
            )
        except ValueError as error:
            raise ConfigurationError(f"job.holdout: cannot hold out test rows: {error}") from error
        return np.sort(rest), np.sort(test)


def fingerprint(inputs: pd.DataFrame, targets: pd.DataFrame, rows: Index | None = None) -> str:
    """A digest of rows (all, or the positions ``rows``): their positions, column names and values.

    Equal digests mean the same rows with the same content in the same places; any changed value,
    added, removed or reordered row changes it.
    """
    import hashlib

    import numpy as np
    import pandas as pd

    table = pd.concat([inputs.reset_index(drop=True), targets.reset_index(drop=True)], axis=1)
    positions = np.arange(len(table)) if rows is None else np.asarray(rows)
    chosen = table.iloc[positions]
    digest = hashlib.sha256()
    digest.update(repr(list(map(str, table.columns))).encode())
    digest.update(np.asarray(positions, dtype=np.int64).tobytes())
    digest.update(pd.util.hash_pandas_object(chosen, index=False).to_numpy().tobytes())
    return digest.hexdigest()


SplitterKind = Annotated[
    TrainTestSplitter | TimeSeriesSplitter | KFoldSplitter | StratifiedKFoldSplitter,
    Field(discriminator="KIND"),
]
