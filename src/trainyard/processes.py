"""Processes Trainyard starts: how many cores they may use, and a child's life tied to its parent's."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system keeps one (Linux; a
    ``taskset`` or a container's cpuset narrows it), else every core of the machine.

    A cgroup CPU quota (``docker --cpus``) is not an affinity and is not counted.
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parent_death_tie() -> Callable[[int], None]:
    """A function for a child process to call with its parent's pid, first thing.

    On Linux the child is then killed (SIGKILL) when its parent dies, even by SIGKILL; elsewhere it
    only exits at once if the parent is already gone (it must then notice the end of its pipe).
    Made in the parent, before a fork: the forked child loads no library (the loader's lock may have
    been held by another thread of the parent at the fork).
    """
    prctl = None
    if sys.platform.startswith("linux"):
        import ctypes

        prctl = ctypes.CDLL(None).prctl

    def tie(parent: int) -> None:
        if prctl is not None:
            prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # it died before the line above took effect
            os._exit(0)

    return tie
