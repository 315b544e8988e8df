"""What ``trainyard watch`` is given, checked: the folder, the ``--then`` configs, the ``--every`` schedule."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from trainyard.errors import ConfigurationError
from trainyard.watch.folder import is_config_name, watched_folder
from trainyard.watch.schedule import parse_every
from trainyard.watch.status import print_status
from trainyard.watch.watcher import Watcher

__all__ = ["make_watcher", "print_status", "watched_folder"]


def make_watcher(folder: Path, *, once: bool, then: Sequence[str], every: str | None) -> Watcher:
    """The watcher of ``folder``; errors name the option that is wrong and what it takes."""
    folder = watched_folder(folder)
    if every is not None and not then:
        raise ConfigurationError(
            f"--every {every}: it runs the --then jobs on a schedule; name them: --then A.yaml [B.yaml ...]"
        )
    if every is not None and once:
        raise ConfigurationError(
            f"--every {every}: a schedule needs a watcher that keeps running; drop --once (with --once, "
            "the --then jobs run after the batch)"
        )
    schedule = parse_every(every) if every is not None else None
    return Watcher(folder, then=[_then_config(path, folder) for path in then], schedule=schedule, once=once)


def _then_config(path: str, folder: Path) -> Path:
    config = Path(path)
    if not config.is_file():
        raise ConfigurationError(f"--then {path}: config file not found")
    config = config.resolve()
    if config.parent == folder and is_config_name(config.name):
        raise ConfigurationError(
            f"--then {path}: it is in the watched folder, where it would also run as a new config; "
            "keep the --then configs elsewhere"
        )
    return config
