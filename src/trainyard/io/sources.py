"""Where a run comes from: its config file, and the git commit, branch and remote of that file's folder.

MLflow's own tags name the running script and its repository, found with GitPython: for ``trainyard
run`` that is Trainyard's executable (or the writer module of a tuning job) and wherever Trainyard is
installed. The tags here are MLflow's keys, filled from the config file, with two calls to the ``git``
command: no GitPython import (30 to 50 ms), and no ``git cat-file`` processes left running in the
job's process (GitPython keeps them until its repository object is collected).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

SOURCE_NAME = "mlflow.source.name"
GIT_TAGS = "mlflow.source.git."  # the prefix of MLflow's git tags
GIT_COMMIT = "mlflow.source.git.commit"
GIT_BRANCH = "mlflow.source.git.branch"
GIT_REPO_URL = "mlflow.source.git.repoURL"
GIT_TIMEOUT_SECONDS = 10


def source_tags(source: str) -> dict[str, str]:
    """The run's source name, and the git tags of the repository that holds the file ``source``."""
    return {SOURCE_NAME: source, **git_tags(source)}


def git_tags(path: str) -> dict[str, str]:
    """The commit, branch and remote URL (credentials removed) of the repository holding ``path``.

    Empty outside a repository, or without a ``git`` command; a detached HEAD has no branch, and a
    repository without a remote no URL.
    """
    folder = Path(path).resolve().parent
    if "GIT_DIR" not in os.environ and not any((f / ".git").exists() for f in (folder, *folder.parents)):
        return {}  # not in a repository: no process started
    head = _git(folder, "rev-parse", "HEAD", "--abbrev-ref", "HEAD")
    if head is None or len(head) != 2:
        return {}  # no commit yet, or no git
    tags = {GIT_COMMIT: head[0]}
    if head[1] != "HEAD":
        tags[GIT_BRANCH] = head[1]
    remotes = _git(folder, "config", "--get-regexp", r"^remote\..*\.url$") or []
    if remotes and " " in remotes[0]:
        tags[GIT_REPO_URL] = without_credentials(remotes[0].split(" ", 1)[1])
    return tags


def without_credentials(url: str) -> str:
    """``url`` without the secrets it may hold: no user or password (a token) in an HTTP(S) remote,
    no password in another one (an SSH user name stays: the remote needs it, and it is no secret)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc or not parts.scheme:
        return url  # scp-like "git@host:path": a user name only
    user, host = parts.netloc.rsplit("@", 1)
    if parts.scheme in {"http", "https"}:
        return urlunsplit(parts._replace(netloc=host))
    return urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}@{host}"))


def _git(folder: Path, *args: str) -> list[str] | None:
    """The lines ``git args`` prints in ``folder``, or None when it fails or is missing."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.splitlines() if done.returncode == 0 else None
