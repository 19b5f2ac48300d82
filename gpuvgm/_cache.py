"""Where the fit's iterations read the data: the chunk cache filled by the pre-pass, and the
cached rows as a source of their own."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

import numpy as np

from ._backends._api import Backend
from ._sources import Chunk, Source

logger = logging.getLogger("gpuvgm")

# The host cache takes at most this fraction of the memory available when the fit starts; what
# does not fit there is spilled, as raw bytes, to an unnamed temporary file of at most
# SPILL_DISK_FRACTION of the free space where temporary files go. So a 4 GB float32 column is
# decoded from Parquet once, not once per pass, while the process's resident memory stays a
# fraction of the machine's: the spill file is read back chunk by chunk through the operating
# system's page cache (reclaimable, not the process's), and is gone when the fit ends.
HOST_CACHE_FRACTION = 0.125
SPILL_DISK_FRACTION = 0.5


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


def spill_budget(requested: int | None, directory: str | None = None) -> tuple[int, str]:
    """``(bytes, why)``: how much of the cache may go to a temporary file in ``directory``
    (default: where :mod:`tempfile` puts files); none when ``cache_bytes`` was given."""
    if requested is not None:
        return 0, "cache_bytes given: no spill file"
    directory = directory or tempfile.gettempdir()
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return 0, f"no spill file: the free space in {directory} is unknown"
    return int(SPILL_DISK_FRACTION * free), (
        f"{SPILL_DISK_FRACTION:g} of the {free / 1e9:.3g} GB free in {directory}"
    )


class _Spilled:
    """A chunk kept in the spill file: where its bytes are, and how to read them back."""

    def __init__(self, file: IO[bytes], position: int, host: np.ndarray):
        self.file, self.position = file, position
        self.transposed = not host.flags.c_contiguous and host.flags.f_contiguous
        data = host.T if self.transposed else np.ascontiguousarray(host)
        self.shape, self.dtype, self.nbytes = data.shape, data.dtype, data.nbytes
        file.seek(position)
        file.write(data.data.cast("B"))

    def __len__(self) -> int:
        return int(self.shape[1] if self.transposed else self.shape[0])

    def load(self) -> np.ndarray:
        """The chunk, read into a new array (as it was given: same shape and memory order)."""
        out = np.empty(self.shape, self.dtype)
        view = out.data.cast("B")
        done = 0
        while done < self.nbytes:  # pread may return fewer bytes than asked
            n = os.preadv(self.file.fileno(), [view[done:]], self.position + done)
            if n <= 0:
                raise OSError(f"the cache's spill file ended early ({done} of {self.nbytes})")
            done += n
        return out.T if self.transposed else out


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
        for offset, chunk in self._chunks:
            yield offset, chunk.load() if isinstance(chunk, _Spilled) else chunk

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
        spill: tuple[int, str] = (0, "no spill file"),
    ):
        self.budget = {"device": device_budget, "host": host_budget, "spill": spill[0]}
        self.host_budget_reason = host_budget_reason
        self.spill_reason = spill[1]
        self.used = {"device": 0, "host": 0, "spill": 0}
        self.spill_file: IO[bytes] | None = None
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
        if self.used["spill"] + host.nbytes <= self.budget["spill"]:
            try:
                if self.spill_file is None:
                    self.spill_file = tempfile.TemporaryFile(prefix="gpuvgm-cache-")
                    logger.debug("the cache spills past host memory to a temporary file")
                self.chunks.append((offset, _Spilled(self.spill_file, self.used["spill"], host)))
                self.used["spill"] += host.nbytes
                return
            except OSError as e:  # e.g. the disk filled up: stream instead
                logger.warning("the cache's spill file failed (%s): every pass reads the source", e)
        self._drop()  # too large for the caches: stream every pass

    def staged(self, staged: Iterable[tuple[int, Any, Any]]) -> Iterator[tuple[int, Any, Any]]:
        """``staged`` (a backend's ``memory.stage`` output), keeping every chunk on the way."""
        for offset, chunk, host in staged:
            self.add(offset, chunk, host)
            yield offset, chunk, host

    def _drop(self) -> None:
        self.chunks = None
        self.whole = None
        self.used = {"device": 0, "host": 0, "spill": 0}
        self.close()

    def close(self) -> None:
        """Delete the spill file, if any (the cached source that reads it is then spent)."""
        if self.spill_file is not None:
            self.spill_file.close()
            self.spill_file = None

    def source(self, like: Source) -> Source | None:
        """The cached rows as a source for the next passes, or None when they were not kept."""
        if self.whole is not None and self.rows != self.n_rows:
            self._drop()  # fewer rows than the metadata said
        if self.whole is not None:
            return CachedSource([(0, self.whole)], like, "device memory, one array")
        if self.chunks:
            kinds = [
                name
                for name, key in (
                    ("device memory", "device"),
                    ("host memory", "host"),
                    ("a temporary file", "spill"),
                )
                if self.used[key]
            ]
            return CachedSource(self.chunks, like, " and ".join(kinds))
        return None

    def describe(self) -> str:
        """Where the iterations read, and why (the budgets)."""
        budgets = (
            f"budgets: device {self.budget['device'] / 1e9:.3g} GB, host "
            f"{self.budget['host'] / 1e9:.3g} GB ({self.host_budget_reason}), spill file "
            f"{self.budget['spill'] / 1e9:.3g} GB ({self.spill_reason}); "
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
            f"{self.used['host'] / 1e9:.3g} GB in host memory, "
            f"{self.used['spill'] / 1e9:.3g} GB in a temporary file ({budgets})"
        )

    def report(self) -> dict[str, Any]:
        return {
            "device_bytes": self.used["device"],
            "host_bytes": self.used["host"],
            "spill_bytes": self.used["spill"],
            "whole_on_device": self.whole is not None,
        }

    def budgets(self) -> dict[str, Any]:
        """The budgets, and why the host one is what it is."""
        return {
            "device_bytes": self.budget["device"],
            "host_bytes": self.budget["host"],
            "host": self.host_budget_reason,
            "spill_bytes": self.budget["spill"],
            "spill": self.spill_reason,
        }
