"""The host thread pool: NumPy releases the GIL in its loops, so blocks of a chunk run in
parallel on the CPU cores. Results are returned in task order, so reductions over them are in a
fixed order and do not depend on the number of threads."""

from __future__ import annotations

import functools
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
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


#: Chunks a source may be read ahead of the pass that consumes them (bounded memory: this many
#: chunks plus the one being processed).
READ_AHEAD = 2


def read_ahead(items: Iterable[T], depth: int = READ_AHEAD) -> Iterator[T]:
    """The items of ``items`` in order, produced on a background thread up to ``depth`` ahead.

    Reading and decoding the next chunks (pyarrow and NumPy release the GIL) overlaps the work
    on the current one. An exception in the producer is raised here, at the item it stopped
    at; closing this generator early (an error or an interrupt in the consumer) stops the
    producer and closes ``items`` on its thread.
    """
    if depth <= 0:
        yield from items
        return
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = iter(items)
        try:
            for item in it:
                if not put((True, item)):
                    break
            else:
                put((True, end))
        except BaseException as exc:  # handed to the consumer, raised there
            put((False, exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="gpuvgm-read-ahead", daemon=True)
    producer.start()
    try:
        while True:
            ok, item = slots.get()
            if not ok:
                raise item  # type: ignore[misc]
            if item is end:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        producer.join()
