"""Torch threads = the cores actually available (issue 22): affinity, cgroup quota, OMP_NUM_THREADS, processes."""
from __future__ import annotations

import os

import pytest

from sflib.core import threads


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "_cgroup_quota", lambda path=threads.CGROUP_CPU_MAX: None)
    return monkeypatch


def test_affinity_not_cpu_count(clean_env):
    clean_env.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    clean_env.setattr(os, "cpu_count", lambda: 64)
    assert threads.available_cores() == 3


def test_omp_num_threads_wins_but_not_above_the_cores(clean_env):
    clean_env.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    clean_env.setenv("OMP_NUM_THREADS", "1")
    assert threads.available_cores() == 1
    clean_env.setenv("OMP_NUM_THREADS", "16")
    assert threads.available_cores() == 4
    clean_env.setenv("OMP_NUM_THREADS", "nonsense")
    assert threads.available_cores() == 4


def test_cgroup_quota_file(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("250000 100000\n")
    assert threads._cgroup_quota(cpu_max) == 3
    cpu_max.write_text("max 100000\n")
    assert threads._cgroup_quota(cpu_max) is None
    assert threads._cgroup_quota(tmp_path / "absent") is None


def test_cgroup_quota_and_processes_per_node(clean_env):
    clean_env.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    clean_env.setattr(threads, "_cgroup_quota", lambda path=None: 3)
    assert threads.available_cores() == 3
    clean_env.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.available_cores() == 1


def test_set_torch_threads_applies_it(clean_env):
    import torch

    before = torch.get_num_threads()
    clean_env.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    try:
        assert threads.set_torch_threads() == 1 and threads.torch_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_describe_says_how_many_and_why(clean_env):
    """The line notebooks 01/05/06 show: the count and what limited it."""
    clean_env.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert threads.describe() == ("4 torch threads (the cores this process may use: affinity 4, no cgroup quota, "
                                  "OMP_NUM_THREADS unset)")
    clean_env.setenv("OMP_NUM_THREADS", "1")
    assert threads.describe().startswith("1 torch thread (") and "OMP_NUM_THREADS 1" in threads.describe()
    clean_env.setattr(threads, "_cgroup_quota", lambda path=None: 2)
    clean_env.setenv("LOCAL_WORLD_SIZE", "2")
    assert "cgroup quota 2" in threads.describe() and "2 processes on this machine" in threads.describe()
