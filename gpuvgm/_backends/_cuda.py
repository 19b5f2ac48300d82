"""CUDA backend: the O(rows x K) passes as raw CUDA kernels, launched through CuPy.

Same functions and signatures as :mod:`gpuvgm._backends._numpy` (each kernel's NumPy twin);
memory is :mod:`gpuvgm._backends._cuda_memory`. Chunks may be NumPy arrays (copied to the current
device, results returned as NumPy) or CuPy arrays on the current device (results stay there,
except the small statistics, which always come back as NumPy).

Kernels are read from the package ``gpuvgm.kernels`` (the top-level ``kernels/``) with
:mod:`importlib.resources` and compiled by NVRTC once per (device, family, K, defines); threads
per block and the largest K go in as ``-D`` defines. The table packers are plain NumPy, so the
host emulation tests feed the kernels exactly what this module does. Importing this module needs
neither CuPy nor a GPU and compiles nothing.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .._errors import DataError, DataTypeError
from .._model import (
    EStepParams,
    Moments,
    Stats,
    TransformParams,
    inverse_scales,
    neg_half_precisions,
    valid_tables,
)
from .._profiling import annotate
from .._validation import MAX_COMPONENTS
from . import _cuda_memory
from ._api import (
    check_centers,
    check_chunk,
    check_columns,
    check_inverse_args,
    check_k,
    check_sample_args,
)
from ._cuda_memory import ensure_cupy
from ._cuda_memory import unavailable_reason as unavailable_reason  # the backend's API

try:
    import cupy
except ImportError:  # the compile test and the emulation tests use this module without CuPy
    cupy = None

NAME = "cupy"
memory = _cuda_memory  # the Memory protocol (gpuvgm._backends._api): device memory
logger = logging.getLogger("gpuvgm")

#: Threads per block of every kernel (``-DGPUVGM_THREADS``, the kernels' ``kMaxThreads``; a
#: multiple of 32). The largest K is :data:`gpuvgm._validation.MAX_COMPONENTS`
#: (``-DGPUVGM_MAX_K``; valid components travel as a 32-bit mask).
THREADS = 256
#: Relative distance to a cdf boundary under which a draw is redone in double
#: (``sample_valid_fast`` in ``vgm_math.cuh``); float errors stay below 1e-5.
SAMPLE_MARGIN = 2.0**-14
#: Rows per thread and iteration of the E-step kernel (``EstepMath<float>::kRows``).
_ESTEP_ROWS = 4
#: Smallest piece of a chunk that an out-of-memory retry splits down to.
_MIN_PIECE_ROWS = 1 << 16

COMPILE_OPTIONS = ("-std=c++17",)
_REALS = ("float", "double")
_FAMILY_FILES = {
    "moments": ("estep.cu",),
    "estep": ("estep.cu",),
    "transform": ("transform.cu", "inverse.cu"),
    "sample": ("sample.cu",),
}
_INCLUDE = re.compile(r'^\s*#include\s+"([^"]+)"\s*$')

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Kernel loading
# --------------------------------------------------------------------------------------------


def compile_options(defines: tuple[str, ...] = ()) -> tuple[str, ...]:
    """NVRTC's options for a module (the nvcc compile test passes the same): the constants
    defined here as ``-D`` defines, then ``defines`` (``NAME=VALUE``, for benchmarks)."""
    constants = (f"GPUVGM_THREADS={THREADS}", f"GPUVGM_MAX_K={MAX_COMPONENTS}")
    return COMPILE_OPTIONS + tuple(f"-D{d}" for d in (*constants, *defines))


def kernel_source(name: str, _seen: set[str] | None = None) -> str:
    """The text of ``kernels/<name>`` with its local ``#include "..."`` inlined.

    NVRTC gets the code as a string, so local headers are pasted in (once each) and ``#line``
    directives keep compiler messages pointing at the real file and line.
    """
    seen = set() if _seen is None else _seen
    text = importlib.resources.files("gpuvgm.kernels").joinpath(name).read_text("utf-8")
    out = [f'#line 1 "{name}"']
    for lineno, line in enumerate(text.splitlines(), start=1):
        match = _INCLUDE.match(line)
        if match is None:
            out.append(line)
            continue
        header = match.group(1)
        if header not in seen:
            seen.add(header)
            out.append(kernel_source(header, seen))
        out.append(f'#line {lineno + 1} "{name}"')
    return "\n".join(out)


def family_source(family: str) -> str:
    """The code of one compiled family (its .cu files, headers inlined once)."""
    seen: set[str] = set()
    return "\n".join(kernel_source(f, seen) for f in _FAMILY_FILES[family])


def kernel_names(family: str, n_components: int = 0) -> tuple[str, ...]:
    """The template instances (NVRTC name expressions) one module of ``family`` holds."""
    k = n_components
    if family == "moments":
        return (
            "gpuvgm::reduce_partials",
            *(f"gpuvgm::{fn}<{t}>" for fn in ("moments_sums", "moments_m2") for t in _REALS),
        )
    if family == "sample":  # reads no data: one instance, whatever the dtype
        return ("gpuvgm::sample_candidates",)
    check_k(k)
    if family == "estep":
        return (
            "gpuvgm::reduce_partials",
            *(f"gpuvgm::estep_stats<{t}, {ct}, {k}>" for t in _REALS for ct in _REALS),
            *(f"gpuvgm::assign_stats<{t}, {k}>" for t in _REALS),
            *(f"gpuvgm::log_resp<{t}, {k}>" for t in _REALS),
        )
    if family == "transform":
        return tuple(f"gpuvgm::transform<{t}, {k}>" for t in _REALS) + tuple(
            f"gpuvgm::inverse<{at}, {it}>" for at in _REALS for it in ("int", "long long")
        )
    raise ValueError(f"unknown kernel family {family!r}")


@functools.cache
def _module(device_id: int, family: str, n_components: int, defines: tuple[str, ...] = ()) -> Any:
    """The compiled module of ``family`` for K components on one device (memoized)."""
    names = kernel_names(family, n_components)
    logger.debug("compiling CUDA kernels %s (K=%d) for device %d", family, n_components, device_id)
    with cupy.cuda.Device(device_id):
        module = cupy.RawModule(
            code=family_source(family),
            options=compile_options(defines),
            name_expressions=list(names),
        )
        module.compile()
    return module


def _kernel(family: str, name: str, n_components: int = 0, defines: tuple[str, ...] = ()) -> Any:
    return _module(cupy.cuda.Device().id, family, n_components, defines).get_function(name)


@functools.cache
def _sm_count(device_id: int) -> int:
    return int(cupy.cuda.runtime.getDeviceProperties(device_id)["multiProcessorCount"])


def _blocks_per_sm(kernel: Any) -> int:
    """Resident blocks of THREADS per SM allowed by the kernel's registers (64 Ki per SM)."""
    try:
        regs = int(kernel.attributes["num_regs"])
    except Exception:  # an attribute CuPy does not expose: assume the compiled-for minimum
        return 1
    per_block = -(-regs // 8) * 8 * THREADS  # registers are allocated 8 per thread at a time
    return max(1, min(65536 // max(per_block, 1), 2048 // THREADS))


def _grid_x(n_rows: int, n_cols: int, rows_per_thread: int, resident_blocks: int) -> int:
    """Blocks along the rows: enough for the rows, at most one full wave over all columns.

    The grid depends only on the shape and the device, so the statistics (whose rounding follows
    the grid) are the same on every run.
    """
    need = -(-max(n_rows, 1) // (THREADS * rows_per_thread))
    cap = max(1, resident_blocks // max(n_cols, 1))
    return int(max(1, min(need, cap)))


# --------------------------------------------------------------------------------------------
# Parameter tables (plain NumPy; the kernels' layouts; the formulas are the model's)
# --------------------------------------------------------------------------------------------


def _estep_table(params: EStepParams) -> np.ndarray:
    """(C, 2 + 3K) float64 rows ``[shift, 1/scale, means, -0.5 * precisions, log_consts]``."""
    shift = np.asarray(params.shift, dtype=np.float64)[:, None]
    inv_scale = inverse_scales(params)[:, None]
    rows = [shift, inv_scale, params.means, neg_half_precisions(params), params.log_consts]
    return np.ascontiguousarray(np.concatenate(rows, axis=1), dtype=np.float64)


def _assign_table(centers: np.ndarray, params: EStepParams) -> np.ndarray:
    """(C, 2 + K) float64 rows ``[shift, 1/scale, centers]``."""
    shift = np.asarray(params.shift, dtype=np.float64)[:, None]
    inv_scale = inverse_scales(params)[:, None]
    return np.ascontiguousarray(
        np.concatenate([shift, inv_scale, centers], axis=1), dtype=np.float64
    )


def _transform_tables(params: TransformParams) -> tuple[np.ndarray, np.ndarray]:
    """``(table, info)``: (C, 2 + 5K) float64 and (C, 3) int64 ``[key, valid mask, n_valid]``."""
    check_k(params.estep.n_components)
    means, std4, n_valid = valid_tables(params)
    table = np.ascontiguousarray(np.concatenate([_estep_table(params.estep), means, std4], axis=1))
    valid = np.asarray(params.valid, dtype=bool)
    mask = (valid.astype(np.int64) << np.arange(valid.shape[1], dtype=np.int64)).sum(axis=1)
    keys = np.asarray(params.column_keys, dtype=np.int64)
    info = np.ascontiguousarray(np.stack([keys, mask, n_valid], axis=1), dtype=np.int64)
    return table, info


def _inverse_table(params: TransformParams) -> tuple[np.ndarray, np.ndarray]:
    """``(table, n_valid)``: (C, 2K) float64 rows ``[valid_means, valid_std4]`` and (C,) int64."""
    means, std4, n_valid = valid_tables(params)
    return np.ascontiguousarray(np.concatenate([means, std4], axis=1)), n_valid


def _stats_from_table(out: np.ndarray, k: int) -> Stats:
    """Stats from the kernels' (C, 3K + 3) rows ``[N_k, S1_k, S2_k, H, log_prob, count]``."""
    return Stats(
        nk=out[:, :k].copy(),
        s1=out[:, k : 2 * k].copy(),
        s2=out[:, 2 * k : 3 * k].copy(),
        h=out[:, 3 * k].copy(),
        log_prob=out[:, 3 * k + 1].copy(),
        count=out[:, 3 * k + 2].copy(),
    )


def _moments_from_partials(sums: np.ndarray, m2: np.ndarray | None, mean: np.ndarray) -> Moments:
    """Moments from the reduced sums (C, 5) ``[count, sum, min, max, n_null]`` and m2 (C,)."""
    count = sums[:, 0]
    finite = np.isfinite(mean)
    m2_out = np.zeros_like(count) if m2 is None else np.where(finite, m2, np.inf)
    has = count > 0
    return Moments(
        count=count.copy(),
        mean=np.where(has, mean, 0.0),
        m2=np.where(has, m2_out, 0.0),
        minimum=np.where(has, sums[:, 2], np.inf),
        maximum=np.where(has, sums[:, 3], -np.inf),
        n_null=sums[:, 4].copy(),
    )


def _reduce_moment_partials(partials: np.ndarray) -> np.ndarray:
    """(n_blocks, C, 5) -> (C, 5): sums, except min and max, in block order."""
    out = partials.sum(axis=0)
    out[:, 2] = partials[:, :, 2].min(axis=0)
    out[:, 3] = partials[:, :, 3].max(axis=0)
    return out


# --------------------------------------------------------------------------------------------
# The launch path: checks, then one kernel over the rows in pieces
# --------------------------------------------------------------------------------------------


def _check_chunk(chunk: Any, what: str = "chunk") -> tuple[Any, bool]:
    """``(array, on_host)``: a 2-D float32/float64 array, CuPy on the current device or NumPy."""
    on_host = not isinstance(chunk, cupy.ndarray)
    if on_host:
        chunk = np.asarray(chunk)
    elif chunk.device.id != cupy.cuda.Device().id:
        raise DataError(
            f"{what} is on device {chunk.device.id} but the current device is "
            f"{cupy.cuda.Device().id}"
        )
    return check_chunk(chunk, what), on_host


def _checked(
    chunk: Any, k: int | None = None, columns: Any = None
) -> tuple[Any, bool, str, np.ndarray]:
    """``(chunk, on_host, real type, columns)`` once the shared checks (``_api``) pass, in the
    order every backend runs them: chunk, K, columns (all of the chunk's when None)."""
    ensure_cupy()
    chunk, on_host = _check_chunk(chunk)
    if k is not None:
        check_k(k)
    if columns is None:  # every column of the chunk (moments), nothing to check
        columns = np.arange(chunk.shape[1], dtype=np.int64)
    else:
        columns = check_columns(columns, chunk.shape[1])
    return chunk, on_host, _real(chunk.dtype), columns


def _real(dtype: Any) -> str:
    return "float" if np.dtype(dtype) == np.float32 else "double"


def _element_strides(arr: Any) -> tuple[int, int]:
    """(row, column) strides in elements; any layout whose strides are whole elements."""
    item = arr.dtype.itemsize
    if any(s % item for s in arr.strides):
        raise DataError(f"array strides {arr.strides} are not multiples of the item size {item}")
    return arr.strides[0] // item, arr.strides[1] // item


def _rows(array: Any, on_host: bool, start: int, stop: int) -> tuple[Any, tuple[Any, ...]]:
    """Rows ``start:stop`` on the device, and the kernels' leading arguments for them:
    ``(x, n_rows, row stride, column stride)`` (strides in elements, any layout)."""
    x = cupy.asarray(array[start:stop]) if on_host else array[start:stop]
    rs, cs = _element_strides(x)
    return x, (x, np.int64(x.shape[0]), np.int64(rs), np.int64(cs))


def _launch_pieces(
    label: str,
    kernel: Any,
    shape: tuple[int, int],
    run: Callable[[int, int, int], T],
    *,
    rows_per_thread: int = 1,
    waves: int = 4,
) -> list[T]:
    """``[run(start, stop, grid_x)]`` over the rows of a ``shape`` = (n_rows, n_cols) launch: one
    piece, halved on device out-of-memory.

    ``grid_x`` (blocks along the rows of each of the ``n_cols`` columns) follows the piece's
    rows, the kernel's occupancy and ``waves`` of resident blocks. Logged, never silent: the
    pieces' statistics add up to the same values within rounding.
    """
    n_rows, n_cols = shape
    resident = _blocks_per_sm(kernel) * _sm_count(cupy.cuda.Device().id) * waves
    pieces = [(0, n_rows)]
    results: list[T] = []
    with annotate(label):
        while pieces:
            start, stop = pieces.pop(0)
            try:
                grid_x = _grid_x(stop - start, n_cols, rows_per_thread, resident)
                results.append(run(start, stop, grid_x))
            except cupy.cuda.memory.OutOfMemoryError:
                if stop - start <= _MIN_PIECE_ROWS:
                    raise
                cupy.get_default_memory_pool().free_all_blocks()
                mid = (start + stop) // 2
                logger.warning(
                    "GPU out of memory on rows %d..%d; retrying in pieces of %d rows",
                    start,
                    stop,
                    mid - start,
                )
                pieces[:0] = [(start, mid), (mid, stop)]
    return results


def _concatenate(parts: list[Any], on_host: bool) -> Any:
    return np.concatenate(parts) if on_host else cupy.concatenate(parts)


def _sum(parts: list[T]) -> T:
    """The pieces' ``+``-able results, added in row order."""
    return functools.reduce(lambda a, b: a + b, parts)  # type: ignore[operator]


# --------------------------------------------------------------------------------------------
# The backend functions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StatsKernel:
    """A statistics kernel of ``kernels/estep.cu`` to launch: its NVTX label, its instance name,
    K, and the tuning knobs of ``bench/device_check.py`` (extra ``-D`` defines, grid waves)."""

    label: str
    name: str
    k: int
    defines: tuple[str, ...] = ()
    waves: int = 1


def _stats_pieces(
    spec: _StatsKernel, chunk: Any, on_host: bool, columns: np.ndarray, table: Any
) -> Stats:
    """A statistics kernel (``estep_stats``, ``assign_stats``) over every column, its per-block
    partials reduced on the device in a fixed order; the pieces summed on the host."""
    k, defines = spec.k, spec.defines
    kernel = _kernel("estep", spec.name, k, defines)
    reduce = _kernel("estep", "gpuvgm::reduce_partials", k, defines)
    columns_d, table_d = cupy.asarray(columns), cupy.asarray(table)
    n_cols, slots = columns.size, 3 * k + 3

    def run(start: int, stop: int, grid_x: int) -> np.ndarray:
        _, head = _rows(chunk, on_host, start, stop)
        partials = cupy.empty((grid_x, n_cols, slots), dtype=cupy.float64)
        kernel((grid_x, n_cols), (THREADS,), (*head, columns_d, table_d, partials))
        out = cupy.empty((n_cols, slots), dtype=cupy.float64)
        n_slots = np.int64(n_cols * slots)
        reduce((n_cols * slots,), (THREADS,), (partials, np.int64(grid_x), n_slots, out))
        return cupy.asnumpy(out)

    parts = _launch_pieces(
        spec.label,
        kernel,
        (chunk.shape[0], n_cols),
        run,
        rows_per_thread=_ESTEP_ROWS,
        waves=spec.waves,
    )
    return _stats_from_table(_sum(parts), k)


def estep_stats(
    chunk: Any,
    params: EStepParams,
    *,
    compute_dtype: Any = None,
    defines: tuple[str, ...] = (),
    grid_waves: int = 1,
) -> Stats:
    """Sufficient statistics of one chunk for the columns in ``params`` (working frame).

    CUDA twin of :func:`gpuvgm._backends._numpy.estep_stats`; kernel ``estep_stats`` in
    ``kernels/estep.cu``. ``compute_dtype`` (float32 or float64) is the precision of the
    per-value arithmetic; accumulation is always float64. Default: float32 for float32 chunks
    (<= 1e-6 relative to the float64 statistics), float64 for float64 chunks. ``defines``
    (extra ``-D`` options) and ``grid_waves`` (the grid in waves of resident blocks) are tuning
    knobs for ``bench/device_check.py``, not an API.
    """
    chunk, on_host, t, columns = _checked(chunk, params.n_components, params.columns)
    k = params.n_components
    compute = np.dtype(compute_dtype or chunk.dtype)
    if compute not in (np.float32, np.float64):
        raise DataTypeError(f"compute_dtype must be float32 or float64, got {compute}")
    name = f"gpuvgm::estep_stats<{t}, {_real(compute)}, {k}>"
    table = _estep_table(params)
    spec = _StatsKernel("estep_stats", name, k, defines, grid_waves)
    return _stats_pieces(spec, chunk, on_host, columns, table)


def assign_stats(chunk: Any, centers: np.ndarray, params: EStepParams) -> Stats:
    """Statistics of the hard assignment of each value to its nearest center (k-means labels).

    CUDA twin of :func:`gpuvgm._backends._numpy.assign_stats`; kernel ``assign_stats`` in
    ``kernels/estep.cu``. ``centers``: (n_columns, K) in the working frame; ties go to the lowest
    index.
    """
    ensure_cupy()
    _check_chunk(chunk)  # the chunk first, as every backend
    centers = check_centers(centers, np.asarray(params.columns).size)
    k = centers.shape[1]
    chunk, on_host, t, columns = _checked(chunk, k, params.columns)
    table = _assign_table(centers, params)
    spec = _StatsKernel("assign_stats", f"gpuvgm::assign_stats<{t}, {k}>", k)
    return _stats_pieces(spec, chunk, on_host, columns, table)


def log_resp(chunk: Any, params: EStepParams) -> Any:
    """``log p(k | x)`` over all K components, shape (n_rows, n_columns, K); NaN for nulls.

    CUDA twin of :func:`gpuvgm._backends._numpy.log_resp`; kernel ``log_resp`` in
    ``kernels/estep.cu``.
    """
    k = params.n_components
    chunk, on_host, t, columns = _checked(chunk, k, params.columns)
    kernel = _kernel("estep", f"gpuvgm::log_resp<{t}, {k}>", k)
    columns_d, table_d = cupy.asarray(columns), cupy.asarray(_estep_table(params))

    def run(start: int, stop: int, grid_x: int) -> Any:
        x, head = _rows(chunk, on_host, start, stop)
        out = cupy.empty((x.shape[0], columns.size, k), dtype=cupy.float64)
        kernel((grid_x, columns.size), (THREADS,), (*head, columns_d, table_d, out))
        return cupy.asnumpy(out) if on_host else out

    parts = _launch_pieces("log_resp", kernel, (chunk.shape[0], columns.size), run)
    return _concatenate(parts, on_host)


def moments(chunk: Any) -> Moments:
    """Pre-pass statistics of one chunk (count, mean, M2, min, max, nulls) per column.

    CUDA twin of :func:`gpuvgm._backends._numpy.moments` (two passes, as the twin: the mean,
    then the sum of squared deviations from it); kernels ``moments_sums`` and ``moments_m2`` in
    ``kernels/estep.cu``.
    """
    chunk, on_host, t, columns = _checked(chunk)
    n_cols = columns.size
    sums_kernel = _kernel("moments", f"gpuvgm::moments_sums<{t}>")
    m2_kernel = _kernel("moments", f"gpuvgm::moments_m2<{t}>")
    columns_d = cupy.asarray(columns)

    def run(start: int, stop: int, grid_x: int) -> Moments:
        _, head = _rows(chunk, on_host, start, stop)
        partials = cupy.empty((grid_x, n_cols, 5), dtype=cupy.float64)
        sums_kernel((grid_x, n_cols), (THREADS,), (*head, columns_d, partials))
        sums = _reduce_moment_partials(cupy.asnumpy(partials))
        count = sums[:, 0]
        mean = np.where(count > 0, sums[:, 1] / np.maximum(count, 1.0), 0.0)
        m2_partials = cupy.empty((grid_x, n_cols), dtype=cupy.float64)
        m2_kernel((grid_x, n_cols), (THREADS,), (*head, columns_d, cupy.asarray(mean), m2_partials))
        m2 = cupy.asnumpy(m2_partials).sum(axis=0)
        return _moments_from_partials(sums, m2, mean)

    parts = _launch_pieces(
        "moments", sums_kernel, (chunk.shape[0], n_cols), run, rows_per_thread=4, waves=1
    )
    return _sum(parts)


def transform(chunk: Any, params: TransformParams, row_offset: int) -> tuple[Any, Any, Any, Any]:
    """Mode-specific normalization of one chunk.

    CUDA twin of :func:`gpuvgm._backends._numpy.transform`; kernel ``transform`` in
    ``kernels/transform.cu``. Returns ``normalized`` (n, C) float64 (NaN for nulls),
    ``component`` (n, C) int32 (-1 for nulls), ``null`` (n, C) bool — NumPy for a NumPy chunk,
    CuPy for a CuPy chunk — and ``n_clipped`` (C,) int64 (NumPy). The sampled components equal
    the NumPy backend's: both draw from the same Philox stream keyed by the global row.
    """
    k = params.estep.n_components
    chunk, on_host, t, columns = _checked(chunk, k, params.estep.columns)
    table, info = _transform_tables(params)
    n_cols = columns.size
    kernel = _kernel("transform", f"gpuvgm::transform<{t}, {k}>", k)
    columns_d, table_d, info_d = cupy.asarray(columns), cupy.asarray(table), cupy.asarray(info)
    seed = np.uint64(int(params.seed) & 0xFFFFFFFFFFFFFFFF)

    def run(start: int, stop: int, grid_x: int) -> tuple[Any, ...]:
        x, head = _rows(chunk, on_host, start, stop)
        n_rows = x.shape[0]
        counts = cupy.zeros((n_cols, 2), dtype=cupy.uint64)
        normalized = cupy.empty((n_rows, n_cols), dtype=cupy.float64)
        component = cupy.empty((n_rows, n_cols), dtype=cupy.int32)
        null = cupy.empty((n_rows, n_cols), dtype=cupy.bool_)
        kernel(
            (grid_x, n_cols),
            (THREADS,),
            (
                *head, columns_d, table_d, info_d, seed, np.int64(row_offset + start),
                np.int32(bool(params.sample)), np.float64(params.clip), np.float32(SAMPLE_MARGIN),
                normalized, component, null, counts,
            ),
        )  # fmt: skip
        outs = (normalized, component, null)
        if on_host:
            outs = tuple(cupy.asnumpy(o) for o in outs)
        return (*outs, cupy.asnumpy(counts).astype(np.int64))

    parts = _launch_pieces("transform", kernel, (chunk.shape[0], n_cols), run)
    normalized, component, null = (_concatenate([p[i] for p in parts], on_host) for i in range(3))
    counts = _sum([p[3] for p in parts])
    if counts[:, 1].any():
        logger.debug("transform: %d draws redone in double", int(counts[:, 1].sum()))
    return normalized, component, null, counts[:, 0]


def inverse(normalized: Any, component: Any, params: TransformParams) -> Any:
    """``x = 4 * std_c * alpha + mean_c`` per column, shape (n, C) float64; NaN where alpha is NaN.

    CUDA twin of :func:`gpuvgm._backends._numpy.inverse`; kernel ``inverse`` in
    ``kernels/inverse.cu``. Components are clamped to ``[0, n_valid - 1]``.
    """
    ensure_cupy()
    normalized, on_host = _check_chunk(normalized, "normalized")
    on_host_c = not isinstance(component, cupy.ndarray)
    component = np.asarray(component) if on_host_c else component
    if on_host_c != on_host:
        raise DataError("normalized and component must both be NumPy or both be CuPy arrays")
    check_inverse_args(normalized, component, np.asarray(params.valid).shape[0])
    table, n_valid = _inverse_table(params)
    k = table.shape[1] // 2
    it = "int" if component.dtype == np.int32 else "long long"
    kernel = _kernel("transform", f"gpuvgm::inverse<{_real(normalized.dtype)}, {it}>", k)
    table_d, n_valid_d = cupy.asarray(table), cupy.asarray(n_valid)
    n_cols = normalized.shape[1]

    def run(start: int, stop: int, grid_x: int) -> Any:
        _, (a, n_rows, ars, acs) = _rows(normalized, on_host, start, stop)
        _, (c, _, crs, ccs) = _rows(component, on_host, start, stop)
        out = cupy.empty((int(n_rows), n_cols), dtype=cupy.float64)
        kernel(
            (grid_x, n_cols),
            (THREADS,),
            (a, ars, acs, c, crs, ccs, n_rows, table_d, np.int32(k), n_valid_d, out),
        )
        return cupy.asnumpy(out) if on_host else out

    parts = _launch_pieces("inverse", kernel, (normalized.shape[0], n_cols), run)
    return _concatenate(parts, on_host)


def sample_candidates(
    chunk: Any, seed: int, column_key: int, stream: int, offset: int, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``chunk`` (global rows ``offset .. offset + n - 1``) whose Philox word
    ``(seed, column_key, global row, stream)`` is ``<= limit`` (``0 <= limit < 2**32``).

    CUDA twin of :func:`gpuvgm._backends._numpy.sample_candidates`; kernel ``sample_candidates``
    in ``kernels/sample.cu``. Returns ``rows`` int64 ascending (chunk-relative), their ``words``
    uint32 and ``values`` float64 of shape (m, n_columns), nulls staying NaN: NumPy arrays, for a
    NumPy or a CuPy chunk. The kernel reads no data and appends candidates in the order its
    atomics give; they are sorted by row on the device. A CuPy chunk's values are gathered on the
    device; a NumPy chunk is never copied to the device, its candidate rows are read on the host.
    """
    ensure_cupy()
    chunk, on_host = _check_chunk(chunk)
    seed, offset, limit = check_sample_args(seed, offset, limit)
    kernel = _kernel("sample", "gpuvgm::sample_candidates")
    key = np.uint64(int(column_key) & 0xFFFFFFFF)  # the Philox counter takes 32 bits, as the twin
    stream_u = np.uint32(int(stream) & 0xFFFFFFFF)

    def run(start: int, stop: int, grid_x: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n_rows = stop - start
        rows_d = cupy.empty(n_rows, dtype=cupy.int64)
        words_d = cupy.empty(n_rows, dtype=cupy.uint32)
        count_d = cupy.zeros(1, dtype=cupy.uint64)
        kernel(
            (grid_x,),
            (THREADS,),
            (
                np.int64(n_rows), np.uint64(seed), key, stream_u, np.int64(offset + start),
                np.uint32(limit), rows_d, words_d, count_d,
            ),
        )  # fmt: skip
        m = min(int(count_d.get()[0]), n_rows)
        rows_d, words_d = rows_d[:m], words_d[:m]
        if m > 1:  # the atomics hand out slots in no set order: by row, as the NumPy twin
            order = cupy.argsort(rows_d)
            rows_d, words_d = rows_d[order], words_d[order]
        if on_host:
            rows = cupy.asnumpy(rows_d)
            values = np.asarray(chunk[start:stop][rows], dtype=np.float64)
        else:
            values = cupy.asnumpy(chunk[start:stop][rows_d].astype(cupy.float64, copy=False))
            rows = cupy.asnumpy(rows_d)
        return rows + start, cupy.asnumpy(words_d), values

    parts = _launch_pieces("sample_candidates", kernel, (chunk.shape[0], 1), run)
    rows, words, values = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return rows, words, values
