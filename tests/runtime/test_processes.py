"""How many cores a job may keep busy: affinity, and cgroup CPU quotas (containers, Kubernetes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trainyard.runtime import processes
from trainyard.runtime.processes import cgroup_cpu_quota, usable_cores


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_cgroup_v2_quota_is_the_tightest_of_the_cgroup_and_its_parents(tmp_path: Path) -> None:
    write(tmp_path / "proc", "0::/kubepods/pod1/app\n")
    write(tmp_path / "fs/kubepods/cpu.max", "200000 100000\n")
    write(tmp_path / "fs/kubepods/pod1/cpu.max", "max 100000\n")
    write(tmp_path / "fs/kubepods/pod1/app/cpu.max", "150000 100000\n")
    assert cgroup_cpu_quota(tmp_path / "proc", tmp_path / "fs") == 1.5
    write(tmp_path / "fs/kubepods/cpu.max", "50000 100000\n")  # a parent's limit binds its children
    assert cgroup_cpu_quota(tmp_path / "proc", tmp_path / "fs") == 0.5


def test_a_cgroup_v1_quota_is_read_from_the_cpu_hierarchy(tmp_path: Path) -> None:
    write(tmp_path / "proc", "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    write(tmp_path / "fs/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "250000\n")
    write(tmp_path / "fs/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
    write(tmp_path / "fs/cpu,cpuacct/docker/cpu.cfs_quota_us", "-1\n")
    write(tmp_path / "fs/cpu,cpuacct/docker/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(tmp_path / "proc", tmp_path / "fs") == 2.5


def test_no_quota_and_no_cgroups_mean_no_limit(tmp_path: Path) -> None:
    write(tmp_path / "proc", "0::/user.slice\n")
    write(tmp_path / "fs/user.slice/cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(tmp_path / "proc", tmp_path / "fs") is None
    assert cgroup_cpu_quota(tmp_path / "missing", tmp_path / "fs") is None
    write(tmp_path / "odd", "\nnot a cgroup line\n0::/user.slice\n")
    assert cgroup_cpu_quota(tmp_path / "odd", tmp_path / "fs") is None


@pytest.mark.parametrize(("quota", "expected"), [(None, None), (0.5, 1), (1.5, 2), (64.0, None)])
def test_usable_cores_are_the_affinity_capped_by_the_quota_rounded_up(
    monkeypatch: pytest.MonkeyPatch, quota: float | None, expected: int | None
) -> None:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    monkeypatch.setattr(processes, "cgroup_cpu_quota", lambda: quota)
    assert usable_cores() == (min(expected, affinity) if expected is not None else affinity)
