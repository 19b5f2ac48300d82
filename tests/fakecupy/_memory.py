"""Device memory of the stand-in: allocations in host memory with guard bands, the pools'
accounting, pinned host buffers, and the state a test resets (limits, the launch log).

Every device allocation is a NumPy byte buffer ``[guard | data | guard]``: the guards hold a fixed
pattern that a launch must leave intact (a kernel writing past its array is reported, instead of
corrupting the test process quietly), and fresh data holds a poison pattern (0xA5 bytes: a float
of about -3e-16, an int of -1515870811) so that an output a kernel forgot to write never passes for
a zero or a NaN.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Bytes of guard band on each side of a device allocation.
GUARD = 1024
GUARD_BYTE = 0x5A
POISON_BYTE = 0xA5


class OutOfMemoryError(MemoryError):
    """``cupy.cuda.memory.OutOfMemoryError(size, total, limit=0)``."""

    def __init__(self, size: int, total: int, limit: int = 0):
        self.size, self.total, self.limit = size, total, limit
        super().__init__(
            f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes)."
        )


@dataclass
class State:
    """The simulated device: what a test may configure, and what it may inspect."""

    #: Device memory, bytes (``memGetInfo``'s total).
    total_bytes: int = 1 << 30
    #: A single allocation larger than this raises OutOfMemoryError (None: no such limit)...
    oom_above: int | None = None
    #: ... that many times, then such allocations succeed (None: every time). A shortage that
    #: passes (other work on the GPU freeing memory) rather than one that lasts.
    oom_refusals: int | None = None
    #: Streaming multiprocessors (``multiProcessorCount``) and registers per thread
    #: (``Function.attributes["num_regs"]``): they set the grids ``_cuda.py`` computes. Small, so
    #: that the emulated launches (one OS thread per CUDA thread) stay quick.
    sm_count: int = 2
    num_regs: int = 64
    #: The emulation library (tests/emulation/shim.cpp, with its launch_* entries).
    library: Any = None
    #: ``(name expression, grid, block)`` of every launch, in order.
    launches: list[tuple[str, tuple[int, int, int], tuple[int, int, int]]] = field(
        default_factory=list
    )
    #: Allocations refused (OutOfMemoryError raised), and calls of the pools' free_all_blocks.
    oom_raised: int = 0
    free_all_blocks_calls: int = 0
    #: Bytes copied host to device by memcpyAsync.
    bytes_copied: int = 0
    # The pool's accounting: bytes of live allocations, and bytes freed but kept by the pool.
    used: int = 0
    cached: int = 0
    pinned_free_blocks: int = 0
    live: weakref.WeakSet = field(default_factory=weakref.WeakSet)
    pinned: dict[int, tuple[int, int, weakref.ref]] = field(default_factory=dict)
    generation: int = 0


_lock = threading.RLock()
_generation = itertools.count(1)
state = State(generation=next(_generation))


def reset(**settings: Any) -> State:
    """A fresh device (empty pools, empty log) with ``settings`` (fields of :class:`State`)."""
    global state
    with _lock:
        state = State(generation=next(_generation), **settings)
    return state


def _release(generation: int, nbytes: int) -> None:
    with _lock:
        if state.generation == generation:  # an allocation of a device since reset is gone
            state.used -= nbytes
            state.cached += nbytes


class Allocation:
    """``nbytes`` of device memory (at least one byte is reserved, as CUDA never returns a
    null pointer for a live allocation)."""

    def __init__(self, nbytes: int, device_id: int = 0):
        if nbytes < 0:
            raise ValueError(f"negative allocation size {nbytes}")
        with _lock:
            if state.oom_above is not None and nbytes > state.oom_above:
                if state.oom_refusals is None or state.oom_refusals > 0:
                    if state.oom_refusals is not None:
                        state.oom_refusals -= 1
                    state.oom_raised += 1
                    raise OutOfMemoryError(nbytes, state.used)
            if state.used + nbytes > state.total_bytes:
                state.cached = 0  # the pool gives its free blocks back first, as CuPy's does
                if state.used + nbytes > state.total_bytes:
                    state.oom_raised += 1
                    raise OutOfMemoryError(nbytes, state.used)
            state.cached = max(0, state.cached - nbytes)  # reused from the pool when it can
            state.used += nbytes
            state.live.add(self)
            generation = state.generation
        self.size = nbytes
        self.device_id = device_id
        self.buf = np.empty(nbytes + 2 * GUARD, dtype=np.uint8)
        self.buf[:GUARD] = GUARD_BYTE
        self.buf[GUARD + nbytes :] = GUARD_BYTE
        self.buf[GUARD : GUARD + nbytes] = POISON_BYTE
        self.ptr = int(self.buf.ctypes.data) + GUARD
        weakref.finalize(self, _release, generation, nbytes)

    def intact(self) -> bool:
        """Whether both guard bands still hold their pattern."""
        return bool(
            (self.buf[:GUARD] == GUARD_BYTE).all()
            and (self.buf[GUARD + self.size :] == GUARD_BYTE).all()
        )

    def contains(self, ptr: int, nbytes: int) -> bool:
        return self.ptr <= ptr and ptr + nbytes <= self.ptr + self.size


class MemoryPointer:
    """``cupy.cuda.MemoryPointer``: an allocation and a byte offset into it."""

    def __init__(self, mem: Allocation, offset: int):
        if not isinstance(mem, Allocation):
            raise TypeError(f"a MemoryPointer needs device memory, got {type(mem).__name__}")
        self.mem = mem
        self.offset = int(offset)
        self.device_id = mem.device_id

    @property
    def ptr(self) -> int:
        return self.mem.ptr + self.offset

    def __add__(self, offset: int) -> MemoryPointer:
        return MemoryPointer(self.mem, self.offset + int(offset))

    def __int__(self) -> int:
        return self.ptr


def alloc(nbytes: int) -> MemoryPointer:
    """``cupy.cuda.memory.alloc``."""
    from .cuda import Device

    return MemoryPointer(Allocation(int(nbytes), Device().id), 0)


def find_device(ptr: int, nbytes: int) -> Allocation | None:
    """The live device allocation holding ``[ptr, ptr + nbytes)``, if any."""
    with _lock:
        for mem in list(state.live):
            if mem.contains(ptr, nbytes):
                return mem
    return None


def damaged() -> list[Allocation]:
    """Live allocations whose guard bands were written."""
    with _lock:
        return [m for m in list(state.live) if not m.intact()]


class MemoryPool:
    """``cupy.get_default_memory_pool()``."""

    def used_bytes(self) -> int:
        return state.used

    def total_bytes(self) -> int:
        return state.used + state.cached

    def free_bytes(self) -> int:
        return state.cached

    def n_free_blocks(self) -> int:
        return 1 if state.cached else 0

    def free_all_blocks(self, stream: Any = None) -> None:
        with _lock:
            state.cached = 0
            state.free_all_blocks_calls += 1

    def get_limit(self) -> int:
        return state.total_bytes

    def set_limit(self, size: int | None = None, fraction: float | None = None) -> None:
        raise NotImplementedError("the stand-in's limit is set with fakecupy.reset()")

    def malloc(self, size: int) -> MemoryPointer:
        return alloc(size)


# ------------------------------------------------------------------------------------------------
# Pinned host memory
# ------------------------------------------------------------------------------------------------


def _release_pinned(generation: int, key: int) -> None:
    with _lock:
        if state.generation == generation:
            state.pinned.pop(key, None)
            state.pinned_free_blocks += 1


def empty_pinned(shape: Any, dtype: Any = float, order: str = "C") -> np.ndarray:
    """``cupyx.empty_pinned``: a NumPy array whose memory is registered as page-locked."""
    dtype = np.dtype(dtype)
    shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = np.empty(max(nbytes, 1), dtype=np.uint8)
    start = int(buf.ctypes.data)
    with _lock:
        key = id(buf)
        state.pinned[key] = (start, start + buf.size, weakref.ref(buf))
        weakref.finalize(buf, _release_pinned, state.generation, key)
    return buf[:nbytes].view(dtype).reshape(shape, order=order)


def is_pinned(ptr: int, nbytes: int) -> bool:
    """Whether ``[ptr, ptr + nbytes)`` lies in one live pinned buffer."""
    with _lock:
        for start, stop, ref in state.pinned.values():
            if ref() is not None and start <= ptr and ptr + nbytes <= stop:
                return True
    return False


class PinnedMemoryPool:
    """``cupy.get_default_pinned_memory_pool()``."""

    def n_free_blocks(self) -> int:
        return state.pinned_free_blocks

    def free_all_blocks(self) -> None:
        with _lock:
            state.pinned_free_blocks = 0
            state.free_all_blocks_calls += 1
