"""A job config received over HTTP, validated exactly as the CLI validates a file, then confined."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainyard.config import Layer, validate
from trainyard.errors import ConfigurationError
from trainyard.jobs.base import Job
from trainyard.service.confinement import check_confined

ORIGIN = "request"  # where the values came from, in error messages (a file's name for the CLI)


def validate_job(document: Any, roots: list[Path] | None = None) -> Job:
    """The job of a config document ``{"job": {...}}``; import paths refused, and with ``roots``,
    every file it names inside them. A ConfigurationError names the field and what was expected.

    The document is its only source, so its errors need no OmegaConf copy to say where a value came
    from (building one was most of a submit's time)."""
    if not isinstance(document, dict) or not isinstance(document.get("job"), dict):
        raise ConfigurationError(f"{ORIGIN}: expected a JSON object with a 'job' object (a config document)")
    job = validate(document, [Layer(ORIGIN, None)], allow_import_paths=False).job
    if roots is not None:
        check_confined(job, roots, ORIGIN)
    return job


def preload() -> None:
    """Import what validating a job imports (every job kind, scikit-learn's estimator modules), so
    that the first submit does not wait for it (6 to 8 s on a busy 2-core machine)."""
    import importlib

    import trainyard.settings  # noqa: F401
    from trainyard.core.estimators import ESTIMATORS

    for module in sorted({module for module in ESTIMATORS.values() if module.startswith("sklearn.")}):
        importlib.import_module(module)
