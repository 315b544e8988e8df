"""Every name Trainyard writes into MLflow and Optuna, and the identity of a worker process.

One place, so that a writer and a reader can never disagree on a spelling, and so that what a run or
a study holds can be read here in one screen. Imports nothing of Trainyard's: every layer may use it.

MLflow run tags (``*_TAG``) are on runs; Optuna attributes (``*_ATTR``) are on studies or trials.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

# --- MLflow tags on every job's run
CONFIG_HASH_TAG = "trainyard.config_hash"  # a digest of the resolved config
KIND_TAG = "trainyard.kind"  # the job's KIND
CONFIG_FILES_TAG = "trainyard.config_files"  # the config files the job was merged from
ERROR_TAG = "trainyard.error"  # why the run failed (also on a failed trial's child run)
SERVICE_JOB_TAG = "trainyard.service_job"  # the job service's id of the job that made the run
HOLDOUT_TAG = "trainyard.holdout"  # the test hold-out's definition (JSON), on a run that set rows aside
DATA_DIGEST_TAG = "trainyard.data_digest"  # a fingerprint of all the rows the run read (inputs, targets)
TEST_DIGEST_TAG = "trainyard.test_digest"  # a fingerprint of the test rows it held out
TEST_ROWS_TAG = "trainyard.test_rows"  # how many rows it held out
DECISION_TAG = "trainyard.decision"  # on a promotion run: promote or keep

# --- MLflow tags of a training run in epochs (job.epochs), and of its checkpoints
EPOCHS_TAG = "trainyard.epochs"  # the epochs asked for (raised by a resume that extends them)
EPOCHS_DONE_TAG = "trainyard.epochs_done"  # the last epoch logged
BEST_EPOCH_TAG = "trainyard.best_epoch"  # the epoch with the best validation score of the monitored metric
STOPPED_EPOCH_TAG = "trainyard.stopped_epoch"  # the epoch early stopping ended the training at
FINAL_EPOCH_TAG = "trainyard.final_epoch"  # the epoch of the model saved at the end (best or last)
RESUME_HASH_TAG = "trainyard.resume_hash"  # a digest of the config without what a resume may change
TRAINER_TAG = "trainyard.trainer"  # the worker token of the process training the run now
RESUMED_TAG = "trainyard.resumed"  # + ".<n>": what the n-th resume changed, continued and superseded
CHECKPOINT_EPOCH_TAG = "trainyard.epoch"  # on a checkpoint (a logged model): its epoch
# On a registered model: the last promotion decision (JSON), and one tag per alias move
# (``<ALIAS_MOVE_TAG>.<alias>.<UTC time>.<promotion run, 8 characters>``: "v1 -> v2 by run ...: why"); on its versions, when they
# took the alias (PROMOTED_TAG) and when they lost it (DEMOTED_TAG).
LAST_DECISION_TAG = "trainyard.last_decision"
ALIAS_MOVE_TAG = "trainyard.alias_move"
PROMOTED_TAG = "trainyard.promoted"
DEMOTED_TAG = "trainyard.demoted"

# --- MLflow dataset contexts (the mlflow.data.context tag of a run's dataset inputs)
RAW_CONTEXT = "raw"  # on a preparation run: the table it read
PROCESSED_CONTEXT = "processed"  # on a preparation run: the table it wrote

# --- MLflow tags on the run of a job that `trainyard watch` started
WATCH_CONTENT_HASH_TAG = "trainyard.watch.content_hash"  # sha256 of the config file's bytes it ran
WATCH_LAUNCH_TAG = "trainyard.watch.launch"  # one id per job the watcher started: how it finds the run

# --- MLflow tags of a tuning study's runs
STUDY_TAG = "trainyard.study"  # the study name, on its parent and child runs
STORAGE_TAG = "trainyard.study_storage"  # on a study's parent run: a digest of the study's storage
CLAIM_TAG = "trainyard.claim"  # on a study's parent run: the worker token of the job that claimed it
WRITER_TAG = "trainyard.writer"  # on a parent run: the worker token of the writer that logs its trials
TRIAL_TAG = "trainyard.trial"  # on a child run: the trial number
STATE_TAG = "trainyard.state"  # on a child run: the trial's Optuna state (COMPLETE, PRUNED, FAIL)
PRUNED_EPOCH_TAG = "trainyard.pruned_epoch"  # on a child run trained in epochs: its trial was pruned after it
DURATION_TAG = "trainyard.duration_s"  # on a child run: the trial's seconds
NATIVE_THREADS_TAG = "trainyard.native_threads"  # on a child run: the native threads of its fits
BEST_TRIAL_TAG = "trainyard.best_trial"  # on a parent run: the best trial's number

# --- Optuna study attributes
METRICS_ATTR = "trainyard.metrics"  # the names of the metrics the study was made for, in order
PARENT_ATTR = "trainyard.parent_run_id"  # + "@<store digest>": the study's parent run in one store
PARENT_CLAIM_ATTR = "trainyard.parent_claim"  # + "@<store digest>": who is creating that parent run

# --- Optuna trial attributes
WORKER_ATTR = "trainyard.worker"  # the worker token of the process that ran the trial
FOLDS_ATTR = "folds"  # {"scores": {metric: [per fold]}, "fit_time": s, "threads": n}
ERROR_ATTR = "error"  # why the trial failed: "<type>: <message>"


def worker_token() -> str:
    """Identifies this process across time: host, pid and the pid's start time."""
    return process_token(os.getpid())


def process_token(pid: int) -> str:
    """The worker token of the process ``pid`` of this host (a child, say)."""
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def token_host(token: str) -> str:
    """The host part of a worker token."""
    return token.split(":")[0]


def token_alive(token: str) -> bool:
    """Whether the worker of ``token`` may still run (workers of other hosts are assumed alive)."""
    parts = token.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return True
    return _alive(int(parts[1]), parts[2])


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _start_time(pid) == start and not _zombie(pid)


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits to be reaped (an orphan whose new parent never reaps)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False
