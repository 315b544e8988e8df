"""Which run a training with ``resume`` continues, from which checkpoint, and what it may change.

A run is resumable when it has this config, leaving aside what a resume may change (``epochs.count``
and ``resume``: compared by the digest ``resume_hash``), and did not finish its epochs: it ended
KILLED or FAILED, was left RUNNING by a process that is gone, or finished fewer epochs than asked
now without stopping early. It continues from its newest complete checkpoint k (a READY logged model
whose epoch's metrics were logged). If the killed process had logged epochs k+1..m, they are
recomputed without being logged again: their first values stand, and the run's resume tag says so.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from trainyard.errors import ConfigurationError, ResourceNotFoundError
from trainyard.io.checkpoints import CHECKPOINT_NAME
from trainyard.io.logging import get_logger
from trainyard.io.tracking import LoggedConfigError, logged_config
from trainyard.records import (
    CHECKPOINT_EPOCH_TAG,
    EPOCHS_DONE_TAG,
    EPOCHS_TAG,
    RESUME_HASH_TAG,
    RESUMED_TAG,
    STOPPED_EPOCH_TAG,
    TRAINER_TAG,
    token_alive,
)

# What a resume may change: the rest of the config must be the run's.
RESUMABLE_FIELDS = (
    "job.epochs.count",
    "job.epochs.checkpoint.background",
    "job.resume",
    "job.system_metrics",
)
_UNFINISHED = {"RUNNING", "KILLED", "FAILED"}
_SHOWN = 5


def resume_hash(config: dict[str, Any]) -> str:
    """A digest of the resolved ``config`` without the fields a resume may change."""
    kept = {key: value for key, value in _flat(config).items() if key not in RESUMABLE_FIELDS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Resumption:
    """Where a resumed run continues: after ``checkpoint``; epochs up to ``logged_up_to`` are logged."""

    run_id: str
    checkpoint: int
    logged_up_to: int
    checkpoints: dict[int, str]  # epoch -> logged model id, the complete ones
    history: dict[int, float]  # the monitored metric's value per logged epoch
    digests: dict[str, str]  # the run's data digests, by context (inputs, targets)
    tags: dict[str, str]  # what the resume records on the run

    def check_data(self, digests: dict[str, str]) -> None:
        """Refuse data other than the run's (compared by MLflow's dataset digests)."""
        changed = [
            f"{name} digest {self.digests[name]} then, {digest} now"
            for name, digest in digests.items()
            if self.digests.get(name, digest) != digest
        ]
        if changed:
            raise ConfigurationError(
                f"job.resume: run {self.run_id} was trained on other data ({'; '.join(changed)}): a resumed "
                "run must train on the same rows; start a new run (without resume)"
            )


def find_resumption(
    resume: bool | str, config: dict[str, Any], count: int, monitored: str, experiment_id: str, store: str
) -> Resumption:
    """The run to resume (``resume``: True for the newest resumable one, or a run id) and where."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    digest = resume_hash(config)
    if resume is True:
        run = _newest_resumable(client, digest, config, count, experiment_id)
    else:
        try:
            run = client.get_run(str(resume))
        except MlflowException:
            raise ResourceNotFoundError(f"job.resume: no run {resume} in {store}") from None
        if run.data.tags.get(RESUME_HASH_TAG) != digest:
            raise ConfigurationError(f"job.resume: run {resume} {_differences(run, config)}")
        why_not = _not_resumable(run, count)
        if why_not:
            raise ConfigurationError(f"job.resume: run {resume} {why_not}")
    return _resumption(client, run, count, monitored)


def _newest_resumable(
    client: Any, digest: str, config: dict[str, Any], count: int, experiment_id: str
) -> Any:
    same = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RESUME_HASH_TAG}` = '{digest}'",
        order_by=["attributes.start_time DESC"],
        max_results=100,
    )
    reasons = []
    for run in same:
        why_not = _not_resumable(run, count)
        if why_not is None:
            return run
        reasons.append(f"{run.info.run_id} {why_not}")
    if reasons:
        raise ResourceNotFoundError(
            f"job.resume: no run of this config is left to resume: {'; '.join(reasons[:_SHOWN])}"
        )
    newest = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RESUME_HASH_TAG}` != ''",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not newest:
        raise ResourceNotFoundError(
            "job.resume: no run to resume has this config in the experiment: none was trained in epochs "
            "there; run once without resume"
        )
    raise ResourceNotFoundError(
        "job.resume: no run to resume has this config in the experiment; the newest run trained in "
        f"epochs, {newest[0].info.run_id}, {_differences(newest[0], config)}"
    )


def _not_resumable(run: Any, count: int) -> str | None:
    """Why ``run`` cannot be resumed with ``count`` epochs (None: it can)."""
    tags = run.data.tags
    status = run.info.status
    trainer = tags.get(TRAINER_TAG)
    if status == "RUNNING" and trainer and token_alive(trainer):
        return f"is still being trained (by {trainer})"
    if status in _UNFINISHED:
        return None
    if STOPPED_EPOCH_TAG in tags:
        return f"stopped early at epoch {tags[STOPPED_EPOCH_TAG]}"
    done = int(tags.get(EPOCHS_DONE_TAG, "0"))
    if done >= count:
        return f"finished its {done} epochs: raise job.epochs.count above {done} to train it further"
    return None


def _resumption(client: Any, found_run: Any, count: int, monitored: str) -> Resumption:
    run_id = found_run.info.run_id
    run = client.get_run(run_id)  # with its inputs (a search may leave them out)
    history = {m.step: m.value for m in client.get_metric_history(run_id, monitored)}
    logged_up_to = max(history, default=0)
    checkpoints, incomplete = {}, []
    found = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}' AND name = '{CHECKPOINT_NAME}'"
    )
    for model in found:
        epoch = int(model.tags.get(CHECKPOINT_EPOCH_TAG, "0"))
        if str(model.status) == "READY" and epoch in history:
            checkpoints[epoch] = model.model_id
        else:
            incomplete.append((epoch, model.model_id))
    for epoch, model_id in incomplete:
        client.delete_logged_model(model_id)
        get_logger().info("deleted the incomplete checkpoint of epoch %s (%s)", epoch, model_id)
    if not checkpoints:
        raise ResourceNotFoundError(
            f"job.resume: run {run_id} has no complete checkpoint to continue from (it logged "
            f"{logged_up_to} epochs); start a new run, without resume"
        )
    if logged_up_to >= count:
        raise ConfigurationError(
            f"job.resume: run {run_id} has logged {logged_up_to} epochs already: raise job.epochs.count "
            f"above {logged_up_to} to train it further"
        )
    checkpoint = max(checkpoints)
    asked = run.data.tags.get(EPOCHS_TAG, "?")
    previous = sum(1 for key in run.data.tags if key.startswith(f"{RESUMED_TAG}."))
    record = (
        f"from the checkpoint of epoch {checkpoint} ({checkpoints[checkpoint]}); epochs {asked} -> {count}"
    )
    if logged_up_to > checkpoint:
        record += (
            f"; epochs {checkpoint + 1}..{logged_up_to} were logged after that checkpoint: recomputed, "
            "not logged again (their first values stand)"
        )
    digests = {
        next((t.value for t in d.tags if t.key == "mlflow.data.context"), d.dataset.name): d.dataset.digest
        for d in run.inputs.dataset_inputs
    }
    return Resumption(
        run_id,
        checkpoint,
        logged_up_to,
        checkpoints,
        history,
        digests,
        {f"{RESUMED_TAG}.{previous + 1}": record, EPOCHS_TAG: str(count)},
    )


def _differences(run: Any, config: dict[str, Any]) -> str:
    """How ``run``'s logged config differs from ``config``, outside the fields a resume may change."""
    try:
        logged = logged_config(run.info.run_id)
    except LoggedConfigError:  # no config logged: only the digests can be compared
        return "has another config (its resume digest differs)"
    then, now = _flat(logged), _flat(config)
    changed = [
        f"{key}: {then.get(key, '(unset)')!r} then, {now.get(key, '(unset)')!r} now"
        for key in sorted(set(then) | set(now))
        if key not in RESUMABLE_FIELDS and then.get(key) != now.get(key)
    ]
    if not changed:
        return "has another config (its resume digest differs)"
    more = f" (and {len(changed) - _SHOWN} more)" if len(changed) > _SHOWN else ""
    return (
        f"has another config: {'; '.join(changed[:_SHOWN])}{more}; a resume may change only "
        f"{', '.join(RESUMABLE_FIELDS)}"
    )


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flat(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): data}
