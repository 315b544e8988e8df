"""Tell a tuning job's observer its parent run's id as soon as the run exists, not at the end.

The parent run is opened by the MLflow writer process (or by the job itself when the writer is
gone), which records its id in the study (``parent_attr``) the moment MLflow has made it. A thread
of the job reads the study's attributes until the id is there, and hands it on: a service then has
the run id of a job that is still searching (and could end that run if the job died).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from trainyard.io.logging import get_logger
from trainyard.tuning.studies import parent_attr

if TYPE_CHECKING:
    import optuna

POLL_SECONDS = 0.2


@contextlib.contextmanager
def watch_parent_run(
    study: optuna.Study, tracking_uri: str, found: Callable[[str], None] | None
) -> Iterator[None]:
    """While in the block, call ``found(run_id)`` once the study names its parent run (``found``
    None: nothing is watched)."""
    if found is None:
        yield
        return
    stop = threading.Event()
    key = parent_attr(tracking_uri)

    def watch() -> None:
        while not stop.is_set():
            try:
                run_id = study.user_attrs.get(key)
            except Exception as error:  # a busy storage: the id comes at the end all the same
                get_logger().debug("the parent run's id could not be read: %s", error)
                run_id = None
            if run_id:
                found(str(run_id))
                return
            stop.wait(POLL_SECONDS)

    thread = threading.Thread(target=watch, name="trainyard-parent-run", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
