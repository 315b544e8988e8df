"""What both benchmarks record about the machine and the libraries they ran with."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
from typing import Any


def describe(load_at_start: tuple[float, float, float], packages: tuple[str, ...]) -> dict[str, Any]:
    """Date, cores, platform, Python, load averages (start and end) and package versions."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),
        },
        "versions": {name: importlib.metadata.version(name) for name in packages},
    }
