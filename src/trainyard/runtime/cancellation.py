"""Cancellation: one request to stop a job, whoever makes it (a signal handler, a service, a time limit).

The job checks it between its steps and, in a search, between trials: work in progress is never cut
in the middle by the request itself (a signal handler may still raise at once, as the CLI's does on
a second signal). Nothing here installs signal handlers, so a worker pool or a service thread can
cancel a job that runs in another thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

# A signal repeated within this many seconds of the one that raised is the same request, delivered
# again: Linux sends a child its parent-death signal once per thread of the dying parent it is handed
# through, and a user's Ctrl-C can bounce. Raising again would cut short the run's ending.
REPEAT_SECONDS = 1.0


class GracefulStop(Protocol):
    """Work that, asked to stop, finishes what it is doing and stops by itself (a search: its running
    trials end and are recorded first). It must check the cancellation itself once it can stop."""

    def first_request(self, reason: KeyboardInterrupt) -> KeyboardInterrupt:
        """Begin stopping; return the reason to record (it may say what is finished first)."""

    def repeated_request(self) -> KeyboardInterrupt:
        """What to raise at once when asked again, without waiting, while it is stopping."""


class Cancellation:
    """A request to stop, made at most once; the first reason given is the one kept.

    ``reason`` is a KeyboardInterrupt (or its subclass JobCancelledError): raised by ``check()``, it
    ends the job's MLflow run KILLED, not FAILED. Thread-safe; ``cancel`` is also safe to call from a
    signal handler (it takes no lock another handler could hold).
    """

    def __init__(self) -> None:
        self._reason: KeyboardInterrupt | None = None
        self._event = threading.Event()
        self._graceful: GracefulStop | None = None
        self._shields = 0
        self._raised_at: float | None = None

    def cancel(self, reason: KeyboardInterrupt) -> None:
        """Ask the job to stop at its next check; a later request keeps the first reason."""
        if self._reason is None:
            self._reason = reason
        self._event.set()

    def interrupt(self, reason: KeyboardInterrupt) -> KeyboardInterrupt | None:
        """A request from someone who could raise at once (a signal handler in the job's thread).

        Returns the exception to raise now, or None when the work in progress stops by itself at its
        next check (inside ``graceful``): the first such request only asks, a repeated one raises.
        Also None inside ``shielded``, and for a request repeated within ``REPEAT_SECONDS`` of the
        one that raised (the same request, delivered twice).
        """
        stop = self._graceful
        if self._shields or (
            self._raised_at is not None and time.monotonic() - self._raised_at < REPEAT_SECONDS
        ):
            self.cancel(reason)  # recorded; what is running (the run's ending) is not cut short
            return None
        if stop is None:
            self.cancel(reason)
            self._raised_at = time.monotonic()
            return type(reason)(*reason.args)
        if self.requested:
            return stop.repeated_request()
        self.cancel(stop.first_request(reason))
        return None

    @contextmanager
    def graceful(self, stop: GracefulStop) -> Iterator[None]:
        """While inside, ``interrupt`` leaves the stopping to ``stop`` (sections nest)."""
        outer, self._graceful = self._graceful, stop
        try:
            yield
        finally:
            self._graceful = outer

    @contextmanager
    def shielded(self) -> Iterator[None]:
        """While inside, ``interrupt`` only records the request and never raises: for work that must
        not be cut short, such as ending a run with its status (sections nest)."""
        self._shields += 1
        try:
            yield
        finally:
            self._shields -= 1

    @property
    def requested(self) -> bool:
        """Whether the job was asked to stop."""
        return self._event.is_set()

    @property
    def reason(self) -> KeyboardInterrupt | None:
        """Why the job was asked to stop (None: it was not)."""
        return self._reason

    def check(self) -> None:
        """Raise the requested cancellation (a fresh copy of its reason), if any."""
        reason = self._reason
        if reason is not None:
            raise type(reason)(*reason.args)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested or ``timeout`` seconds pass; whether it was requested."""
        return self._event.wait(timeout)
