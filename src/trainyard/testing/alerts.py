"""The alert kit: every alert kind delivers each notification once, and never shows its secrets.

A case is an alert kind and its inbox (``INBOXES``, by ``KIND``): a context manager that gives the
config of an alert delivering to it, and the text of what has arrived. The console's inbox is a
handler on the ``trainyard`` logger; the webhook's is an HTTP server the kit starts on 127.0.0.1
(a free port, in a thread, stopped after the check): no notification leaves this machine. A new
kind in the union needs its inbox here (or in the kit subclass's ``inboxes``).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest

from trainyard.io.alerts import Alert
from trainyard.io.logging import get_logger
from trainyard.testing.components import ComponentKit, kind_values, kinds_of, secret_fields

TITLE = 'Training finished ✓ "iris"'
MESSAGE = "run 7f3a: rmse=0.25 <b>100%</b> & more"


@dataclass(frozen=True)
class Inbox:
    """Where an alert's notifications arrive during a check."""

    config: dict[str, Any]
    """The config of an alert that delivers here, but its ``KIND`` (the case's kind adds it)."""
    received: Callable[[], list[str]]
    """The text of each notification delivered so far, in order."""
    secrets: tuple[str, ...] = ()
    """Values in ``config`` that nothing may show (whatever the kind declares its fields as)."""


InboxFactory = Callable[[], AbstractContextManager[Inbox]]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def console_inbox() -> Iterator[Inbox]:
    """The records of the ``trainyard`` logger (its level lowered to INFO meanwhile, if higher)."""
    logger, handler = get_logger(), _Records()
    level = logger.level
    logger.addHandler(handler)
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    try:
        yield Inbox({}, lambda: list(handler.messages))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextmanager
def webhook_inbox() -> Iterator[Inbox]:
    """A Slack-like webhook on 127.0.0.1 that keeps the ``text`` of each JSON body POSTed to it (a
    body of another shape is kept as a description of it, which no check accepts). Its URL holds a
    random token, the secret a real webhook URL holds."""
    bodies: list[str] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                payload = json.loads(raw)
                bodies.append(payload["text"] if isinstance(payload, dict) else f"<not an object: {raw!r}>")
            except (ValueError, KeyError):
                bodies.append(f"<not Slack JSON: {raw!r}>")
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the server's request log would only clutter the test output

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="alert-kit-webhook", daemon=True
    )
    thread.start()
    token = secrets.token_hex(12)
    url = f"http://127.0.0.1:{server.server_port}/hooks/{token}"
    try:
        yield Inbox({"url": url, "timeout": 5.0}, lambda: list(bodies), secrets=(token,))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


INBOXES: dict[str, InboxFactory] = {"console": console_inbox, "webhook": webhook_inbox}
"""For each alert ``KIND``: the inbox its checks deliver to (a kind that delivers the same way, a
subclass say, can share one)."""


@dataclass(frozen=True)
class AlertCase:
    """An alert kind and its inbox (None: no inbox is known for it)."""

    kind: type[Alert]
    inbox: InboxFactory | None

    @contextmanager
    def delivering(self) -> Iterator[tuple[Alert, Inbox]]:
        """An alert of the kind, and the inbox it delivers to, open for the ``with`` block."""
        if self.inbox is None:
            pytest.fail(
                f"no inbox for alert kind {kind_values(self.kind)[0]!r}: add one to "
                "trainyard.testing.alerts.INBOXES (or to the kit subclass's inboxes)"
            )
        with self.inbox() as inbox:
            yield self.kind.model_validate({"KIND": kind_values(self.kind)[0], **inbox.config}), inbox


class AlertKit(ComponentKit[AlertCase]):
    """Checks of every alert kind: delivery to its inbox, masked secrets."""

    inboxes: ClassVar[Mapping[str, InboxFactory]] = INBOXES

    def cases(self) -> Sequence[AlertCase]:
        """One case per kind of the union, with the inbox of its ``KIND``."""
        return [AlertCase(kind, self.inboxes.get(kind_values(kind)[0])) for kind in kinds_of(self.union)]

    def case_id(self, case: AlertCase) -> str:
        return str(kind_values(case.kind)[0])

    def component(self, case: AlertCase) -> Alert:
        with case.delivering() as (alert, _):
            return alert  # its inbox is closed: the common checks never notify

    def test_notify_delivers_the_title_and_message(self, case: AlertCase) -> None:
        """One notify() is one delivery that holds the title and the (one-line) message as given:
        quotes, markup, % and non-ASCII characters intact."""
        with case.delivering() as (alert, inbox):
            alert.notify(TITLE, MESSAGE)
            received = inbox.received()
        assert len(received) == 1, f"one notify() gave {len(received)} deliveries: {received}"
        assert TITLE in received[0] and MESSAGE in received[0], (
            f"delivered {received[0]!r}, expected the title {TITLE!r} and the message {MESSAGE!r}"
        )

    def test_each_notify_is_one_delivery_in_order(self, case: AlertCase) -> None:
        """Notifications arrive one each, in the order they were sent."""
        titles = [f"{TITLE} #{number}" for number in range(3)]
        with case.delivering() as (alert, inbox):
            for title in titles:
                alert.notify(title, MESSAGE)
            received = inbox.received()
        assert len(received) == len(titles), f"{len(titles)} notify() gave {len(received)} deliveries"
        for title, text in zip(titles, received, strict=True):
            assert title in text, f"expected {title!r} next, got {text!r}"

    def test_secrets_are_masked(self, case: AlertCase) -> None:
        """A secret (a webhook URL's token; the value of any ``SecretStr`` field) shows in no repr,
        str or dump a log could print."""
        with case.delivering() as (alert, inbox):
            hidden = {f"the inbox's secret #{number}": value for number, value in enumerate(inbox.secrets, 1)}
            for field in secret_fields(case.kind):
                value = getattr(alert, field)
                secret = value.get_secret_value() if hasattr(value, "get_secret_value") else value
                hidden[f"{field}'s secret"] = secret.decode() if isinstance(secret, bytes) else str(secret)
            if not hidden:
                pytest.skip(f"{case.kind.__name__} holds no secret")
            shown = {
                "repr": repr(alert),
                "str": str(alert),
                "model_dump_json": alert.model_dump_json(),
                "model_dump(mode='json')": json.dumps(alert.model_dump(mode="json")),
                "model_dump()": str(alert.model_dump()),
            }
            for what, text in hidden.items():
                assert text, f"{what} is empty: nothing to check"
                leaked = [where for where, output in shown.items() if text in output]
                assert not leaked, f"{what} shows in {', '.join(leaked)}"
