"""``--every``: a duration (``30s``, ``10m``, ``1h30m``) or a cron expression (``0 * * * *``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from trainyard.errors import ConfigurationError

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_UNITS = (86400, 3600, 60, 1)
EXPECTED = (
    "expected a duration such as 30s, 10m, 1h or 1h30m, or a cron expression of 5 fields "
    "such as '0 * * * *' (minute, hour, day of month, month, day of week, in local time)"
)


class Schedule(Protocol):
    """When something periodic is due next."""

    def next_after(self, moment: datetime) -> datetime:
        """The first time strictly after ``moment`` (local time)."""


@dataclass(frozen=True)
class Interval:
    """Every ``seconds``, counted from the moment given."""

    seconds: int

    def next_after(self, moment: datetime) -> datetime:
        return moment + timedelta(seconds=self.seconds)

    def __str__(self) -> str:
        return f"every {self.seconds} s"


@dataclass(frozen=True)
class Cron:
    """At the times a cron expression names (cronsim reads it: the syntax of crontab(5))."""

    expression: str

    def next_after(self, moment: datetime) -> datetime:
        from cronsim import CronSim

        return next(CronSim(self.expression, moment.replace(microsecond=0)))

    def __str__(self) -> str:
        return f"at '{self.expression}' (cron)"


def parse_every(text: str) -> Schedule:
    """The schedule ``--every`` names; an error that says what it expects."""
    value = text.strip()
    duration = _DURATION.fullmatch(value)
    if value and duration:
        seconds = sum(int(part) * unit for part, unit in zip(duration.groups(), _UNITS, strict=True) if part)
        if seconds == 0:
            raise ConfigurationError(f"--every {text!r}: the duration must be more than 0 s")
        return Interval(seconds)
    if len(value.split()) == 5:
        from cronsim import CronSim, CronSimError

        try:
            CronSim(value, datetime.now())
        except CronSimError as error:
            raise ConfigurationError(
                f"--every {text!r}: not a cron expression ({error}); {EXPECTED}"
            ) from None
        return Cron(value)
    raise ConfigurationError(f"--every {text!r}: {EXPECTED}")
