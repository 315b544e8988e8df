"""Every splitter kind of the jobs' union (SplitterKind) through the splitter kit, with its defaults
and the configurations below."""

from __future__ import annotations

from trainyard.core.splitters import (
    KFoldSplitter,
    SplitterKind,
    StratifiedKFoldSplitter,
    TimeSeriesSplitter,
    TrainTestSplitter,
)
from trainyard.testing.splitters import SplitterKit


class TestSplitterKinds(SplitterKit):
    union = SplitterKind
    variants = (
        TrainTestSplitter(stratify=True, test_size=0.3),
        TrainTestSplitter(shuffle=False),
        TimeSeriesSplitter(n_splits=3),
        KFoldSplitter(n_splits=3, shuffle=False),
        StratifiedKFoldSplitter(n_splits=4, seed=7),
    )
