"""The CUDA backend's :class:`~gpuvgm._backends._api.Memory`: whether CuPy sees a GPU, host to
device transfers (staged through pinned buffers), the fit's device cache and CuPy's pools.

The host twin is :mod:`gpuvgm._backends._host`. Importing this module needs neither CuPy nor a
GPU; :func:`unavailable_reason` says what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .._errors import BackendUnavailableError
from .._profiling import annotate

try:
    import cupy
except ImportError:  # the compile test and the emulation tests use the backend without CuPy
    cupy = None

logger = logging.getLogger("gpuvgm")

#: Fraction of the free device memory a fit may fill with cached data (the rest is for the
#: kernels' partials and for other work on the GPU).
DEVICE_CACHE_FRACTION = 0.5


def unavailable_reason() -> str | None:
    """Why the CUDA backend cannot run here, or None when CuPy sees a usable GPU."""
    if cupy is None:
        return "CuPy is not installed"
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver; ImportError of a CUDA library
        return f"the CUDA runtime is not usable ({exc})"
    if n_devices == 0:
        return "no CUDA device is visible"
    try:
        capability = int(cupy.cuda.Device().compute_capability)
    except Exception as exc:
        return f"the CUDA device cannot be queried ({exc})"
    if capability < 60:
        return f"the GPU's compute capability {capability / 10:.1f} is below 6.0"
    return None


def ensure_cupy() -> None:
    """Raise :class:`~gpuvgm.BackendUnavailableError` unless CuPy sees a usable GPU."""
    reason = unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(f"the CUDA backend cannot run: {reason}")


def memory_report() -> dict[str, int]:
    """Bytes held by CuPy's device and pinned memory pools (used and reserved)."""
    ensure_cupy()
    pool = cupy.get_default_memory_pool()
    pinned = cupy.get_default_pinned_memory_pool()
    return {
        "device_pool_used_bytes": int(pool.used_bytes()),
        "device_pool_total_bytes": int(pool.total_bytes()),
        "pinned_pool_free_blocks": int(pinned.n_free_blocks()),
    }


def release_memory() -> None:
    """Return the pools' free blocks to the driver (after a fit, so device memory is released)."""
    ensure_cupy()
    cupy.get_default_memory_pool().free_all_blocks()
    cupy.get_default_pinned_memory_pool().free_all_blocks()


def cache_budget_bytes(fraction: float = DEVICE_CACHE_FRACTION) -> int:
    """Bytes of device memory the fit may keep data in: ``fraction`` of what is free now
    (counting the pool's free blocks as free)."""
    ensure_cupy()
    free, _ = cupy.cuda.runtime.memGetInfo()
    free += cupy.get_default_memory_pool().free_bytes()
    return int(fraction * free)


def to_device(chunk: Any) -> Any:
    """A device copy of ``chunk`` (same dtype and memory order) for the next passes; a copy
    also when ``chunk`` is on the device already (it may be a staging buffer)."""
    ensure_cupy()
    return cupy.array(chunk, order="K", copy=True)


def to_host(array: Any) -> np.ndarray:
    """``array`` in host memory (a device-to-host copy for a CuPy array)."""
    return cupy.asnumpy(array) if isinstance(array, cupy.ndarray) else np.asarray(array)


def empty_cache(shape: tuple[int, int], dtype: np.dtype) -> Any:
    """Device memory for a whole column-major copy of the data (see ``_ChunkCache``)."""
    ensure_cupy()
    return cupy.empty(shape, dtype=dtype, order="F")


def cache_put(cache: Any, start: int, chunk: Any) -> None:
    """``cache[start : start + len(chunk)] = chunk``, on the current stream (device to device
    when the chunk is on the device)."""
    cache[start : start + chunk.shape[0]] = cupy.asarray(chunk)


# --------------------------------------------------------------------------------------------
# Streaming host chunks to the device (gpuvgm/_backends/_staging.py)
# --------------------------------------------------------------------------------------------


class _CupyOps:
    """:class:`gpuvgm._backends._staging.DeviceOps` with CuPy: the copy stream is non-blocking
    (it never waits for the legacy default stream the kernels run on), events carry no timing."""

    def copy_stream(self) -> Any:
        return cupy.cuda.Stream(non_blocking=True)

    def current_stream(self) -> Any:
        return cupy.cuda.get_current_stream()

    def event(self) -> Any:
        return cupy.cuda.Event(disable_timing=True)

    def record(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def wait(self, stream: Any, event: Any) -> None:
        stream.wait_event(event)

    def synchronize(self, event: Any) -> None:
        event.synchronize()

    def pinned(self, nbytes: int) -> np.ndarray:
        import cupyx

        return cupyx.empty_pinned((nbytes,), dtype=np.uint8)

    def device(self, nbytes: int) -> Any:
        return cupy.empty((nbytes,), dtype=cupy.uint8)

    def view(self, buffer: Any, shape: tuple[int, ...], dtype: np.dtype, order: str) -> Any:
        return cupy.ndarray(shape, dtype=dtype, memptr=buffer.data, order=order)

    def copy_async(self, dst: Any, src: np.ndarray, nbytes: int, stream: Any) -> None:
        cupy.cuda.runtime.memcpyAsync(
            dst.data.ptr, src.ctypes.data, nbytes, cupy.cuda.runtime.memcpyHostToDevice, stream.ptr
        )


def stage(chunks: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, Any, Any]]:
    """``(offset, device array, host array)`` for each ``(offset, chunk)``: host chunks go
    through pinned buffers and asynchronous copies on a stream of their own, ahead of the
    kernels (:class:`~gpuvgm._backends._staging.Stager`); device chunks pass through. A
    device array is valid until the next one is requested."""
    from ._staging import Stager

    ensure_cupy()
    stager = Stager(_CupyOps())
    try:
        with annotate("staged_pass"):
            yield from stager.stage(chunks)
    finally:
        stager.close()
        logger.debug("staged %d bytes to the device", stager.bytes_copied)
