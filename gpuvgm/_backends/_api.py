"""The backend contract: what every backend (``numpy``, the compiled CPU backend, ``cuda``)
provides, declared as :pep:`544` protocols that a module satisfies.

A backend runs the O(rows x K) passes; the model layer (:mod:`gpuvgm._model`) owns every formula
and every parameter table, so a backend only evaluates them. Its :class:`Memory` says where those
passes read their data (host memory for the CPU backends, device memory for CUDA).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

import numpy as np

from .._errors import DataError, DataTypeError
from .._model import EStepParams, Moments, Stats, TransformParams
from .._validation import MAX_COMPONENTS

A = TypeVar("A", bound=Any)  # an array type: NumPy, or CuPy for the CUDA backend

# |x'| beyond this happens only at transform time, for values far outside the fitted data: their
# squares would overflow, every l_k be -inf and the posterior NaN. Clamped, the posterior keeps
# its limit (one-hot on the widest component), exactly. Fitted data has |x'| <= sqrt(n_rows).
# The CPU backends clamp here; the kernels' copy is ``working`` in ``kernels/vgm_math.cuh``.
WORKING_MAX = 1e100

# exp() of arguments below about -708 underflows into NumPy's slow scalar path (~15x slower);
# exp(-700) = 1e-304 is as good as zero for every statistic.
EXP_FLOOR = -700.0


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

    def estep_stats(
        self, chunk: Any, params: EStepParams, *, compute_dtype: Any = None
    ) -> Stats: ...

    def log_resp(self, chunk: Any, params: EStepParams) -> Any: ...

    def transform(
        self, chunk: Any, params: TransformParams, row_offset: int
    ) -> tuple[Any, Any, Any, np.ndarray]: ...

    def inverse(self, normalized: Any, component: Any, params: TransformParams) -> Any: ...


# --------------------------------------------------------------------------------------------
# Argument checks every backend calls before it computes, so that all backends refuse the same
# inputs with the same errors (TypeError-compatible DataTypeError for a dtype, ValueError-
# compatible DataError for a shape or range). They read only ``dtype``, ``ndim`` and ``shape``,
# so they take NumPy and CuPy arrays alike and never copy data between devices.
# --------------------------------------------------------------------------------------------

_REAL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


def check_chunk(chunk: A, what: str = "chunk") -> A:
    """``chunk`` itself, once it is a 2-D float32/float64 array (n_rows, n_columns).

    Parameters
    ----------
    chunk : array of shape (n_rows, n_columns)
        NumPy or CuPy; any memory order.
    what : str
        The argument's name in the error messages.

    Raises
    ------
    DataTypeError
        The dtype is neither float32 nor float64.
    DataError
        The array is not 2-D.
    """
    if chunk.dtype not in _REAL_DTYPES:
        raise DataTypeError(f"{what} must be float32 or float64, got {chunk.dtype}")
    if chunk.ndim != 2:
        raise DataError(f"{what} must be 2-D (n_rows, n_columns), got shape {chunk.shape}")
    return chunk


def check_k(k: int) -> int:
    """``k`` as an int, once ``1 <= k <= MAX_COMPONENTS`` (the CUDA kernels' largest K, which
    every backend keeps so that a model fitted on one runs on all)."""
    if not 1 <= int(k) <= MAX_COMPONENTS:
        raise DataError(f"the backends take 1 to {MAX_COMPONENTS} components, got {k}")
    return int(k)


def check_columns(columns: Any, n_available: int) -> np.ndarray:
    """``columns`` as a contiguous int64 array, once it is a non-empty 1-D array of indices into
    the ``n_available`` columns of a chunk."""
    columns = np.ascontiguousarray(columns, dtype=np.int64)
    if columns.ndim != 1 or columns.size == 0:
        raise DataError(f"params.columns must be a non-empty 1-D array, got shape {columns.shape}")
    if columns.min() < 0 or columns.max() >= n_available:
        raise DataError(f"params.columns {columns.tolist()} out of range for {n_available} columns")
    return columns


def check_centers(centers: Any, n_columns: int) -> np.ndarray:
    """``centers`` as float64 (n_columns, K), K checked by :func:`check_k`."""
    centers = np.asarray(centers, dtype=np.float64)
    if centers.ndim != 2 or centers.shape[0] != n_columns:
        raise DataError(f"centers must have shape (n_columns, K), got {centers.shape}")
    check_k(centers.shape[1])
    return centers


def check_sample_args(seed: int, offset: int, limit: int) -> tuple[int, int, int]:
    """``(seed, offset, limit)`` as ints, once each is in the range the Philox counter takes:
    ``seed < 2**64``, ``offset < 2**63`` (a global row), ``limit < 2**32`` (a 32-bit word)."""
    for name, value, bound in (("seed", seed, 64), ("offset", offset, 63), ("limit", limit, 32)):
        if not 0 <= int(value) < 2**bound:
            raise DataError(f"{name} must be in [0, 2**{bound}), got {value}")
    return int(seed), int(offset), int(limit)


def check_inverse_args(normalized: A, component: Any, n_columns: int) -> A:
    """``normalized`` checked by :func:`check_chunk`, once ``component`` is an int32/int64 array
    of the same shape and the parameters describe its ``n_columns`` columns."""
    check_chunk(normalized, "normalized")
    if component.dtype not in _INDEX_DTYPES:
        raise DataTypeError(f"component must be int32 or int64, got {component.dtype}")
    if component.shape != normalized.shape:
        raise DataError(
            f"component has shape {component.shape}, normalized has shape {normalized.shape}"
        )
    if n_columns != normalized.shape[1]:
        raise DataError(f"params describe {n_columns} columns, the data has {normalized.shape[1]}")
    return normalized
