"""The pinned, multi-buffered host-to-device pipeline (``gpuvgm._backends._staging``) on a
simulated device that runs queued work as late and in as odd an order as CUDA allows.

Streams are FIFO queues; nothing runs until the host waits on an event, except random steps
taken at every call (so the interleaving differs from seed to seed). A copy reads its pinned
source when it runs, and a "kernel" reads its device buffer when it runs, as on a GPU: reusing a
buffer before the work reading it has run gives wrong data here. The same checks with one of the
stager's waits removed must fail, or they would not show anything.
"""

from __future__ import annotations

import random
from collections import deque

import numpy as np
import pytest

from gpuvgm._backends._staging import Stager


class Event:
    def __init__(self):
        self.recorded = 0  # records enqueued
        self.fired = 0  # records that ran


class Buffer:
    def __init__(self, nbytes):
        self.data = np.zeros(nbytes, dtype=np.uint8)


class DeviceArray:
    def __init__(self, buffer, shape, dtype, order):
        self.buffer, self.shape, self.dtype, self.order = buffer, shape, np.dtype(dtype), order

    def read(self):
        n = int(np.prod(self.shape)) * self.dtype.itemsize
        return np.ndarray(self.shape, self.dtype, self.buffer.data[:n], order=self.order).copy()


class LazyDevice:
    """A :class:`~gpuvgm._backends._staging.DeviceOps` whose streams run only when they must."""

    def __init__(self, seed, *, skip_host_sync=False, skip_copy_waits=False):
        self.rng = random.Random(seed)
        self.streams: list[deque] = []
        self.default = self._stream()
        self.skip_host_sync = skip_host_sync
        self.skip_copy_waits = skip_copy_waits
        self.copy_streams: list[deque] = []

    def _stream(self):
        q: deque = deque()
        self.streams.append(q)
        return q

    # -- the scheduler
    def _runnable(self, q):
        if not q:
            return False
        kind, arg = q[0][0], q[0][1:]
        if kind == "wait":
            event, target = arg
            return event.fired >= target
        return True

    def _step(self):
        ready = [q for q in self.streams if self._runnable(q)]
        if not ready:
            return False
        op = self.rng.choice(ready).popleft()
        kind = op[0]
        if kind == "record":
            op[1].fired = op[2]
        elif kind == "run":
            op[1]()
        return True

    def _wander(self):
        for _ in range(self.rng.randrange(3)):
            self._step()

    def drain(self):
        while self._step():
            pass
        assert not any(self.streams), "deadlock: queued work waits for an event never recorded"

    # -- DeviceOps
    def copy_stream(self):
        q = self._stream()
        self.copy_streams.append(q)
        return q

    def current_stream(self):
        return self.default

    def event(self):
        return Event()

    def record(self, event, stream):
        self._wander()
        event.recorded += 1
        stream.append(("record", event, event.recorded))

    def wait(self, stream, event):
        self._wander()
        if self.skip_copy_waits and any(stream is q for q in self.copy_streams):
            return
        stream.append(("wait", event, event.recorded))

    def synchronize(self, event):
        if self.skip_host_sync:
            return
        while event.fired < event.recorded:
            assert self._step(), "deadlock on a host wait"

    def pinned(self, nbytes):
        return np.zeros(nbytes, dtype=np.uint8)

    def device(self, nbytes):
        return Buffer(nbytes)

    def view(self, buffer, shape, dtype, order):
        return DeviceArray(buffer, shape, dtype, order)

    def copy_async(self, dst, src, nbytes, stream):
        self._wander()

        def run():
            dst.data[:nbytes] = src[:nbytes]  # read when the copy runs, as a DMA does

        stream.append(("run", run))

    # -- what a consumer does with a staged chunk
    def kernel(self, array, out):
        self._wander()
        self.default.append(("run", lambda: out.append(array.read())))


def _chunks(seed, n_chunks=12, passthrough=False):
    rng = np.random.default_rng(seed)
    out = []
    offset = 0
    for i in range(n_chunks):
        n = int(rng.integers(0, 300)) if i % 4 else 0  # sizes vary, some chunks are empty
        order = "F" if i % 2 else "C"
        dtype = np.float32 if i % 3 == 0 else np.float64
        a = np.asarray(rng.normal(size=(n, 3)), dtype=dtype, order=order)
        if passthrough and i % 5 == 4:
            a = ("on device", a)  # not a NumPy array: passes through untouched
        out.append((offset, a))
        offset += n
    return out


def _run(device, chunks, depth):
    stager = Stager(device, depth=depth)
    got, offsets, hosts = [], [], []
    for offset, array, host in stager.stage(iter(chunks)):
        offsets.append(offset)
        hosts.append(host)
        if isinstance(array, tuple):
            got.append(array[1])
        else:
            device.kernel(array, got)
    stager.close()
    device.drain()
    return got, offsets, hosts, stager


@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("seed", range(25))
def test_every_chunk_arrives_intact_and_in_order(seed, depth):
    chunks = _chunks(seed, passthrough=seed % 2 == 1)
    got, offsets, hosts, stager = _run(LazyDevice(seed), chunks, depth)
    assert offsets == [o for o, _ in chunks]
    expected = [c[1] if isinstance(c, tuple) else c for _, c in chunks]
    # Pass-through items are reported in order but read here at once, kernels when they run:
    # compare as multisets keyed by offset order.
    assert len(got) == len(expected)
    keyed_got = sorted((g.shape[0], g.tobytes()) for g in got)
    keyed_exp = sorted((e.shape[0], e.tobytes()) for e in expected)
    assert keyed_got == keyed_exp
    for (_, c), h in zip(chunks, hosts, strict=True):
        assert h is c
    assert stager.bytes_copied == sum(c.nbytes for _, c in chunks if isinstance(c, np.ndarray))


def test_kernels_see_the_chunks_in_stream_order():
    chunks = _chunks(7, n_chunks=20)
    got, *_ = _run(LazyDevice(7), chunks, 3)
    for g, (_, c) in zip(got, chunks, strict=True):
        np.testing.assert_array_equal(g, c)


@pytest.mark.parametrize("fault", ["skip_host_sync", "skip_copy_waits"])
def test_the_simulation_catches_a_missing_wait(fault):
    """Without the host's wait on ``copied`` a pinned buffer is refilled before its copy ran;
    without the copy stream's wait on ``released`` a device buffer is refilled before the kernel
    read it. Either shows up as wrong data for some interleaving."""
    broken = 0
    for seed in range(30):
        chunks = _chunks(seed, n_chunks=16)
        got, *_ = _run(LazyDevice(seed, **{fault: True}), chunks, 2)
        ok = len(got) == len(chunks) and all(
            g.shape == c.shape and np.array_equal(g, c)
            for g, (_, c) in zip(got, chunks, strict=False)
        )
        broken += not ok
    assert broken > 0


def test_stopping_early_leaves_no_work_behind():
    device = LazyDevice(3)
    stager = Stager(device, depth=3)
    got = []
    for i, (_, array, _) in enumerate(stager.stage(iter(_chunks(3)))):
        device.kernel(array, got)
        if i == 4:
            break
    stager.close()  # waits for the copies and for the kernels of the chunks handed over
    assert all(s.pinned is None and s.device is None for s in stager.slots)
    device.drain()
    assert len(got) == 5


def test_depth_below_two_is_refused():
    with pytest.raises(ValueError, match="depth"):
        Stager(LazyDevice(0), depth=1)
