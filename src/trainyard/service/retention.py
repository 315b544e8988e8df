"""Retention: the finished jobs past ``--keep-days`` or ``--keep-jobs`` are deleted with their logs.

Applied once when the service starts and then every ``every_s`` seconds by a thread of its own;
queued and running jobs are never touched (the store's ``prune`` only selects finished ones).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from trainyard.errors import ConfigurationError
from trainyard.io.logging import get_logger
from trainyard.service.store import Store

DEFAULT_EVERY_S = 300.0


@dataclass
class Retention:
    """How long finished jobs are kept: ``keep_days`` days and/or the ``keep_jobs`` newest."""

    keep_days: float | None = None
    keep_jobs: int | None = None
    every_s: float = DEFAULT_EVERY_S
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.keep_days is not None and not self.keep_days >= 0:
            raise ConfigurationError(f"--keep-days {self.keep_days:g}: expected a number of days >= 0")
        if self.keep_jobs is not None and self.keep_jobs < 0:
            raise ConfigurationError(f"--keep-jobs {self.keep_jobs}: expected a number of jobs >= 0")
        if not self.every_s > 0:
            raise ConfigurationError(f"--prune-every {self.every_s:g}: expected a number of seconds > 0")

    @property
    def active(self) -> bool:
        return self.keep_days is not None or self.keep_jobs is not None

    def describe(self) -> str:
        parts = []
        if self.keep_days is not None:
            parts.append(f"{self.keep_days:g} day(s)")
        if self.keep_jobs is not None:
            parts.append(f"the {self.keep_jobs} newest")
        return "finished jobs kept: " + (" and ".join(parts) if parts else "all")

    def apply(self, store: Store, logs: Path) -> list[str]:
        """Delete the finished jobs past retention and their log files; their ids."""
        deleted = store.prune(keep_days=self.keep_days, keep_jobs=self.keep_jobs)
        for job_id in deleted:
            (logs / f"{job_id}.log").unlink(missing_ok=True)
        return deleted

    def start(self, store: Store, logs: Path) -> None:
        """Apply it now, then every ``every_s`` seconds until ``stop``; nothing when no rule is set."""
        if not self.active:
            return
        self.apply(store, logs)
        self._thread = threading.Thread(
            target=self._loop, args=(store, logs), name="trainyard-retention", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self, store: Store, logs: Path) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.apply(store, logs)
            except Exception as error:  # the store was busy or away: the next round tries again
                get_logger().warning("retention: %s: %s", type(error).__name__, error)
