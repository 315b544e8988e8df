"""Every alert kind of the jobs' union (AlertKind) through the alert kit; the webhook's notifications
go to the kit's own server on 127.0.0.1."""

from __future__ import annotations

from trainyard.io.alerts import AlertKind
from trainyard.testing.alerts import AlertKit


class TestAlertKinds(AlertKit):
    union = AlertKind
