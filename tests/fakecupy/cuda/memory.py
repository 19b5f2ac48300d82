"""``cupy.cuda.memory``."""

from __future__ import annotations

from .._memory import MemoryPointer, MemoryPool, OutOfMemoryError, alloc

__all__ = ["MemoryPointer", "MemoryPool", "OutOfMemoryError", "alloc"]
