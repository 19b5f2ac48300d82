"""The backend contract: what every backend (``numpy``, the compiled CPU backend, ``cuda``)
provides, declared as :pep:`544` protocols that a module satisfies.

A backend runs the O(rows x K) passes; the model layer (:mod:`gpuvgm._model`) owns every formula
and every parameter table, so a backend only evaluates them. Its :class:`Memory` says where those
passes read their data (host memory for the CPU backends, device memory for CUDA).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import numpy as np

from .._model import EStepParams, Moments, Stats, TransformParams


class Memory(Protocol):
    """Where a backend computes: transfers, the fit's data cache and its pools."""

    def stage(self, chunks: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, Any, Any]]:
        """``(offset, chunk where the backend computes, the same rows on the host)``."""
        ...

    def to_device(self, chunk: Any) -> Any:
        """A copy of ``chunk`` where the backend computes, kept for the next passes."""
        ...

    def to_host(self, array: Any) -> np.ndarray:
        """``array`` in host memory."""
        ...

    def empty_cache(self, shape: tuple[int, int], dtype: np.dtype) -> Any:
        """Memory for a whole column-major copy of the data."""
        ...

    def cache_put(self, cache: Any, start: int, chunk: Any) -> None:
        """``cache[start : start + len(chunk)] = chunk``."""
        ...

    def cache_budget_bytes(self, fraction: float) -> int:
        """Bytes of backend memory the fit may keep data in (0: none)."""
        ...

    def memory_report(self) -> dict[str, int]:
        """Bytes the backend holds in pools (for ``fit_report_["memory"]``)."""
        ...

    def release_memory(self) -> None:
        """Return pooled memory (after every fit)."""
        ...


class Backend(Protocol):
    """The O(rows x K) passes. A chunk is a 2-D array (n_rows, n_columns), float32 or float64,
    any memory order, NaN for nulls, in the backend's memory (see ``memory.stage``)."""

    NAME: str
    memory: Memory

    def moments(self, chunk: Any) -> Moments: ...

    def sample_candidates(
        self, chunk: Any, seed: int, column_key: int, stream: int, offset: int, limit: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def assign_stats(self, chunk: Any, centers: np.ndarray, params: EStepParams) -> Stats: ...

    def estep_stats(self, chunk: Any, params: EStepParams) -> Stats: ...

    def log_resp(self, chunk: Any, params: EStepParams) -> Any: ...

    def transform(
        self, chunk: Any, params: TransformParams, row_offset: int
    ) -> tuple[Any, Any, Any, np.ndarray]: ...

    def inverse(self, normalized: Any, component: Any, params: TransformParams) -> Any: ...
