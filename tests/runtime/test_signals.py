"""The CLI's signal handlers: they only ask the job's cancellation, and they leave nothing behind."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from trainyard.errors import JobCancelledError
from trainyard.runtime.cancellation import Cancellation
from trainyard.runtime.signals import cancel_on_signals


class _Search:
    """A graceful section as a search is: the first request asks, a repeated one stops now."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def first_request(self, reason: KeyboardInterrupt) -> KeyboardInterrupt:
        self.asked.append(str(reason))
        return type(reason)(f"{reason} after the running work")

    def repeated_request(self) -> KeyboardInterrupt:
        return JobCancelledError("stopped at once")


def _send(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(1)  # the handler runs (and may raise) here
    raise AssertionError("the signal was not handled in time")


@pytest.fixture
def sigint_default() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(
    ("signum", "raised", "text"),
    [
        (signal.SIGINT, KeyboardInterrupt, "interrupted (Ctrl-C)"),
        (signal.SIGTERM, JobCancelledError, "the job was terminated (SIGTERM)"),
    ],
)
def test_outside_a_graceful_section_a_signal_stops_at_once_and_is_remembered(
    sigint_default: None, signum: int, raised: type[KeyboardInterrupt], text: str
) -> None:
    token = Cancellation()
    with pytest.raises(raised, match=text.replace("(", r"\(").replace(")", r"\)")), cancel_on_signals(token):
        _send(signum)
    assert token.requested and str(token.reason) == text
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_in_a_graceful_section_the_first_signal_asks_and_the_second_stops_now(sigint_default: None) -> None:
    token = Cancellation()
    search = _Search()
    with cancel_on_signals(token), token.graceful(search):
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while not token.requested and time.monotonic() < deadline:
            time.sleep(0.01)  # the handler returns: the work goes on
        assert search.asked == ["interrupted (Ctrl-C)"]
        assert str(token.reason) == "interrupted (Ctrl-C) after the running work"
        with pytest.raises(JobCancelledError, match="stopped at once"):
            _send(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="after the running work"):
        token.check()  # what the search raises once it has stopped


def test_sections_nest_and_end(sigint_default: None) -> None:
    token = Cancellation()
    outer, inner = _Search(), _Search()
    with token.graceful(outer):
        with token.graceful(inner):
            assert token.interrupt(KeyboardInterrupt("x")) is None
        assert inner.asked == ["x"] and outer.asked == []
        assert isinstance(token.interrupt(KeyboardInterrupt("y")), JobCancelledError)  # repeated
    again = token.interrupt(KeyboardInterrupt("z"))  # no section: raise now, the first reason stays
    assert (
        isinstance(again, KeyboardInterrupt)
        and str(again) == "z"
        and str(token.reason) == "x after the running work"
    )


def test_an_ignored_ctrl_c_stays_ignored() -> None:
    """A job started with nohup (or in the background by a shell) keeps Ctrl-C ignored."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with cancel_on_signals(Cancellation()):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_another_thread_installs_nothing() -> None:
    """A job run by a worker thread (a service) is cancelled through its token, not by signals."""
    seen: list[object] = []

    def in_a_thread() -> None:
        with cancel_on_signals(Cancellation()):
            seen.append(signal.getsignal(signal.SIGTERM))

    worker = threading.Thread(target=in_a_thread)
    worker.start()
    worker.join()
    assert seen == [signal.SIG_DFL]


def test_a_request_repeated_at_once_or_while_shielded_only_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same signal delivered twice (a parent-death signal, per thread of the parent) raises once;
    inside ``shielded`` (a run being ended) nothing raises; a request later than the window raises."""
    from trainyard.runtime import cancellation

    token = Cancellation()
    assert isinstance(token.interrupt(JobCancelledError("first")), JobCancelledError)
    assert token.interrupt(JobCancelledError("again")) is None, "delivered again at once"
    with token.shielded():
        monkeypatch.setattr(cancellation, "REPEAT_SECONDS", 0.0)
        assert token.interrupt(KeyboardInterrupt("while ending")) is None
    again = token.interrupt(KeyboardInterrupt("later"))
    assert isinstance(again, KeyboardInterrupt) and str(token.reason) == "first"
