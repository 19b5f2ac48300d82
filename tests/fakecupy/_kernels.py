"""``cupy.RawModule``: the kernels of the code it is given, run on the host emulation.

The module reads the ``__global__`` declarations (template parameters, ``__launch_bounds__`` and
parameter list) from the CUDA source it is constructed with, as NVRTC would, and resolves each
name expression against them. A :class:`Function` checks a launch as strictly as the hardware
would need it to be right, then calls the ``launch_<kernel>`` entry of the emulation library
(``tests/emulation/shim.cpp``) with the same grid, block and arguments:

* the grid and block are tuples of positive ints within CUDA's limits; the block is a whole number
  of warps (the emulation's shuffles need it) and within the kernel's ``__launch_bounds__``;
* ``args`` is a tuple with one entry per kernel parameter;
* a scalar parameter takes a value whose type CuPy would pass with exactly the parameter's C
  type: a NumPy scalar (or size-one NumPy array) of that dtype (``long long``: ``np.int64``;
  ``int``: ``np.int32``; ``unsigned int``: ``np.uint32``; ...), or a Python int for ``long long``
  and a float for ``double`` (CuPy sends those as int64 and float64). A mismatch, which CuPy
  would send with the wrong size, is refused;
* a pointer parameter takes a device array on the current device whose dtype is the pointee type
  (``T*`` with ``T = float``: float32; ``unsigned char*``: bool or uint8): CuPy would pass any
  dtype's pointer, the stand-in refuses the mismatch. A NumPy array is refused, as CuPy refuses
  one larger than one element. Arrays the kernel does not index through explicit strides must
  be C-contiguous;
* each kernel's documented extents (``kernels/*.cu``: partials ``(gridDim.x, gridDim.y, slots)``,
  outputs ``(n_rows, gridDim.y)``, strided inputs of at least ``n_rows`` rows whose strides are the
  array's own...) are checked against the arrays' sizes before the launch;
* after the launch, the guard bands of every array passed must be intact.

Any violation raises ``TypeError`` or ``ValueError`` naming the kernel and the parameter.
"""

from __future__ import annotations

import ctypes
import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _memory
from ._core import ndarray

# C types of scalar parameters -> the NumPy dtype an argument must have.
SCALARS = {
    "long long": np.dtype(np.int64),
    "unsigned long long": np.dtype(np.uint64),
    "int": np.dtype(np.int32),
    "unsigned int": np.dtype(np.uint32),
    "double": np.dtype(np.float64),
    "float": np.dtype(np.float32),
}
# Pointee C types -> the dtypes a device array passed for a pointer may have.
POINTEES = {
    **{c: (d,) for c, d in SCALARS.items()},
    "unsigned char": (np.dtype(np.uint8), np.dtype(np.bool_)),
}
_CTYPES = {
    "long long": ctypes.c_longlong,
    "unsigned long long": ctypes.c_ulonglong,
    "int": ctypes.c_int,
    "unsigned int": ctypes.c_uint,
    "double": ctypes.c_double,
    "float": ctypes.c_float,
}
# Template typename arguments -> the code the launch_* entries take (the size in bytes).
_TYPENAMES = {"float": 4, "double": 8, "int": 4, "long long": 8}
# (kernel, parameter) indexed through explicit strides: any layout; every other array is dense.
_STRIDED = {"x", "alpha", ("inverse", "component")}
_MAX_GRID = (2**31 - 1, 65535, 65535)
_MAX_BLOCK = (1024, 1024, 64)

_GLOBAL = re.compile(
    r"(?:template\s*<(?P<template>[^<>]*)>\s*)?__global__\s+void\s+"
    r"(?:__launch_bounds__\s*\((?P<bounds>[^()]*)\)\s*)?(?P<name>\w+)\s*\((?P<params>[^()]*)\)\s*\{"
)
_CONSTEXPR = re.compile(r"constexpr\s+int\s+(\w+)\s*=\s*(\w+)\s*;")
# A define's default in the sources (``#ifndef NAME`` / ``#define NAME VALUE``).
_DEFAULT = re.compile(r"^\s*#ifndef\s+(\w+)\s*\n\s*#define\s+\1\s+(\S+)\s*$", re.MULTILINE)
_NAME_EXPR = re.compile(r"^\s*gpuvgm::(?P<name>\w+)\s*(?:<(?P<args>.*)>)?\s*$")

_launch_lock = (
    threading.Lock()
)  # the emulation's __shared__ arrays are static: one launch at a time


class CompileException(Exception):
    """``cupy.cuda.compiler.CompileException``."""


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # the C type, template parameters not yet substituted ("T", "long long", ...)
    pointer: bool
    const: bool


@dataclass(frozen=True)
class Declaration:
    name: str
    template: tuple[tuple[str, str], ...]  # (kind "typename"/"int", name)
    params: tuple[Param, ...]
    max_threads: int


def _param(text: str) -> Param:
    text = " ".join(text.replace("__restrict__", " ").replace("*", " * ").split())
    pointer = "*" in text.split()
    words = [w for w in text.split() if w != "*"]
    const = words[0] == "const"
    if const:
        words = words[1:]
    return Param(name=words[-1], type=" ".join(words[:-1]), pointer=pointer, const=const)


def parse_kernels(code: str) -> dict[str, Declaration]:
    """The ``__global__`` functions of ``code``, by name."""
    macros = {m.group(1): m.group(2) for m in _DEFAULT.finditer(code)}
    constants = {
        m.group(1): int(macros.get(m.group(2), m.group(2))) for m in _CONSTEXPR.finditer(code)
    }
    out = {}
    for m in _GLOBAL.finditer(code):
        template = []
        for part in (m.group("template") or "").split(","):
            words = part.split()
            if words:
                template.append(
                    ("typename" if words[0] in ("typename", "class") else words[0], words[-1])
                )
        bounds = (m.group("bounds") or "1024").split(",")[0].strip()
        max_threads = int(bounds) if bounds.isdigit() else constants[bounds]
        params = tuple(_param(p) for p in m.group("params").split(",") if p.strip())
        out[m.group("name")] = Declaration(m.group("name"), tuple(template), params, max_threads)
    return out


def _split_args(text: str | None) -> list[str]:
    return [" ".join(a.split()) for a in text.split(",")] if text else []


class Function:
    """``cupy.RawKernel``-like callable for one name expression of a :class:`RawModule`."""

    def __init__(self, expression: str, decl: Declaration, bound: dict[str, Any]):
        self.expression = expression
        self.decl = decl
        self.bound = bound  # template parameter name -> "float"/"double"/... or an int
        self.params = tuple(
            Param(p.name, str(bound.get(p.type, p.type)), p.pointer, p.const) for p in decl.params
        )
        for p in self.params:
            if p.type not in (POINTEES if p.pointer else SCALARS):
                raise CompileException(
                    f"{expression}: parameter {p.name} has unknown type {p.type}"
                )

    @property
    def attributes(self) -> dict[str, int]:
        return {
            "num_regs": _memory.state.num_regs,
            "max_threads_per_block": self.decl.max_threads,
            "shared_size_bytes": 0,
            "local_size_bytes": 0,
        }

    @property
    def max_threads_per_block(self) -> int:
        return self.decl.max_threads

    @property
    def num_regs(self) -> int:
        return _memory.state.num_regs

    def _fail(self, message: str, exc: type[Exception] = TypeError) -> Exception:
        return exc(f"{self.expression}: {message}")

    def _dims(self, dims: Any, what: str, limits: tuple[int, ...]) -> tuple[int, int, int]:
        if isinstance(dims, (int, np.integer)):
            dims = (dims,)
        if not isinstance(dims, tuple) or not 1 <= len(dims) <= 3:
            raise self._fail(f"{what} must be an int or a tuple of 1 to 3 ints, got {dims!r}")
        if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in dims):
            raise self._fail(f"{what} must hold ints, got {dims!r}")
        full = [int(d) for d in dims] + [1] * (3 - len(dims))
        out = (full[0], full[1], full[2])
        for d, limit in zip(out, limits, strict=True):
            if not 1 <= d <= limit:
                raise self._fail(f"{what} {out} out of range (each 1 to {limits})", ValueError)
        return out

    def _scalar(self, p: Param, value: Any) -> Any:
        # CuPy's conversion (cupy/cuda/function.pyx, _pointer): a NumPy scalar or a size-one
        # NumPy array goes by value with its own itemsize; a Python int (bool included) as
        # int64, a float as float64; anything else is refused.
        if isinstance(value, ndarray) or (isinstance(value, np.ndarray) and value.size != 1):
            raise self._fail(f"parameter {p.name} ({p.type}) got an array {type(value).__name__}")
        if isinstance(value, (np.generic, np.ndarray)):
            dtype = value.dtype
        elif isinstance(value, int):
            dtype = np.dtype(np.int64)
        elif isinstance(value, float):
            dtype = np.dtype(np.float64)
        else:
            raise self._fail(f"parameter {p.name} ({p.type}): unsupported type {type(value)}")
        if dtype != SCALARS[p.type]:
            raise self._fail(
                f"parameter {p.name} is {p.type} ({SCALARS[p.type]}), the argument is {dtype}"
            )
        return np.asarray(value, dtype=dtype).reshape(()).item()

    def _pointer(self, p: Param, value: Any) -> ndarray:
        from .cuda import Device

        if not isinstance(value, ndarray):
            raise self._fail(
                f"parameter {p.name} ({'const ' if p.const else ''}{p.type}*) needs a device "
                f"array, got {type(value).__name__}"
            )
        if value._mem.device_id != Device().id:
            raise self._fail(
                f"parameter {p.name}: array on device {value._mem.device_id}", ValueError
            )
        if value.dtype not in POINTEES[p.type]:
            raise self._fail(f"parameter {p.name} is {p.type}*, the array's dtype is {value.dtype}")
        strided = p.name in _STRIDED or (self.decl.name, p.name) in _STRIDED
        if not strided and not value.flags.c_contiguous:
            raise self._fail(
                f"parameter {p.name}: the kernel indexes it densely, the array is not C-contiguous",
                ValueError,
            )
        if not p.const and not value.flags.writeable:
            raise self._fail(f"parameter {p.name}: read-only array for an output", ValueError)
        return value

    def __call__(
        self, grid: Any, block: Any, args: Any, *, shared_mem: int = 0, stream: Any = None
    ) -> None:
        from .cuda import Stream, get_current_stream

        state = _memory.state
        if state.library is None:
            raise RuntimeError(
                "fakecupy has no emulation library: call fakecupy.reset(library=...)"
            )
        g = self._dims(grid, "grid", _MAX_GRID)
        b = self._dims(block, "block", _MAX_BLOCK)
        threads = b[0] * b[1] * b[2]
        if threads > self.decl.max_threads:
            raise self._fail(
                f"block of {threads} threads over __launch_bounds__({self.decl.max_threads})",
                ValueError,
            )
        if threads % 32:
            raise self._fail(
                f"block of {threads} threads is not a whole number of warps", ValueError
            )
        if shared_mem:
            raise self._fail("dynamic shared memory is not used by these kernels", ValueError)
        if stream is not None and (
            not isinstance(stream, Stream) or stream is not get_current_stream()
        ):
            raise self._fail(
                "launches on another stream than the current one are not simulated",
                NotImplementedError,
            )
        if not isinstance(args, tuple):
            raise self._fail(f"args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.params):
            raise self._fail(
                f"the kernel takes {len(self.params)} arguments "
                f"({', '.join(p.name for p in self.params)}), got {len(args)}"
            )
        values: dict[str, Any] = {}
        c_args: list[Any] = []
        for p, a in zip(self.params, args, strict=True):
            if p.pointer:
                arr = self._pointer(p, a)
                values[p.name] = arr
                c_args.append(arr.data.ptr)
            else:
                v = self._scalar(p, a)
                values[p.name] = v
                c_args.append(v)
        _check_extents(self, g, values)
        codes = [
            _TYPENAMES[self.bound[name]] if kind == "typename" else int(self.bound[name])
            for kind, name in self.decl.template
        ]
        fn = _entry(state.library, self.decl, len(codes))
        with _launch_lock:
            rc = fn(*codes, *g, *b, *c_args)
        if rc == -1:
            raise self._fail(
                "the emulation library has no instance of this kernel", NotImplementedError
            )
        if rc != 0:
            raise self._fail(f"the emulation refused the launch (code {rc})", RuntimeError)
        for p in self.params:
            if p.pointer and not values[p.name]._mem.intact():
                raise self._fail(
                    f"the kernel wrote outside the array passed as {p.name}", RuntimeError
                )
        state.launches.append((self.expression, g, b))


_entries: dict[tuple[int, str], Any] = {}


def _entry(library: Any, decl: Declaration, n_template: int) -> Any:
    """The library's ``launch_<kernel>``, its argument types derived from the declaration."""
    key = (id(library), decl.name)
    if key not in _entries:
        fn = getattr(library, f"launch_{decl.name}")
        fn.argtypes = (
            [ctypes.c_int] * n_template
            + [ctypes.c_uint] * 6
            + [ctypes.c_void_p if p.pointer else _CTYPES[p.type] for p in decl.params]
        )
        fn.restype = ctypes.c_int
        _entries[key] = fn
    return _entries[key]


# ------------------------------------------------------------------------------------------------
# The kernels' documented extents
# ------------------------------------------------------------------------------------------------


def _check_extents(f: Function, grid: tuple[int, int, int], v: dict[str, Any]) -> None:
    name = f.decl.name
    gx, gy, gz = grid

    def fail(message: str) -> None:
        raise ValueError(f"{f.expression}: {message}")

    def need(param: str, count: int) -> None:
        if v[param].size < count:
            fail(f"{param} holds {v[param].size} elements, the launch reads or writes {count}")

    def strided(param: str, rows: int, row_stride: int, col_stride: int, max_col: int) -> None:
        a = v[param]
        if a.ndim != 2:
            fail(f"{param} is {a.ndim}-D; the kernel reads a 2-D (rows, columns) array")
        if rows > a.shape[0] or max_col >= a.shape[1]:
            fail(f"{param} has shape {a.shape}; the launch reads {rows} rows and column {max_col}")
        own = (a.strides[0] // a.itemsize, a.strides[1] // a.itemsize)
        for axis, (given, extent) in enumerate(((row_stride, rows), (col_stride, max_col + 1))):
            if extent > 1 and given != own[axis]:
                fail(f"{param}: stride {given} along axis {axis}, the array's is {own[axis]}")

    if gz != 1:
        fail(f"gridDim.z = {gz}; the kernels use a 2-D grid")
    k = f.bound.get("K")
    if name == "reduce_partials":
        if gy != 1:
            fail("one block per slot: a 1-D grid")
        if gx > v["n_slots"]:
            fail(f"{gx} blocks for {v['n_slots']} slots")
        need("partials", v["n_blocks"] * v["n_slots"])
        need("out", v["n_slots"])
        return
    if name == "sample_candidates":
        if gy != 1:
            fail("a 1-D grid")
        for p in ("rows", "words"):
            need(p, v["n_rows"])
        need("count", 1)
        return
    if name == "inverse":
        n_rows, kk = v["n_rows"], v["n_components"]
        strided("alpha", n_rows, v["a_row_stride"], v["a_col_stride"], gy - 1)
        strided("component", n_rows, v["c_row_stride"], v["c_col_stride"], gy - 1)
        need("params", gy * 2 * kk)
        need("n_valid", gy)
        need("out", n_rows * gy)
        return
    # Kernels over x (n_rows, columns[gridDim.y]) with explicit strides.
    need("columns", gy)
    columns = v["columns"]._a[:gy]
    if (columns < 0).any():
        fail("negative column index")
    n_rows = v["n_rows"]
    strided("x", n_rows, v["row_stride"], v["col_stride"], int(columns.max()))
    if name in ("moments_sums", "moments_m2"):
        need("partials", gx * gy * (5 if name == "moments_sums" else 1))
        if name == "moments_m2":
            need("mean", gy)
    elif name in ("estep_stats", "assign_stats"):
        need("params", gy * (2 + (3 * k if name == "estep_stats" else k)))
        need("partials", gx * gy * (3 * k + 3))
    elif name == "log_resp":
        need("params", gy * (2 + 3 * k))
        need("out", n_rows * gy * k)
    elif name == "transform":
        need("params", gy * (2 + 5 * k))
        need("info", 3 * gy)
        need("counts", 2 * gy)
        for p in ("normalized", "component", "null"):
            need(p, n_rows * gy)
    else:
        fail("no extent check for this kernel: add one")


# ------------------------------------------------------------------------------------------------
# The module
# ------------------------------------------------------------------------------------------------


class RawModule:
    """``cupy.RawModule(code=..., options=..., name_expressions=...)``."""

    def __init__(
        self,
        code: str | None = None,
        *,
        path: str | None = None,
        options: tuple[str, ...] = (),
        backend: str = "nvrtc",
        translate_cucomplex: bool = False,
        enable_cooperative_groups: bool = False,
        name_expressions: Any = None,
        jitify: bool = False,
    ):
        if code is None or path is not None:
            raise NotImplementedError("the stand-in compiles code strings only")
        if not isinstance(options, tuple) or not all(isinstance(o, str) for o in options):
            raise TypeError(f"options must be a tuple of str, got {options!r}")
        # The emulation library is built from the same files with their #ifndef defaults: a define
        # that restates a default (the CUDA backend passes its constants) is honoured, any other
        # would need a library built with it.
        defaults = {f"-D{name}={value}" for name, value in _DEFAULT.findall(code)}
        refused = [o for o in options if o.startswith("-D") and o not in defaults]
        if refused:
            raise NotImplementedError(
                f"the emulation library is built with the sources' defaults, not {refused}"
            )
        self.code = code
        self.options = options
        self.name_expressions = None if name_expressions is None else list(name_expressions)
        self.declarations = parse_kernels(code)
        self._functions: dict[str, Function] = {}

    def compile(self, log_stream: Any = None) -> None:
        for expression in self.name_expressions or []:
            self._resolve(expression)

    def _resolve(self, expression: str) -> Function:
        if expression in self._functions:
            return self._functions[expression]
        m = _NAME_EXPR.match(expression)
        if m is None:
            raise CompileException(f"{expression!r} is not a gpuvgm:: name expression")
        decl = self.declarations.get(m.group("name"))
        if decl is None:
            raise CompileException(f"{expression}: no __global__ {m.group('name')} in the code")
        args = _split_args(m.group("args"))
        if len(args) != len(decl.template):
            raise CompileException(
                f"{expression}: {decl.name} takes {len(decl.template)} template arguments"
            )
        bound: dict[str, Any] = {}
        for (kind, name), arg in zip(decl.template, args, strict=True):
            if kind == "typename":
                if arg not in _TYPENAMES:
                    raise CompileException(f"{expression}: unsupported type argument {arg!r}")
                bound[name] = arg
            else:
                bound[name] = int(arg)
        self._functions[expression] = Function(expression, decl, bound)
        return self._functions[expression]

    def get_function(self, name: str) -> Function:
        if self.name_expressions is not None and name not in self.name_expressions:
            raise KeyError(f"{name} is not one of the module's name expressions")
        return self._resolve(name)
