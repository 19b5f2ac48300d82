"""The host thread pool: NumPy releases the GIL in its loops, so blocks of a chunk run in
parallel on the CPU cores. Results are returned in task order, so reductions over them are in a
fixed order and do not depend on the number of threads."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from threadpoolctl import ThreadpoolController

from ._errors import ParameterError

T = TypeVar("T")

# The thread count of the estimator call in progress (its ``n_jobs``), for the threads that
# call n_threads() within it; None outside one.
_n_jobs: contextvars.ContextVar[int | None] = contextvars.ContextVar("gpuvgm_n_jobs", default=None)


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_n_jobs(n_jobs: int | None) -> int:
    """The thread count of an ``n_jobs`` parameter, scikit-learn's convention: None, the default
    (:func:`n_threads` outside any call: ``GPUVGM_NUM_THREADS`` or one per core, at most 16);
    a positive int, that many; -1, every core; -2, all but one, and so on (at least 1)."""
    if n_jobs is None:
        return _default_threads()
    n_jobs = int(n_jobs)
    if n_jobs == 0:
        raise ParameterError("n_jobs == 0 has no meaning; use None, a positive int or -1.")
    return n_jobs if n_jobs > 0 else max(1, cores() + 1 + n_jobs)


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Within the block, :func:`n_threads` is ``n`` in this thread (and in the background
    threads gpuvgm starts from it): the compute pool, the compiled kernels and the I/O pool."""
    token = _n_jobs.set(max(1, int(n)))
    try:
        yield
    finally:
        _n_jobs.reset(token)


def n_threads() -> int:
    """Worker threads: the ``n_jobs`` of the estimator call in progress (:func:`threads`), else
    :func:`_default_threads`."""
    n = _n_jobs.get()
    return _default_threads() if n is None else n


def _default_threads() -> int:
    """``GPUVGM_NUM_THREADS`` if set (0 or empty: the default), else the CPU count (at most
    16). Anything but a non-negative integer is a :class:`ParameterError`."""
    text = os.environ.get("GPUVGM_NUM_THREADS", "").strip()
    n = 0
    if text:
        try:
            n = int(text)
        except ValueError:
            n = -1
        if n < 0:
            raise ParameterError(
                f"GPUVGM_NUM_THREADS must be a non-negative integer (0 or unset: one thread "
                f"per core, at most 16). Got {text!r}."
            )
    return n or min(os.cpu_count() or 1, 16)


def pool() -> ThreadPoolExecutor:
    """The compute pool of :func:`n_threads` workers."""
    return _pool(n_threads(), "gpuvgm")


def io_pool() -> ThreadPoolExecutor:
    """Threads that decode and encode files (Parquet row groups, part files): not the compute
    pool, so a read or a write never waits behind compute, nor compute behind I/O."""
    return _pool(n_threads(), "gpuvgm-io")


@functools.lru_cache(maxsize=8)
def _pool(n: int, prefix: str) -> ThreadPoolExecutor:
    """One pool per thread count (a pool's workers live as long as the process), so that a
    call with ``n_jobs=2`` never runs on more than two workers."""
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix=prefix)


class _OneBlasThread(contextlib.ContextDecorator):
    """BLAS (OpenBLAS, MKL, BLIS) held to one thread while gpuvgm's passes run.

    gpuvgm's parallelism is its own: the thread pool's blocks, or Numba's threads. BLAS
    threads on top of them oversubscribe the cores: on the shared 2-core VM a NumPy-backend
    iteration over 1 200 rows (one matrix product) took 16 ms with OpenBLAS's threads and
    0.9 ms held to one (``bench/cli_startup.py``). OpenBLAS's thread count is one setting
    for the whole process, so the holds are counted: the first to enter sets it to one and the
    last to leave restores what it was, whatever order overlapping holds leave in. OpenMP is
    not limited: gpuvgm does not use it, except through Numba when ``NUMBA_THREADING_LAYER=omp``
    is chosen, whose threads are the parallelism.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._limiter: Any = None

    def __enter__(self) -> None:
        with self._lock:
            if self._holders == 0:
                # A new controller each time (about 1 ms): it finds the BLAS libraries loaded
                # now, such as SciPy's own OpenBLAS, imported with the first fit.
                self._limiter = ThreadpoolController().limit(limits=1, user_api="blas")
            self._holders += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                self._limiter.restore_original_limits()
                self._limiter = None


#: ``with one_blas_thread:`` (or ``@one_blas_thread``) around a pass; holds may nest and overlap.
one_blas_thread = _OneBlasThread()


def parallel_map(fn: Callable[..., T], tasks: Iterable[tuple]) -> list[T]:
    """``[fn(*t) for t in tasks]`` on the thread pool, in task order, BLAS held to one thread
    (:data:`one_blas_thread`), a single task included."""
    tasks = list(tasks)
    with one_blas_thread:
        if len(tasks) <= 1 or n_threads() == 1:
            return [fn(*t) for t in tasks]
        ctx = contextvars.copy_context()  # the workers see this call's n_threads()
        return list(pool().map(lambda t: ctx.copy().run(fn, *t), tasks))


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

    producer = threading.Thread(
        target=contextvars.copy_context().run,
        args=(produce,),
        name="gpuvgm-read-ahead",
        daemon=True,
    )
    producer.start()
    try:
        while True:
            ok, item = slots.get()
            if not ok:
                raise item
            if item is end:
                return
            yield item
    finally:
        stop.set()
        producer.join()


class WriteBehind:
    """Calls ``fn(item)`` for submitted items, in order, on a background thread, up to
    ``depth`` items behind the submitter: writing a chunk overlaps computing the next.

    An exception in ``fn`` is raised by the next :meth:`submit` or by :meth:`finish`; after
    one, nothing more is written. :meth:`abort` drops what is queued and stops the thread.
    """

    _END = object()

    def __init__(self, fn: Callable[[T], object], depth: int = READ_AHEAD):
        self._fn = fn
        self._items: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._run,),
            name="gpuvgm-write-behind",
            daemon=True,
        )
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._items.get()
            if item is self._END or self._stop.is_set():
                return
            try:
                self._fn(item)
            except BaseException as exc:  # raised on the submitting thread
                self._error = exc
                return

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._stop.set()
            raise error

    def submit(self, item: T) -> None:
        while True:
            self._raise()
            if not self._thread.is_alive():
                raise RuntimeError("the write-behind thread has stopped")
            try:
                self._items.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait until every submitted item is written; raise the writer's error if any."""
        if self._thread.is_alive():
            while True:
                try:
                    self._items.put(self._END, timeout=0.05)
                    break
                except queue.Full:
                    if not self._thread.is_alive():
                        break
            self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Stop without writing what is still queued (after an error or an interrupt)."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._items.put_nowait(self._END)
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._items.get_nowait()
            self._thread.join(timeout=0.05)
