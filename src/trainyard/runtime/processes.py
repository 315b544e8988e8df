"""Processes Trainyard starts: how many cores they may use, a child's life tied to its parent's, and
the main of a writer process."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, NoReturn


def usable_cores() -> int:
    """The cores this process may keep busy: its CPU affinity where the system keeps one (Linux; a
    ``taskset`` or a container's cpuset narrows it), else every core of the machine; fewer under a
    cgroup CPU quota (``docker --cpus=1.5``, a Kubernetes CPU limit), rounded up.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota is not None else cores


def cgroup_cpu_quota(
    membership: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> float | None:
    """This process's CPU quota in cores: the tightest of its cgroup's and their parents' (cgroup v2
    ``cpu.max``, v1 ``cpu.cfs_quota_us``), or None when there is none (or no cgroups)."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:  # not a cgroup line: nothing to learn from it
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: one hierarchy
            quotas += _quotas(root, path, _cpu_max)
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's own hierarchy
            mount = root / controllers if (root / controllers).is_dir() else root / "cpu"
            quotas += _quotas(mount, path, _cfs_quota)
    return min(quotas, default=None)


def _quotas(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """The quotas set on the cgroup at ``path`` under ``mount`` and on each of its parents."""
    folder, found = mount / path.lstrip("/"), []
    while True:
        with contextlib.suppress(OSError, ValueError):
            if (quota := read(folder)) is not None:
                found.append(quota)
        if folder == mount or mount not in folder.parents:
            return found
        folder = folder.parent


def _cpu_max(folder: Path) -> float | None:
    quota, period = (folder / "cpu.max").read_text().split()
    return None if quota == "max" else int(quota) / int(period)


def _cfs_quota(folder: Path) -> float | None:
    quota = int((folder / "cpu.cfs_quota_us").read_text())
    return None if quota < 0 else quota / int((folder / "cpu.cfs_period_us").read_text())


def parent_death_tie(signum: int = signal.SIGKILL) -> Callable[[int], None]:
    """A function for a child process to call with its parent's pid, first thing.

    On Linux the child then gets ``signum`` when its parent dies, even by SIGKILL (SIGKILL unless
    told; SIGTERM lets a job end its run KILLED); elsewhere it only exits at once if the parent is
    already gone (it must then notice the end of its pipe).
    Made in the parent, before a fork: the forked child loads no library (the loader's lock may have
    been held by another thread of the parent at the fork).
    """
    prctl = None
    if sys.platform.startswith("linux"):
        import ctypes

        prctl = ctypes.CDLL(None).prctl

    def tie(parent: int) -> None:
        if prctl is not None:
            prctl(1, signum)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # it died before the line above took effect
            os._exit(0)

    return tie


def serve_as_writer(serve: Callable[[int, IO[bytes], IO[bytes]], int]) -> NoReturn:
    """The main of a writer process started as ``python -m MODULE JOB_PID``: ``serve(job_pid,
    requests, answers)`` on stdin and stdout, then exit with its code.

    The answers get a descriptor of their own; what is printed (MLflow prints run URLs when runs end
    on a tracking server) goes to stderr instead of corrupting them. The exit skips the teardown of
    the modules (a second long): everything is written and committed by then.
    """
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    code = serve(int(sys.argv[1]), sys.stdin.buffer, answers)
    answers.flush()
    os._exit(code)
