"""The thread pool the CPU backends share (ASTRA and scipy's sparse kernels release the GIL)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

__all__ = ["parallel_map", "n_workers"]

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="radon")
        return _POOL


def n_workers(n_items: int) -> int:
    """Threads to spread ``n_items`` over: at most torch's thread budget (``torch.get_num_threads``)."""
    return max(1, min(n_items, torch.get_num_threads()))


def parallel_map(fn: Callable[[int], Any], n: int) -> list[Any]:
    """``[fn(i) for i in range(n)]`` on the shared pool (sequential when n == 1)."""
    if n == 1:
        return [fn(0)]
    return [f.result() for f in [_pool().submit(fn, i) for i in range(n)]]
