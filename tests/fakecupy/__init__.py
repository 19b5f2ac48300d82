"""A stand-in for CuPy whose kernels are the CUDA kernels of ``kernels`` built for the CPU.

It implements the part of the CuPy API that ``gpuvgm/_backends`` uses, so that the CUDA backend's
host code (argument packing, dtypes, strides, grids, two-step launches, the out-of-memory split,
staging, the device cache) runs in tests without a GPU. Install it as ``cupy`` (and
:mod:`fakecupy.cupyx` as ``cupyx``) for the duration of a test; see
``tests/backends/test_cuda_host_code.py``.

What is simulated, and how faithfully:

* **Device arrays** (:class:`ndarray`) live in host memory but are not NumPy arrays: implicit
  conversion (``np.asarray``), NumPy functions and ufuncs on them raise ``TypeError`` as with
  CuPy, so host-only code handed a device array fails here as it would on a GPU. Allocations
  have guard bands (checked after every launch) and start poisoned.
* **Kernels**: ``RawModule`` reads the ``__global__`` declarations from the code it is given and
  each launch runs the emulated kernel (``tests/emulation/cuda_emulation.h``, one OS thread per
  CUDA thread) over exactly the grid and block requested, after strict checks of the grid, the
  block and every argument's type, dtype, layout and extent (see :mod:`fakecupy._kernels`). The
  grids ``_cuda.py`` computes follow the device's ``multiProcessorCount`` and the kernels'
  ``num_regs``, small here (2 SMs, 64 registers) so that launches stay quick; nothing is capped.
* **Memory**: one device of ``total_bytes`` (1 GiB by default); pools with CuPy's accounting
  (used, cached, ``free_all_blocks``); an allocation above ``oom_above`` bytes, or past the
  total, raises ``cupy.cuda.memory.OutOfMemoryError``.
* **Streams and events** are accepted and type-checked, but all work runs when enqueued: no
  reordering, so no ordering bug can show here (``tests/backends/test_staging.py`` covers that on
  a lazy device). ``memcpyAsync`` is a memmove, checked to go from one pinned buffer into one device
  allocation.

Not simulated: more than one device, kernels other than gpuvgm's, CuPy's elementwise arithmetic
and reductions on device arrays, asynchrony, real register counts and NVRTC diagnostics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _memory, cuda, cupyx
from ._core import (
    arange,
    argsort,
    array,
    asarray,
    asnumpy,
    concatenate,
    empty,
    ndarray,
    stack,
    zeros,
)
from ._kernels import RawModule
from ._memory import MemoryPool, PinnedMemoryPool, State

__all__ = [
    "RawModule",
    "arange",
    "argsort",
    "array",
    "asarray",
    "asnumpy",
    "concatenate",
    "cuda",
    "cupyx",
    "empty",
    "get_default_memory_pool",
    "get_default_pinned_memory_pool",
    "ndarray",
    "reset",
    "stack",
    "state",
    "zeros",
]

float32, float64 = np.float32, np.float64
int32, int64 = np.int32, np.int64
uint8, uint32, uint64 = np.uint8, np.uint32, np.uint64
bool_ = np.bool_

_pool = MemoryPool()
_pinned_pool = PinnedMemoryPool()


def get_default_memory_pool() -> MemoryPool:
    return _pool


def get_default_pinned_memory_pool() -> PinnedMemoryPool:
    return _pinned_pool


def reset(**settings: Any) -> State:
    """A fresh simulated device (see :class:`fakecupy._memory.State` for the settings:
    ``library``, ``total_bytes``, ``oom_above``, ``sm_count``, ``num_regs``)."""
    return _memory.reset(**settings)


def state() -> State:
    """The simulated device's state (launch log, pool counters...)."""
    return _memory.state


def damaged_allocations() -> list[Any]:
    """Live device allocations whose guard bands were overwritten (should be none)."""
    return _memory.damaged()
