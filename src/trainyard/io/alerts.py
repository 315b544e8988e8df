"""Alerts: tell people a job finished or failed (console, Slack-compatible webhook)."""

from __future__ import annotations

import abc
import json
import urllib.request
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field, SecretStr

from trainyard.core.component import Component
from trainyard.io.logging import get_logger


class Alert(Component, abc.ABC):
    """One destination for notifications."""

    KIND: str

    @abc.abstractmethod
    def notify(self, title: str, message: str) -> None:
        """Deliver ``title`` and ``message``; may raise (the alerts service contains it)."""


class ConsoleAlert(Alert):
    """Logs the notification on the console (and the log file, when one is set)."""

    KIND: Literal["console"] = "console"

    def notify(self, title: str, message: str) -> None:
        # Multi-line messages are job summaries the console has just shown as a table.
        get_logger().info("🔔 %s%s", title, "" if "\n" in message else f": {message}")


class WebhookAlert(Alert):
    """POSTs ``{"text": ...}`` JSON (Slack incoming-webhook format) to ``url``."""

    KIND: Literal["webhook"] = "webhook"
    url: SecretStr = Field(
        description="Webhook URL, e.g. ${oc.env:SLACK_WEBHOOK_URL}; masked in logged configs (it is a secret)."
    )
    timeout: float = Field(5.0, gt=0, description="Seconds to wait for the webhook before giving up.")

    def notify(self, title: str, message: str) -> None:
        body = json.dumps({"text": f"*{title}*\n{message}"}).encode()
        request = urllib.request.Request(
            self.url.get_secret_value(),
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read()


AlertKind = Annotated[ConsoleAlert | WebhookAlert, Field(discriminator="KIND")]


def notify_all(alerts: Sequence[Alert], title: str, message: str) -> None:
    """Send to every destination; a failing one is logged and never fails the job."""
    for alert in alerts:
        try:
            alert.notify(title, message)
        except Exception as error:  # any failure of any destination: log it, never fail the job
            get_logger().warning("alert %s failed: %s", alert.KIND, error)
