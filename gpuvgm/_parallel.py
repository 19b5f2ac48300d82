"""The host thread pool: NumPy releases the GIL in its loops, so blocks of a chunk run in
parallel on the CPU cores. Results are returned in task order, so reductions over them are in a
fixed order and do not depend on the number of threads."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from threadpoolctl import ThreadpoolController

T = TypeVar("T")


def n_threads() -> int:
    """Worker threads: ``GPUVGM_NUM_THREADS`` if set, else the CPU count (at most 16)."""
    return int(os.environ.get("GPUVGM_NUM_THREADS", "0")) or min(os.cpu_count() or 1, 16)


@functools.lru_cache(maxsize=1)
def pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n_threads(), thread_name_prefix="gpuvgm")


@functools.lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def parallel_map(fn: Callable[..., T], tasks: Iterable[tuple]) -> list[T]:
    """``[fn(*t) for t in tasks]`` on the thread pool, in task order.

    BLAS is held to one thread meanwhile: the blocks are the parallelism, and OpenBLAS threads
    on top of them oversubscribe the cores (measured 3x slower on 2 cores).
    """
    tasks = list(tasks)
    if len(tasks) <= 1 or n_threads() == 1:
        return [fn(*t) for t in tasks]
    with _blas().limit(limits=1, user_api="blas"):
        return list(pool().map(lambda t: fn(*t), tasks))
