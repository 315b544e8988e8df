"""The splitter kit: every splitter kind gives disjoint, deterministic folds of the rows it is given.

A case is a configured splitter: each kind of the union with its defaults, and the kit subclass's
``variants`` (other configurations worth checking, or the config of a kind that has no defaults).
The rows are iris's (three balanced classes, so stratified kinds split them too), labelled from
1000: folds are row positions, never row labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import pytest
from pydantic import ValidationError

from trainyard.core.splitters import Splitter
from trainyard.testing import data
from trainyard.testing.components import ComponentKit, config_of, configured_id, kinds_of

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class SplitterKit(ComponentKit[Splitter]):
    """Checks of every splitter kind, on its defaults and on the subclass's ``variants``."""

    variants: ClassVar[Sequence[Splitter]] = ()

    def cases(self) -> Sequence[Splitter]:
        """Each kind of the union with its defaults (unless it needs config), then ``variants``."""
        cases: list[Splitter] = []
        for kind in kinds_of(self.union):
            try:
                cases.append(kind())
            except ValidationError as error:
                if not any(type(variant) is kind for variant in self.variants):
                    raise TypeError(
                        f"{kind.__name__} has no defaults ({error.error_count()} errors): "
                        f"list a configured one in {type(self).__name__}.variants"
                    ) from error
        return [*cases, *self.variants]

    def case_id(self, case: Splitter) -> str:
        return configured_id(case)

    def component(self, case: Splitter) -> Splitter:
        return case

    @pytest.fixture
    def rows(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Inputs and targets: 150 rows labelled 1000 to 1149, three classes of 50."""
        return data.classification()

    def test_folds_are_row_positions(self, case: Splitter, rows: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """folds() gives at least one (train, test) pair of 1-D integer arrays of distinct row
        positions (0 to rows - 1), none of them empty."""
        import numpy as np

        inputs, targets = rows
        folds = case.folds(inputs, targets)
        assert isinstance(folds, list) and folds, f"folds() gave {folds!r}: expected a non-empty list"
        for number, fold in enumerate(folds):
            assert len(fold) == 2, f"fold {number} is not a (train, test) pair: {fold!r}"
            for part, positions in zip(("train", "test"), fold, strict=True):
                array = np.asarray(positions)
                where = f"fold {number} {part}"
                assert array.ndim == 1 and np.issubdtype(array.dtype, np.integer), f"{where}: {array!r}"
                assert len(array) > 0, f"{where} is empty"
                assert len(np.unique(array)) == len(array), f"{where} repeats rows"
                assert array.min() >= 0 and array.max() < len(inputs), (
                    f"{where} holds {array.min()}..{array.max()}, outside the positions 0..{len(inputs) - 1}"
                )

    def test_folds_are_disjoint(self, case: Splitter, rows: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """No row is both trained on and tested in a fold, and no row is tested in two folds."""
        inputs, targets = rows
        tested: set[int] = set()
        for number, (train, test) in enumerate(case.folds(inputs, targets)):
            both = set(_ints(train)) & set(_ints(test))
            assert not both, f"fold {number} trains and tests on rows {sorted(both)[:10]}"
            again = tested & set(_ints(test))
            assert not again, f"fold {number} tests rows an earlier fold tested: {sorted(again)[:10]}"
            tested |= set(_ints(test))

    def test_same_config_same_folds(self, case: Splitter, rows: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """With its seed fixed, a splitter gives the same folds every time, and so does a splitter
        validated from its config (a rerun of the job)."""
        import numpy as np

        if getattr(case, "seed", 0) is None:
            pytest.skip("unseeded: random on purpose")
        inputs, targets = rows
        first = case.folds(inputs, targets)
        for again in (
            case.folds(inputs, targets),
            type(case).model_validate(config_of(case)).folds(inputs, targets),
        ):
            assert len(again) == len(first), f"{len(first)} folds, then {len(again)}"
            for number, (fold, other) in enumerate(zip(first, again, strict=True)):
                for part, positions, repeated in zip(("train", "test"), fold, other, strict=True):
                    assert np.array_equal(positions, repeated), f"fold {number} {part} changed between calls"

    def test_split_is_the_last_fold(self, case: Splitter, rows: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """split(), a training job's hold-out, is one fold: the last of folds()."""
        import numpy as np

        inputs, targets = rows
        train, test = case.split(inputs, targets)
        last_train, last_test = case.folds(inputs, targets)[-1]
        assert np.array_equal(train, last_train) and np.array_equal(test, last_test), (
            "split() is not the last fold"
        )

    def test_leaves_the_data_alone(self, case: Splitter, rows: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """folds() does not change the inputs or targets it splits."""
        import pandas as pd

        inputs, targets = rows
        before = inputs.copy(), targets.copy()
        case.folds(inputs, targets)
        pd.testing.assert_frame_equal(inputs, before[0])
        pd.testing.assert_frame_equal(targets, before[1])


def _ints(positions: np.ndarray) -> list[int]:
    return [int(position) for position in positions]
