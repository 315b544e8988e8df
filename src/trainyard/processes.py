"""How many CPU cores this process may use."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system keeps one (Linux; a
    ``taskset`` or a container's cpuset narrows it), else every core of the machine.

    A cgroup CPU quota (``docker --cpus``) is not an affinity and is not counted.
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
