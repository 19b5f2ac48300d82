"""``cupy.cuda.runtime``: device queries and the asynchronous copy (a checked memmove)."""

from __future__ import annotations

import ctypes
from typing import Any

from .. import _memory

memcpyHostToHost = 0
memcpyHostToDevice = 1
memcpyDeviceToHost = 2
memcpyDeviceToDevice = 3
memcpyDefault = 4


class CUDARuntimeError(RuntimeError):
    pass


def getDeviceCount() -> int:
    return 1


def getDeviceProperties(device: int) -> dict[str, Any]:
    if device != 0:
        raise CUDARuntimeError(f"cudaErrorInvalidDevice: device {device}")
    state = _memory.state
    return {
        "name": b"fakecupy (host emulation of the kernels)",
        "multiProcessorCount": state.sm_count,
        "totalGlobalMem": state.total_bytes,
        "major": 9,
        "minor": 0,
        "maxThreadsPerBlock": 1024,
        "maxThreadsPerMultiProcessor": 2048,
        "regsPerMultiprocessor": 65536,
        "maxGridSize": (2**31 - 1, 65535, 65535),
    }


def memGetInfo() -> tuple[int, int]:
    state = _memory.state
    return state.total_bytes - state.used - state.cached, state.total_bytes


def deviceSynchronize() -> None:
    """Everything ran when it was enqueued."""


def memcpyAsync(dst: int, src: int, size: int, kind: int, stream: int) -> None:
    """A host-to-device copy, run now. The destination must lie in one device allocation and the
    source in one pinned buffer (the staging pipeline's contract: a pageable source would make
    CUDA copy synchronously), and the stream must be a live stream's ``ptr``."""
    from . import Stream

    for name, value in (("dst", dst), ("src", src), ("size", size), ("kind", kind)):
        if not isinstance(value, int):
            raise TypeError(f"memcpyAsync: {name} must be an int, got {type(value).__name__}")
    if not isinstance(stream, int) or stream not in Stream.live:
        raise TypeError(f"memcpyAsync: stream must be a live stream's ptr, got {stream!r}")
    if kind != memcpyHostToDevice:
        raise NotImplementedError(f"memcpyAsync: only memcpyHostToDevice is simulated, got {kind}")
    if size < 0:
        raise ValueError(f"memcpyAsync: negative size {size}")
    if _memory.find_device(dst, size) is None:
        raise ValueError(f"memcpyAsync: [{dst:#x}, +{size}) is not inside one device allocation")
    if not _memory.is_pinned(src, size):
        raise ValueError(f"memcpyAsync: [{src:#x}, +{size}) is not inside one pinned buffer")
    ctypes.memmove(dst, src, size)
    _memory.state.bytes_copied += size
