"""Where the fit's iterations read the data: the chunk cache filled by the pre-pass, and the
cached rows as a source of their own."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ._backends._api import Backend
from ._sources import Chunk, Source

# The host cache takes at most this fraction of the memory available when the fit starts, so a
# 4 GB float32 column on a 16 GB machine is read once, not once per pass; larger data streams.
HOST_CACHE_FRACTION = 0.5


def available_memory_bytes() -> int | None:
    """Memory available to new allocations (``MemAvailable``, Linux), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # other POSIX systems: free physical pages
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def host_cache_budget(requested: int | None) -> tuple[int, str]:
    """``(bytes, why)``: the host cache budget, ``requested`` or (None) a fraction of the
    available memory."""
    if requested is not None:
        return int(requested), "cache_bytes"
    available = available_memory_bytes()
    if available is None:
        return 2 << 30, "2 GiB: the available memory is unknown"
    return int(HOST_CACHE_FRACTION * available), (
        f"{HOST_CACHE_FRACTION:g} of the {available / 1e9:.3g} GB available"
    )


class CachedSource(Source):
    """Chunks already read and converted, kept (in host or device memory) for the next passes."""

    in_memory = True

    def __init__(self, chunks: list[Chunk], like: Source, where: str = "host memory"):
        self._chunks = chunks
        self._where = where
        self.columns = like.columns
        self.named = like.named
        self.n_rows = sum(len(c) for _, c in chunks)
        self._like = like.describe()

    def _iter_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        # The chunking was fixed when the chunks were read; chunk_rows is the same value.
        yield from self._chunks

    def describe(self) -> str:
        return f"{self._like}, cached in {self._where}"


class _ChunkCache:
    """Where the iterations read the data: device memory first, then host memory, each up to its
    budget; past both, nothing is kept and every iteration reads the source again.

    When the source knows its row count and every row fits in the device budget, the rows are
    gathered into one column-major device array (``whole``): an iteration is then one launch of
    each kernel and one download of statistics, instead of one per chunk.
    """

    def __init__(
        self,
        device_budget: int,
        host_budget: int,
        backend: Backend,
        n_rows: int | None,
        host_budget_reason: str = "cache_bytes",
    ):
        self.budget = {"device": device_budget, "host": host_budget}
        self.host_budget_reason = host_budget_reason
        self.used = {"device": 0, "host": 0}
        self.backend = backend
        self.n_rows = n_rows
        self.whole: Any = None
        self.rows = 0
        self.chunks: list[tuple[int, Any]] | None = []
        self.seen = 0  # bytes of one pass over the source

    def add(self, offset: int, chunk: Any, host: np.ndarray) -> None:
        """Keep rows ``offset ..`` : ``chunk`` where the backend computes (it may be a staging
        buffer, reused after this call: it is copied), ``host`` the same rows in host memory."""
        self.seen += host.nbytes
        self.rows += host.shape[0]
        if self.chunks is None:
            return
        if offset == 0 and self.n_rows:
            nbytes = self.n_rows * host.shape[1] * host.itemsize
            if nbytes <= self.budget["device"]:
                self.whole = self.backend.memory.empty_cache(
                    (self.n_rows, host.shape[1]), host.dtype
                )
                self.used["device"] = nbytes
        if self.whole is not None:
            if self.rows > (self.n_rows or 0):  # more rows than the metadata said: distrust it
                self._drop()
                return
            self.backend.memory.cache_put(self.whole, offset, chunk)
            return
        for where in ("device", "host"):
            if self.used[where] + host.nbytes <= self.budget[where]:
                self.used[where] += host.nbytes
                kept = self.backend.memory.to_device(chunk) if where == "device" else host
                self.chunks.append((offset, kept))
                return
        self._drop()  # too large for the caches: stream every pass

    def staged(self, staged: Iterable[tuple[int, Any, Any]]) -> Iterator[tuple[int, Any, Any]]:
        """``staged`` (a backend's ``memory.stage`` output), keeping every chunk on the way."""
        for offset, chunk, host in staged:
            self.add(offset, chunk, host)
            yield offset, chunk, host

    def _drop(self) -> None:
        self.chunks = None
        self.whole = None
        self.used = {"device": 0, "host": 0}

    def source(self, like: Source) -> Source | None:
        """The cached rows as a source for the next passes, or None when they were not kept."""
        if self.whole is not None and self.rows != self.n_rows:
            self._drop()  # fewer rows than the metadata said
        if self.whole is not None:
            return CachedSource([(0, self.whole)], like, "device memory, one array")
        if self.chunks:
            where = "device memory" if self.used["device"] else "host memory"
            if self.used["device"] and self.used["host"]:
                where = "device and host memory"
            return CachedSource(self.chunks, like, where)
        return None

    def describe(self) -> str:
        """Where the iterations read, and why (the budgets)."""
        budgets = (
            f"budgets: device {self.budget['device'] / 1e9:.3g} GB, host "
            f"{self.budget['host'] / 1e9:.3g} GB ({self.host_budget_reason}); "
            f"one pass reads {self.seen / 1e9:.3g} GB"
        )
        if self.chunks is None or (not self.chunks and self.whole is None):
            if not any(self.budget.values()):
                return (
                    "the source on every pass (nothing to cache: in memory already, or caches off)"
                )
            return f"the source on every pass, larger than the caches ({budgets})"
        return (
            f"the cache: {self.used['device'] / 1e9:.3g} GB on the device"
            f"{' in one array' if self.whole is not None else ''}, "
            f"{self.used['host'] / 1e9:.3g} GB in host memory ({budgets})"
        )

    def report(self) -> dict[str, Any]:
        return {
            "device_bytes": self.used["device"],
            "host_bytes": self.used["host"],
            "whole_on_device": self.whole is not None,
        }

    def budgets(self) -> dict[str, Any]:
        """The budgets, and why the host one is what it is."""
        return {
            "device_bytes": self.budget["device"],
            "host_bytes": self.budget["host"],
            "host": self.host_budget_reason,
        }
