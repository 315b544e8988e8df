"""Cancellation: one request to stop a job, whoever makes it (a signal handler, a service, a time limit).

The job checks it between its steps and, in a search, between trials: work in progress is never cut
in the middle by the request itself (a signal handler may still raise at once, as the CLI's does on
a second signal). Nothing here installs signal handlers, so a worker pool or a service thread can
cancel a job that runs in another thread.
"""

from __future__ import annotations

import threading


class Cancellation:
    """A request to stop, made at most once; the first reason given is the one kept.

    ``reason`` is a KeyboardInterrupt (or its subclass JobCancelledError): raised by ``check()``, it
    ends the job's MLflow run KILLED, not FAILED. Thread-safe; ``cancel`` is also safe to call from a
    signal handler (it takes no lock another handler could hold).
    """

    def __init__(self) -> None:
        self._reason: KeyboardInterrupt | None = None
        self._event = threading.Event()

    def cancel(self, reason: KeyboardInterrupt) -> None:
        """Ask the job to stop at its next check; a later request keeps the first reason."""
        if self._reason is None:
            self._reason = reason
        self._event.set()

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
