"""``cupy.cuda``: the device, streams and events, ``runtime`` and ``memory``.

One device (id 0). Work runs when it is enqueued (kernels and copies are synchronous), so streams
and events only check how they are used: ``record``/``wait_event`` take what CUDA takes, and a
copy's stream must be a live one. The ordering of the staging pipeline is tested on a lazy device
in ``tests/backends/test_staging.py``; here every order is trivially right.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any, ClassVar

from . import memory, runtime

__all__ = ["Device", "Event", "Stream", "get_current_stream", "memory", "runtime"]

_local = threading.local()


def _current_id() -> int:
    return getattr(_local, "device", 0)


class Device:
    """``cupy.cuda.Device``: the current one with no argument; a context manager."""

    def __init__(self, device: int | None = None):
        self.id = _current_id() if device is None else int(device)
        if not 0 <= self.id < runtime.getDeviceCount():
            raise runtime.CUDARuntimeError(f"cudaErrorInvalidDevice: device {self.id}")
        self._previous: list[int] = []

    @property
    def compute_capability(self) -> str:
        return "90"

    @property
    def attributes(self) -> dict[str, int]:
        props = runtime.getDeviceProperties(self.id)
        return {
            "MultiProcessorCount": props["multiProcessorCount"],
            "MaxThreadsPerBlock": props["maxThreadsPerBlock"],
            "MaxRegistersPerMultiprocessor": props["regsPerMultiprocessor"],
        }

    def synchronize(self) -> None:
        """Everything ran when it was enqueued."""

    def use(self) -> None:
        _local.device = self.id

    def __enter__(self) -> Device:
        self._previous.append(_current_id())
        _local.device = self.id
        return self

    def __exit__(self, *exc: Any) -> None:
        _local.device = self._previous.pop()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


_stream_ptrs = itertools.count(0x5000)


class Stream:
    """``cupy.cuda.Stream``; ``ptr`` 0 is the legacy default stream."""

    live: ClassVar[weakref.WeakValueDictionary[int, Stream]] = weakref.WeakValueDictionary()

    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False):
        self.ptr = 0 if null else next(_stream_ptrs)
        self.non_blocking = non_blocking
        Stream.live[self.ptr] = self

    def wait_event(self, event: Any) -> None:
        if not isinstance(event, Event):
            raise TypeError(f"wait_event takes an Event, got {type(event).__name__}")

    def record(self, event: Any = None) -> Event:
        event = Event() if event is None else event
        event.record(self)
        return event

    def synchronize(self) -> None:
        """Everything ran when it was enqueued."""

    @property
    def done(self) -> bool:
        return True


_null = Stream(null=True)


def get_current_stream(device_id: int = -1) -> Stream:
    return _null


class Event:
    """``cupy.cuda.Event``."""

    def __init__(
        self, block: bool = False, disable_timing: bool = False, interprocess: bool = False
    ):
        self.recorded = 0

    def record(self, stream: Any = None) -> None:
        if stream is not None and not isinstance(stream, Stream):
            raise TypeError(f"Event.record takes a Stream, got {type(stream).__name__}")
        self.recorded += 1

    def synchronize(self) -> None:
        """Recorded work already ran."""

    @property
    def done(self) -> bool:
        return True
