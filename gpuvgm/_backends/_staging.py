"""Host chunks to device arrays through pinned staging buffers and a copy stream of their own.

The passes of a fit read chunks from the host (the source, or the host cache) when the data do
not fit in device memory. A synchronous copy would leave the GPU idle while it runs and the copy
engine idle while the kernels run; :class:`Stager` overlaps them:

* a ring of ``depth`` slots, each a pinned host buffer and a device buffer;
* a chunk is copied (by the host thread pool) into its slot's pinned buffer, then sent with an
  asynchronous host-to-device copy on the **copy stream** (non-blocking, so it never waits for
  the default stream), and an event ``copied`` is recorded after it;
* the consumer's stream (the stream the kernels run on) waits for ``copied`` on the device, not
  on the host, and the consumer gets the device array while the next chunks' copies run;
* when the consumer is done with a chunk, an event ``released`` is recorded on its stream; the
  copy stream waits for it before writing the slot's device buffer again, and the host waits for
  the slot's previous ``copied`` before writing its pinned buffer again.

Only events order the work: no device-wide synchronisation. The device operations come through a
small interface (:class:`DeviceOps`), implemented with CuPy in ``_cuda.py`` and by a simulated,
deliberately lazy device in ``tests/backends/test_staging.py``, which checks that no buffer is
reused before the work reading it has run.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, Literal, Protocol

import numpy as np

from .._parallel import parallel_map
from .._profiling import annotate

logger = logging.getLogger("gpuvgm")

#: Slots in the ring: one chunk being computed on, one being copied, one being filled.
DEPTH = 3
#: Bytes per host thread when a chunk is copied into pinned memory.
_COPY_BLOCK = 8 << 20


class DeviceOps(Protocol):
    """What :class:`Stager` needs from a device runtime."""

    def copy_stream(self) -> Any:
        """A new stream that does not synchronise with the default stream."""

    def current_stream(self) -> Any:
        """The stream the consumer's kernels are launched on."""

    def event(self) -> Any: ...

    def record(self, event: Any, stream: Any) -> None: ...

    def wait(self, stream: Any, event: Any) -> None:
        """Work enqueued on ``stream`` after this call starts after ``event`` has completed."""

    def synchronize(self, event: Any) -> None:
        """Block the host until ``event`` has completed."""

    def pinned(self, nbytes: int) -> np.ndarray:
        """Page-locked host memory, as a uint8 array."""

    def device(self, nbytes: int) -> Any:
        """Device memory of ``nbytes`` bytes."""

    def view(self, buffer: Any, shape: tuple[int, ...], dtype: np.dtype, order: str) -> Any:
        """A device array over the start of ``buffer``."""

    def copy_async(self, dst: Any, src: np.ndarray, nbytes: int, stream: Any) -> None:
        """Host-to-device copy of ``nbytes`` bytes from ``src`` to ``dst``, enqueued on
        ``stream``."""


class _Slot:
    def __init__(self, ops: DeviceOps):
        self.copied = ops.event()
        self.released = ops.event()
        self.used = False  # events recorded at least once
        self.capacity = 0
        self.pinned: np.ndarray | None = None
        self.device: Any = None


def _fill(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src`` in row blocks on the host thread pool (one thread copies ~5-10 GB/s)."""
    n = src.shape[0]
    rows = max(1, _COPY_BLOCK // max(1, src[:1].nbytes))
    if n <= rows:
        np.copyto(dst, src)
        return
    parallel_map(
        lambda a, b: np.copyto(dst[a:b], src[a:b]),
        [(a, min(a + rows, n)) for a in range(0, n, rows)],
    )


class Stager:
    """Sends host chunks to the device through ``depth`` pinned/device buffer pairs.

    :meth:`stage` yields ``(offset, device_array, host_array)`` for each ``(offset, host_array)``;
    the device array is valid until the next item is requested (its buffer is then reused), so a
    consumer that keeps a chunk must copy it.
    """

    def __init__(self, ops: DeviceOps, depth: int = DEPTH):
        if depth < 2:
            raise ValueError(f"depth must be at least 2, got {depth}")
        self.ops = ops
        self.depth = depth
        self.slots = [_Slot(ops) for _ in range(depth)]
        self.stream = ops.copy_stream()
        self.bytes_copied = 0

    def _reserve(self, slot: _Slot, nbytes: int) -> None:
        nbytes = max(nbytes, 1)  # an empty chunk still gets buffers to view
        if nbytes <= slot.capacity:
            return
        if slot.used:  # the old buffers may still be read: wait before dropping them
            self.ops.synchronize(slot.released)
            self.ops.synchronize(slot.copied)
        slot.pinned = self.ops.pinned(nbytes)
        slot.device = self.ops.device(nbytes)
        slot.capacity = nbytes

    def _issue(self, slot: _Slot, host: np.ndarray) -> Any:
        """Start copying ``host`` into ``slot``; returns the device array it will hold."""
        order: Literal["C", "F"] = (
            "F" if host.flags.f_contiguous and not host.flags.c_contiguous else "C"
        )
        nbytes = host.nbytes
        if slot.used:
            # The pinned buffer is overwritten below: its previous copy must have completed.
            self.ops.synchronize(slot.copied)
        self._reserve(slot, nbytes)
        assert slot.pinned is not None
        staged = slot.pinned[:nbytes].view(host.dtype).reshape(host.shape, order=order)
        with annotate("pinned_fill"):
            _fill(staged, host)
        if slot.used:
            # The device buffer is overwritten: the kernels that read it must be done.
            self.ops.wait(self.stream, slot.released)
        self.ops.copy_async(slot.device, slot.pinned, nbytes, self.stream)
        self.ops.record(slot.copied, self.stream)
        slot.used = True
        self.bytes_copied += nbytes
        return self.ops.view(slot.device, host.shape, host.dtype, order)

    def stage(self, chunks: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, Any, Any]]:
        """``(offset, device array, host array)`` for every ``(offset, array)`` of ``chunks``,
        in order, with up to ``depth - 1`` copies in flight ahead of the consumer. Arrays that
        are not NumPy arrays (already on the device) pass through, as ``(offset, a, a)``."""
        pending: deque[tuple[int, _Slot, Any, np.ndarray]] = deque()
        n = 0
        consumer = self.ops.current_stream()

        def hand_over() -> Iterator[tuple[int, Any, Any]]:
            offset, slot, array, host = pending.popleft()
            self.ops.wait(consumer, slot.copied)  # on the device: the host does not block
            try:
                yield offset, array, host
            finally:  # also when the consumer stops early: close() then waits for its work
                self.ops.record(slot.released, consumer)

        for offset, chunk in chunks:
            if not isinstance(chunk, np.ndarray):
                while pending:
                    yield from hand_over()
                yield offset, chunk, chunk
                continue
            slot = self.slots[n % self.depth]
            n += 1
            pending.append((offset, slot, self._issue(slot, chunk), chunk))
            if len(pending) == self.depth - 1:
                yield from hand_over()
        while pending:
            yield from hand_over()

    def close(self) -> None:
        """Wait for every copy and every release, then drop the buffers."""
        for slot in self.slots:
            if slot.used:
                self.ops.synchronize(slot.copied)
                self.ops.synchronize(slot.released)
            slot.pinned = slot.device = None
            slot.capacity = 0
            slot.used = False
