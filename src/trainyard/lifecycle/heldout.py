"""The test rows of a candidate: recomputed from what its run recorded, and proven unseen.

A training run with a hold-out recorded its definition and two fingerprints (all rows, test rows;
records.py). Here the same readers read the same data again, the hold-out is recomputed from the
definition, and both fingerprints must match: otherwise the data changed, or the rows now called
"test" are not those the run set aside, and scores on them would prove nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from trainyard.core.splitters import Holdout, fingerprint
from trainyard.errors import DataValidationError, ResourceNotFoundError
from trainyard.io.readers import Reader, ReaderKind
from trainyard.io.tracking import CONFIG_ARTIFACT, logged_config
from trainyard.records import DATA_DIGEST_TAG, HOLDOUT_TAG, TEST_DIGEST_TAG

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Run

_READER: TypeAdapter[Reader] = TypeAdapter(ReaderKind)
ReadTable = Callable[[Reader], "pd.DataFrame"]


@dataclass
class HeldOutRows:
    """A candidate's test rows, with the readers they came from (for lineage)."""

    inputs: pd.DataFrame
    targets: pd.DataFrame
    inputs_reader: Reader
    targets_reader: Reader
    config: dict[str, Any]  # the candidate run's job config, as logged


def logged_job(run_id: str) -> dict[str, Any]:
    """The job section of the config a Trainyard run logged, as plain data (ResourceNotFoundError
    when it has none)."""
    job = logged_config(run_id).get("job")
    if not isinstance(job, dict):
        raise ResourceNotFoundError(f"run {run_id}: its {CONFIG_ARTIFACT} has no job")
    return job


def held_out_rows(
    run: Run,
    label: str,
    read: ReadTable,
    inputs: Reader | None = None,
    targets: Reader | None = None,
    digests: dict[tuple[int, int], str] | None = None,
    config: dict[str, Any] | None = None,
) -> HeldOutRows:
    """Read the candidate's data (its own readers, unless ``inputs``/``targets`` replace them), and
    return its test rows once both fingerprints match; DataValidationError naming what differs.

    ``digests`` keeps the fingerprint of each pair of tables ``read`` returned (by identity), so
    candidates trained on the same data fingerprint it once. ``config`` is the run's logged job, when
    the caller has read it already (``logged_job``)."""
    tags = run.data.tags
    run_id = run.info.run_id
    if HOLDOUT_TAG not in tags or TEST_DIGEST_TAG not in tags or DATA_DIGEST_TAG not in tags:
        raise DataValidationError(
            f"{label}: run {run_id} recorded no test hold-out, so no rows can be proven unseen by its "
            "model: train it with job.holdout set (docs/training.md), or leave it out of job.candidates"
        )
    config = config if config is not None else logged_job(run_id)
    inputs_reader = inputs or _READER.validate_python(config["inputs"])
    targets_reader = targets or _READER.validate_python(config["targets"])
    all_inputs, all_targets = read(inputs_reader), read(targets_reader)
    known = digests if digests is not None else {}
    pair = (id(all_inputs), id(all_targets))
    if pair not in known:
        known[pair] = fingerprint(all_inputs, all_targets)
    if known[pair] != tags[DATA_DIGEST_TAG]:
        raise DataValidationError(
            f"{label}: the data changed since run {run_id} was trained: '{inputs_reader.path}' and "
            f"'{targets_reader.path}' do not hold the rows it read (their fingerprint differs), so its "
            "test rows cannot be found again: evaluate it on the data it was trained on"
        )
    holdout = Holdout.model_validate(json.loads(tags[HOLDOUT_TAG]))
    _, test = holdout.split(all_inputs, all_targets)
    if fingerprint(all_inputs, all_targets, test) != tags[TEST_DIGEST_TAG]:
        raise DataValidationError(
            f"{label}: the test rows recomputed from run {run_id}'s hold-out ({tags[HOLDOUT_TAG]}) are "
            "not those it set aside (another version of the split?): its scores on them would not be "
            "on unseen rows"
        )
    return HeldOutRows(all_inputs.iloc[test], all_targets.iloc[test], inputs_reader, targets_reader, config)
