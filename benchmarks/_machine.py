"""What both benchmarks record about the machine and the libraries they ran with."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
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


SERVICE_PACKAGES = ("mlflow", "fastapi", "uvicorn", "sqlalchemy", "httpx")


def measure_in_scratch(
    measure: Callable[[Path], dict[str, Any]], prefix: str, results: Path, packages: tuple[str, ...]
) -> dict[str, Any]:
    """Run ``measure`` in a new temporary folder (removed after), add the machine's description and
    write the results as JSON to ``results``; the results."""
    load_at_start = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        found = measure(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    found["machine"] = describe(load_at_start, packages)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(found, indent=2) + "\n")
    return found
