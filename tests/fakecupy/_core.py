"""``cupy.ndarray`` and the array functions the CUDA backend calls.

A device array holds a NumPy view of its allocation's data (``_memory.Allocation``) and is *not*
a NumPy array: as with CuPy, ``np.asarray(device_array)``, NumPy functions and ufuncs on it and
arithmetic with NumPy arrays raise ``TypeError``, and ``isinstance(a, np.ndarray)`` is False.
Only what ``gpuvgm/_backends`` uses is implemented; anything else is an ``AttributeError``.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import _memory
from ._memory import GUARD, Allocation, MemoryPointer

_IMPLICIT = (
    "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy "
    "array explicitly."
)


def _shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(operator.index(s) for s in shape)


def _layout(a: np.ndarray, order: str | None) -> str:
    """CuPy's choice for order 'K'/'A'/None: Fortran when only Fortran-contiguous, else C."""
    if order is None or order.upper() in ("K", "A"):
        return "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
    if order.upper() not in ("C", "F"):
        raise ValueError(f"order not understood: {order!r}")
    return order.upper()


class ndarray:
    """``cupy.ndarray`` over simulated device memory."""

    __array_ufunc__ = None  # NumPy ufuncs and operators with NumPy arrays refuse device arrays
    _a: np.ndarray
    _mem: Allocation

    def __init__(
        self,
        shape: Any,
        dtype: Any = float,
        memptr: MemoryPointer | None = None,
        strides: Sequence[int] | None = None,
        order: str = "C",
    ):
        shape = _shape(shape)
        dtype = np.dtype(dtype)
        if order not in ("C", "F"):
            raise ValueError(f"order must be 'C' or 'F', got {order!r}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if memptr is None:
            memptr = _memory.alloc(nbytes)
        if not isinstance(memptr, MemoryPointer):
            raise TypeError(f"memptr must be a MemoryPointer, got {type(memptr).__name__}")
        if strides is None:
            low, high = 0, nbytes
        else:
            spans = [(n - 1) * s for n, s in zip(shape, strides, strict=True) if n > 0]
            low = sum(s for s in spans if s < 0)
            high = sum(s for s in spans if s > 0) + (dtype.itemsize if nbytes else 0)
        if memptr.offset + low < 0 or memptr.offset + high > memptr.mem.size:
            raise ValueError(
                f"an array of shape {shape} and dtype {dtype} at byte {memptr.offset} does not fit "
                f"in its allocation of {memptr.mem.size} bytes"
            )
        self._a = np.ndarray(
            shape,
            dtype,
            buffer=memptr.mem.buf,
            offset=GUARD + memptr.offset,
            strides=None if strides is None else tuple(strides),
            order=order,
        )
        self._mem = memptr.mem

    @classmethod
    def _view(cls, a: np.ndarray, mem: Allocation) -> ndarray:
        out = cls.__new__(cls)
        out._a = a
        out._mem = mem
        return out

    # -- attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)

    @property
    def T(self) -> ndarray:
        return ndarray._view(self._a.T, self._mem)

    @property
    def device(self) -> Any:
        from .cuda import Device

        return Device(self._mem.device_id)

    @property
    def data(self) -> MemoryPointer:
        return MemoryPointer(self._mem, int(self._a.ctypes.data) - self._mem.ptr)

    # -- to the host
    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError(_IMPLICIT)

    def get(self, stream: Any = None, order: str = "C", out: Any = None) -> np.ndarray:
        if out is not None:
            raise NotImplementedError("get(out=...) is not part of the stand-in")
        return np.array(self._a, order=_layout(self._a, order), copy=True)

    def _scalar(self) -> Any:
        if self.size != 1:
            raise TypeError("only size-1 device arrays convert to Python scalars")
        return self._a.reshape(()).item()

    def __int__(self) -> int:
        return int(self._scalar())

    def __float__(self) -> float:
        return float(self._scalar())

    def __bool__(self) -> bool:
        return bool(self._scalar())

    def item(self) -> Any:
        return self._scalar()

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self) -> Iterator[ndarray]:
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self) -> str:
        return f"fakecupy.ndarray(shape={self.shape}, dtype={self.dtype})"

    # -- indexing
    def _index(self, key: Any) -> Any:
        if isinstance(key, tuple):
            return tuple(self._index(k) for k in key)
        if isinstance(key, ndarray):
            _check_device(key, "index")
            return key._a
        if isinstance(key, (np.ndarray, list)):  # CuPy uploads host index arrays
            return np.asarray(key)
        return key

    def __getitem__(self, key: Any) -> ndarray:
        got = self._a[self._index(key)]
        if isinstance(got, np.ndarray) and np.may_share_memory(got, self._mem.buf):
            return ndarray._view(got, self._mem)  # basic indexing: a view
        return _upload(np.asarray(got), "C")  # advanced indexing (or an element): a new array

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(value, ndarray):
            _check_device(value, "value")
            self._a[self._index(key)] = value._a
        elif isinstance(value, (int, float, bool, np.generic)):
            self._a[self._index(key)] = value
        else:
            raise TypeError(
                f"the stand-in assigns device arrays or scalars into device arrays, not "
                f"{type(value).__name__} (upload it with cupy.asarray first)"
            )

    # -- conversions
    def astype(
        self,
        dtype: Any,
        order: str = "K",
        casting: Any = None,
        subok: Any = None,
        copy: bool = True,
    ) -> ndarray:
        dtype = np.dtype(dtype)
        if not copy and dtype == self.dtype:
            return self
        return _upload(self._a.astype(dtype), _layout(self._a, order))

    def copy(self, order: str = "C") -> ndarray:
        return _upload(self._a, _layout(self._a, order))

    def fill(self, value: Any) -> None:
        self._a.fill(value)

    def reshape(self, *shape: Any, order: str = "C") -> ndarray:
        new = shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape
        got = self._a.reshape(new, order=order)
        if np.may_share_memory(got, self._mem.buf):
            return ndarray._view(got, self._mem)
        return _upload(got, "C")

    def ravel(self, order: str = "C") -> ndarray:
        return self.reshape(-1, order=order)


def _check_device(a: ndarray, what: str) -> None:
    from .cuda import Device

    if a._mem.device_id != Device().id:
        raise ValueError(f"{what} is on device {a._mem.device_id}, not the current device")


def _upload(host: np.ndarray, order: str) -> ndarray:
    """A new device array holding a copy of ``host`` (C or F layout)."""
    out = ndarray(host.shape, host.dtype, order=order)
    out._a[...] = host
    return out


def _device_arrays(arrays: Sequence[Any], what: str) -> list[ndarray]:
    arrays = list(arrays)
    for a in arrays:
        if not isinstance(a, ndarray):
            raise TypeError(f"{what}: only CuPy arrays are accepted, got {type(a).__name__}")
        _check_device(a, what)
    return arrays


# ------------------------------------------------------------------------------------------------
# Functions
# ------------------------------------------------------------------------------------------------


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: Any = None) -> np.ndarray:
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out)
    return np.asarray(a, order=order)


def array(
    obj: Any,
    dtype: Any = None,
    copy: bool = True,
    order: str | None = "K",
    subok: bool = False,
    ndmin: int = 0,
    *,
    blocking: bool = False,
) -> ndarray:
    if ndmin:
        raise NotImplementedError("array(ndmin=...) is not part of the stand-in")
    if isinstance(obj, ndarray):
        _check_device(obj, "array")
        if not copy and (dtype is None or np.dtype(dtype) == obj.dtype):
            return obj
        return obj.astype(obj.dtype if dtype is None else dtype, order=order or "K")
    host = np.asarray(obj, dtype=dtype)
    return _upload(host, _layout(host, order))


def asarray(
    a: Any, dtype: Any = None, order: str | None = None, *, blocking: bool = False
) -> ndarray:
    return array(a, dtype, copy=False, order=order, blocking=blocking)


def empty(shape: Any, dtype: Any = float, order: str = "C") -> ndarray:
    return ndarray(shape, dtype, order=order)


def zeros(shape: Any, dtype: Any = float, order: str = "C") -> ndarray:
    out = ndarray(shape, dtype, order=order)
    out._a.fill(0)
    return out


def arange(start: Any, stop: Any = None, step: Any = 1, dtype: Any = None) -> ndarray:
    return _upload(np.arange(start, stop, step, dtype=dtype), "C")


def concatenate(
    tup: Sequence[Any], axis: int = 0, out: Any = None, *, dtype: Any = None
) -> ndarray:
    if out is not None:
        raise NotImplementedError("concatenate(out=...) is not part of the stand-in")
    arrays = _device_arrays(tup, "concatenate")
    return _upload(np.concatenate([a._a for a in arrays], axis=axis, dtype=dtype), "C")


def stack(tup: Sequence[Any], axis: int = 0, out: Any = None, *, dtype: Any = None) -> ndarray:
    if out is not None:
        raise NotImplementedError("stack(out=...) is not part of the stand-in")
    arrays = _device_arrays(tup, "stack")
    return _upload(np.stack([a._a for a in arrays], axis=axis, dtype=dtype), "C")


def argsort(a: Any, axis: int = -1, kind: Any = None) -> ndarray:
    (a,) = _device_arrays([a], "argsort")
    return _upload(np.argsort(a._a, axis=axis, kind="stable"), "C")
