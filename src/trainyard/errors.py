"""The one error hierarchy of Trainyard: every message says what went wrong and what to do."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class TrainyardError(Exception):
    """Base of every error Trainyard raises on purpose (printed without a traceback)."""

    exit_code = 1


class ConfigurationError(TrainyardError):
    """A job configuration is invalid: names the file, the field path and what was expected."""

    exit_code = 2


class DataAccessError(TrainyardError):
    """Data cannot be read: missing file, a folder, an empty file or one without rows, missing column,
    unreadable format."""


class DataValidationError(TrainyardError):
    """Data was read but does not match its declared schema, or holds text among numbers."""


class TrainingJobError(TrainyardError):
    """A step of a job failed (fit, predict, scoring)."""


class ModelRegistryError(TrainyardError):
    """Saving, registering or aliasing a model in MLflow failed."""


class ResourceNotFoundError(TrainyardError):
    """A run, model version or study that a config refers to does not exist."""


class JobCancelledError(KeyboardInterrupt):
    """The job was terminated (SIGTERM); its MLflow run ends KILLED, like on Ctrl-C.

    A KeyboardInterrupt, not an Exception, so that code which contains errors (a tuning study that
    records a failed trial and goes on) never swallows a cancellation.
    """


def did_you_mean(name: str, candidates: Iterable[str] | Mapping[str, str], n: int = 3) -> str:
    """`` Did you mean A or B?`` naming the candidates closest to ``name`` (any case), or ``""``;
    only the one that differs in case alone, when there is one.

    A mapping suggests the value of each close key: other spellings of a name (``r2_score`` -> ``r2``).
    """
    import difflib

    spellings = candidates if isinstance(candidates, Mapping) else {c: c for c in candidates}
    lower = {spelling.lower(): suggested for spelling, suggested in spellings.items()}
    close = [name.lower()] if name.lower() in lower else difflib.get_close_matches(name.lower(), lower, n=n)
    names = list(dict.fromkeys(lower[spelling] for spelling in close))
    return f" Did you mean {' or '.join(names)}?" if names else ""
