"""How many CPU threads a job may use, and making every library keep to it.

Two jobs that each start as many threads as the machine has cores slow each other far more than
sharing the cores explains: OpenMP threads spin waiting for each other and BLAS and torch pools
oversubscribe the cores. A job therefore sizes all its pools - torch (intra-op), the BLAS/OpenMP
pools of numpy and scipy (through threadpoolctl), and the thread pool of the Radon backends, which
follows torch's count - to the cores it was given: ``--threads``, else ``OMP_NUM_THREADS`` when the
environment sets it, else the cores available to the process (its CPU affinity, capped by a cgroup
CPU quota as containers and batch schedulers set it).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

__all__ = ["add_threads_argument", "available_cores", "apply_thread_budget", "default_threads"]

_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def _cgroup_cores(path: Path = _CGROUP_CPU_MAX) -> float | None:
    """CPU quota of the process's cgroup in cores (None: no quota or no cgroup v2)."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return float(quota) / float(period)
    except (ValueError, ZeroDivisionError):
        return None


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup quota (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cores()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def default_threads() -> int:
    """``OMP_NUM_THREADS`` where the environment sets a positive integer, else :func:`available_cores`."""
    try:
        n = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return available_cores()
    return n if n > 0 else available_cores()


def apply_thread_budget(threads: int | None = None) -> int:
    """Limit torch, BLAS/OpenMP and the Radon backends to ``threads`` (default :func:`default_threads`).

    Also sets ``OMP_NUM_THREADS`` and the BLAS variables for libraries loaded later and for child
    processes. Returns the budget.
    """
    from threadpoolctl import threadpool_limits

    n = default_threads() if threads is None else int(threads)
    if n < 1:
        raise ValueError(f"--threads must be at least 1, got {n}")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    torch.set_num_threads(n)
    threadpool_limits(limits=n)
    return n


def add_threads_argument(parser) -> None:
    """``--threads N`` on a command-line parser (the budget :func:`apply_thread_budget` applies)."""
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch, BLAS and the Radon backends "
                             "(default: OMP_NUM_THREADS, else the cores available to this process)")
