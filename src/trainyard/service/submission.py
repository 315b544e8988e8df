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
    every file it names inside them. A ConfigurationError names the field and what was expected."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(document, dict) or not isinstance(document.get("job"), dict):
        raise ConfigurationError(f"{ORIGIN}: expected a JSON object with a 'job' object (a config document)")
    try:
        layers = [Layer(ORIGIN, OmegaConf.create(document))]
    except (OmegaConfBaseException, ValueError, TypeError) as error:
        raise ConfigurationError(f"{ORIGIN}: not a config document: {error}") from None
    job = validate(document, layers, allow_import_paths=False).job
    if roots is not None:
        check_confined(job, roots, ORIGIN)
    return job
