"""Host memory (:class:`gpuvgm._backends._api.Memory`) for the backends that compute on the CPU:
the data is already where they compute, so transfers are identities and nothing is pooled."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np


def memory_report() -> dict[str, int]:
    """Backend-held memory: none (host arrays are freed by reference counting)."""
    return {}


def release_memory() -> None:
    """Nothing to release: the CPU backends keep no pools (only small per-thread scratch)."""


def cache_budget_bytes(fraction: float = 0.5) -> int:
    """Bytes of device memory the fit may keep data in: none, the data is already on the host."""
    return 0


def to_device(chunk: np.ndarray) -> np.ndarray:
    """The chunk where this backend computes: host memory, as it is."""
    return chunk


def stage(chunks: Iterable[tuple[int, np.ndarray]]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(offset, chunk where this backend computes, host chunk)``: the same array twice."""
    for offset, chunk in chunks:
        yield offset, chunk, chunk


def to_host(array: np.ndarray) -> np.ndarray:
    """``array`` in host memory: as it is."""
    return np.asarray(array)


def empty_cache(shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """Memory for a whole column-major copy of the data."""
    return np.empty(shape, dtype=dtype, order="F")


def cache_put(cache: np.ndarray, start: int, chunk: np.ndarray) -> None:
    """``cache[start : start + len(chunk)] = chunk``."""
    cache[start : start + chunk.shape[0]] = chunk
