"""How many CPU threads torch should use: the cores actually available to this process.

``os.cpu_count()`` (torch's default) counts the machine's cores, not the ones this process may run on:
under a CPU affinity mask (``taskset``, a batch scheduler, a container's cpuset), a cgroup CPU quota
(``docker --cpus``) or an ``OMP_NUM_THREADS`` the user set, more threads than cores only contend (on a
shared 2-core machine at load ~10, one batch-8 forward took 2.78 s with 2 threads against 0.30 s with 1).

:func:`available_cores` is the smaller of the affinity mask (``os.sched_getaffinity``) and the cgroup v2
quota (``/sys/fs/cgroup/cpu.max``), shared among the processes of a multi-process launch, or
``OMP_NUM_THREADS`` when it is set (never more than those cores); :func:`set_torch_threads`
applies it where sflib starts torch work (reward-model training and scoring, local sampling) and returns
it, so a notebook can say how many threads it ran with (:func:`torch_threads`).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _omp() -> int | None:
    try:
        n = int(str(os.environ.get("OMP_NUM_THREADS", "")).split(",")[0])
    except ValueError:
        return None
    return n if n >= 1 else None


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _cgroup_quota(path: Path = CGROUP_CPU_MAX) -> int | None:
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def available_cores() -> int:
    """The CPU threads this process can really use (see the module notes); under a multi-process launch
    (``accelerate launch`` / ``torchrun`` set ``LOCAL_WORLD_SIZE``) the cores are shared among the
    processes of this machine, unless ``OMP_NUM_THREADS`` says otherwise."""
    cores = [_affinity()]
    quota = _cgroup_quota()
    if quota is not None:
        cores.append(quota)
    n = min(cores)
    try:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError:
        local = 1
    n = n // max(local, 1)
    omp = _omp()
    if omp is not None:
        n = min(omp, min(cores))
    return max(1, n)


def set_torch_threads() -> int:
    """Set torch's intra-op threads to :func:`available_cores` and return the number."""
    import torch

    n = available_cores()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def torch_threads() -> int:
    """The threads torch runs with now (for a notebook to say)."""
    import torch

    return torch.get_num_threads()


def describe(n: int | None = None) -> str:
    """One line for a notebook: how many torch threads ``n`` (default :func:`available_cores`) and why, e.g.
    ``"2 torch threads (the cores this process may use: affinity 2, no cgroup quota, OMP_NUM_THREADS unset)"``."""
    n = available_cores() if n is None else int(n)
    quota = _cgroup_quota()
    why = [f"affinity {_affinity()}", f"cgroup quota {quota}" if quota is not None else "no cgroup quota",
           f"OMP_NUM_THREADS {_omp()}" if _omp() is not None else "OMP_NUM_THREADS unset"]
    local = os.environ.get("LOCAL_WORLD_SIZE")
    if local and local != "1":
        why.append(f"{local} processes on this machine")
    return f"{n} torch thread{'s' if n != 1 else ''} (the cores this process may use: {', '.join(why)})"
