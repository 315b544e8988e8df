"""The configs of a watched folder: ``*.yaml`` and ``*.yml`` files directly in it, with their content hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from trainyard.errors import ConfigurationError

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Config:
    """One config file as it is now: its name in the folder, and the sha256 of its bytes."""

    path: Path
    content_hash: str
    mtime: float

    @property
    def name(self) -> str:
        return self.path.name


def is_config_name(name: str) -> bool:
    """A job config the watcher runs: ``*.yaml`` or ``*.yml``, not hidden (editors' swap and backup
    files start with a dot or end otherwise)."""
    return name.endswith(SUFFIXES) and not name.startswith(".")


def content_hash(data: bytes) -> str:
    """The key of a config's content: ``sha256sum FILE`` gives the same."""
    return hashlib.sha256(data).hexdigest()


def watched_folder(path: Path) -> Path:
    """``path`` made absolute, when it is a folder; an error that names it otherwise."""
    if not path.exists():
        raise ConfigurationError(f"trainyard watch {path}: folder not found")
    if not path.is_dir():
        raise ConfigurationError(f"trainyard watch {path}: not a folder (give the folder the configs go to)")
    return path.resolve()


def scan(folder: Path) -> tuple[list[Config], dict[str, str]]:
    """The configs in ``folder``, oldest first (then by name), and those that cannot be read, with why.

    Sub-folders are not looked into: shared layers or drafts can live there.
    """
    configs: list[Config] = []
    unreadable: dict[str, str] = {}
    for path in folder.iterdir():
        if not is_config_name(path.name):
            continue
        try:
            if not path.is_file():
                continue
            mtime = path.stat().st_mtime
            data = path.read_bytes()
        except FileNotFoundError:  # removed while we looked
            continue
        except OSError as error:
            unreadable[path.name] = error.strerror or type(error).__name__
            continue
        configs.append(Config(path, content_hash(data), mtime))
    configs.sort(key=lambda config: (config.mtime, config.name))
    return configs, unreadable
