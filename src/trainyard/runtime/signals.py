"""The command line's Ctrl-C and SIGTERM: they ask a job's cancellation to stop, nothing else.

A job never installs signal handlers (a worker pool or a service thread cannot); the process that runs
it in its main thread does, with ``cancel_on_signals``. Outside a graceful section a signal raises at
once (a fit is cut short and the run ends KILLED); inside one (a search) the first signal only asks,
and a second one raises.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from trainyard.errors import JobCancelledError
from trainyard.runtime.cancellation import Cancellation


def reason_for(signum: int) -> KeyboardInterrupt:
    """What a signal asks for, as the run's error records it."""
    if signum == signal.SIGINT:
        return KeyboardInterrupt("interrupted (Ctrl-C)")
    return JobCancelledError("the job was terminated (SIGTERM)")


@contextmanager
def cancel_on_signals(cancellation: Cancellation) -> Iterator[None]:
    """Inside: SIGTERM, and SIGINT unless it is ignored (``nohup``), go to ``cancellation``.

    Only the main thread can install handlers: elsewhere this does nothing. The previous handlers are
    back when it ends, however it ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: object) -> None:
        now = cancellation.interrupt(reason_for(signum))
        if now is not None:
            raise now

    previous: dict[int, Any] = {signal.SIGTERM: signal.signal(signal.SIGTERM, handle)}
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, handle)
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: installed outside Python, cannot be put back from here
                signal.signal(signum, handler)
