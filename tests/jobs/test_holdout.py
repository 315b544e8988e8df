"""The test hold-out: rows set aside before any split, recorded so an evaluation can prove them unseen."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.jobs.test_training import QUICKSTART, only_run
from tests.jobs.test_tuning import study_of, tuning
from trainyard.cli import main
from trainyard.core.splitters import Holdout, fingerprint
from trainyard.errors import ConfigurationError
from trainyard.records import DATA_DIGEST_TAG, HOLDOUT_TAG, TEST_DIGEST_TAG, TEST_ROWS_TAG

INPUTS = pd.DataFrame({"x": np.arange(100.0), "y": np.arange(100.0) % 7})
TARGETS = pd.DataFrame({"label": np.arange(100) % 4})


def test_a_random_hold_out_is_seeded_disjoint_and_recomputable() -> None:
    rest, test = Holdout(size=0.2, seed=3).split(INPUTS, TARGETS)
    again_rest, again_test = Holdout(size=0.2, seed=3).split(INPUTS, TARGETS)
    assert len(test) == 20 and len(rest) == 80 and not set(rest) & set(test)
    assert (test == again_test).all() and (rest == again_rest).all()
    assert list(test) == sorted(test)
    _, other = Holdout(size=0.2, seed=4).split(INPUTS, TARGETS)
    assert set(other) != set(test)


def test_a_time_ordered_hold_out_is_the_newest_rows() -> None:
    rest, test = Holdout(size=0.1, order="time").split(INPUTS, TARGETS)
    assert list(test) == list(range(90, 100)) and list(rest) == list(range(90))


def test_a_stratified_hold_out_keeps_the_class_shares() -> None:
    _, test = Holdout(size=0.2, stratify=True).split(INPUTS, TARGETS)
    assert TARGETS.iloc[test]["label"].value_counts().to_dict() == {0: 5, 1: 5, 2: 5, 3: 5}
    with pytest.raises(ValueError, match="stratify needs order: random"):
        Holdout(stratify=True, order="time")


def test_too_few_rows_for_a_hold_out_are_named() -> None:
    with pytest.raises(
        ConfigurationError, match=r"job\.holdout: 2 rows cannot give a test part of size 0\.1"
    ):
        Holdout(size=0.1).split(INPUTS.head(2), TARGETS.head(2))


def test_the_fingerprint_changes_with_any_value_row_or_order() -> None:
    _, test = Holdout(size=0.2).split(INPUTS, TARGETS)
    digest = fingerprint(INPUTS, TARGETS, test)
    assert fingerprint(INPUTS.copy(), TARGETS.copy(), test.copy()) == digest
    changed = INPUTS.copy()
    changed.loc[test[0], "x"] += 1e-9
    assert fingerprint(changed, TARGETS, test) != digest
    assert fingerprint(INPUTS, TARGETS, test[::-1]) != digest  # other positions
    assert fingerprint(INPUTS.rename(columns={"x": "z"}), TARGETS, test) != digest
    assert fingerprint(INPUTS, TARGETS) != fingerprint(INPUTS.iloc[::-1], TARGETS.iloc[::-1])


def test_a_training_run_records_its_hold_out_and_never_sees_the_test_rows(
    workdir: Path, tracking_uri: str
) -> None:
    assert main(["run", QUICKSTART, "job.holdout={size: 0.2, seed: 5}"]) == 0
    run = only_run(tracking_uri)
    tags, params = run.data.tags, run.data.params
    assert json.loads(tags[HOLDOUT_TAG]) == {"size": 0.2, "order": "random", "seed": 5, "stratify": False}
    assert tags[TEST_ROWS_TAG] == "88"  # of 442 rows
    assert int(params["data.train_rows"]) + int(params["data.test_rows"]) == 442 - 88
    data = pd.read_csv(workdir / "data" / "diabetes.csv")
    inputs, targets = data.drop(columns=["target"]), data[["target"]]
    _, test = Holdout(size=0.2, seed=5).split(inputs, targets)
    assert tags[TEST_DIGEST_TAG] == fingerprint(inputs, targets, test)
    assert tags[DATA_DIGEST_TAG] == fingerprint(inputs, targets)


def test_a_regressor_cannot_stratify_its_hold_out(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", QUICKSTART, "job.holdout={stratify: true}"]) == 2
    assert "holdout: stratifying needs classes, and HistGradientBoostingRegressor is a regressor" in (
        capsys.readouterr().err
    )


def test_a_tuning_job_makes_its_folds_without_the_test_rows(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    space = "{KIND: random, seed: 0, n_trials: 2, space: {max_depth: 'range(2, 4)'}}"
    assert main(["run", tuning(workdir, space), "job.holdout={size: 0.25, order: time}"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "110 test rows set aside, 332 left" in err  # of 442
    sizes = re.search(r"3 folds, test sizes \[(\d+), (\d+), (\d+)\]", err)
    assert sizes is not None and sum(map(int, sizes.groups())) == 332
    assert all(t.state.name == "COMPLETE" for t in study_of(workdir).trials)
