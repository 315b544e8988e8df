"""What a job submitted over HTTP may touch: files inside the service's data roots, nothing else.

Every file a job reads or writes is named in its config: readers' and writers' ``path``, the log
``folder``, the SQLite or journal file of an MLflow store or a study. Each must resolve (symbolic
links followed) inside one of the roots; a URL is refused unless it names a server (http, https,
postgresql, mysql), which reads nothing of this host's files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from trainyard.errors import ConfigurationError

# Fields that name a file or folder of this host, whatever component holds them.
PATH_FIELDS = frozenset({"path", "folder"})
# Fields that name a store: a server URL, or a file (sqlite:///x.db, a journal file path).
STORE_FIELDS = frozenset({"tracking_uri", "registry_uri", "storage"})
SERVER_SCHEMES = ("http://", "https://", "postgresql://", "postgresql+", "mysql://", "mysql+")


def paths_in(node: Any, prefix: str = "job") -> Iterator[tuple[str, str, bool]]:
    """Each (field path, value, is_store) naming a file or a store in a validated job, depth first."""
    if isinstance(node, BaseModel):
        for name, info in type(node).model_fields.items():
            value = getattr(node, name)
            where = f"{prefix}.{info.alias or name}"
            if isinstance(value, str) and name in PATH_FIELDS:
                yield where, value, False
            elif isinstance(value, str) and name in STORE_FIELDS:
                yield where, value, True
            else:
                yield from paths_in(value, where)
    elif isinstance(node, list | tuple):
        for index, item in enumerate(node):
            yield from paths_in(item, f"{prefix}.{index}")
    elif isinstance(node, dict):
        for key, item in node.items():
            if isinstance(item, BaseModel | list | dict):
                yield from paths_in(item, f"{prefix}.{key}")


def check_confined(job: BaseModel, roots: list[Path], origin: str = "request") -> None:
    """Raise a ConfigurationError naming the first field whose file lies outside every root."""
    resolved = [root.resolve() for root in roots]
    for where, value, is_store in paths_in(job):
        problem = _outside(value, is_store, resolved)
        if problem:
            shown = ", ".join(str(root) for root in resolved)
            raise ConfigurationError(f"{origin}: {where} = {value!r}: {problem} (data roots: {shown})")


def _outside(value: str, is_store: bool, roots: list[Path]) -> str | None:
    """Why ``value`` may not be used (None: it may)."""
    if is_store:
        if value.startswith(SERVER_SCHEMES):
            return None
        if value.startswith("sqlite:///"):
            value = value[len("sqlite:///") :]
            if value in ("", ":memory:"):
                return None
        elif "://" in value or value.startswith("file:"):
            return "this URL scheme is not accepted over HTTP: name a server or a file inside a data root"
    elif "://" in value or value.startswith("file:"):
        return "URLs are not accepted over HTTP: name a file inside a data root"
    path = Path(value)  # as the job reads it: "~" is a folder's name, not the home folder
    if ".." in path.parts:
        return "'..' is not accepted: name the file from a data root down"
    # resolved: symbolic links followed, so a link inside a root to a file outside is outside
    target = (Path.cwd() / path).resolve()
    if any(target == root or root in target.parents for root in roots):
        return None
    return "outside the service's data roots"
