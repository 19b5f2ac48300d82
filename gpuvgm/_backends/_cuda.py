"""CUDA backend: the O(rows x K) passes as raw CUDA kernels, launched through CuPy.

Same functions and signatures as :mod:`gpuvgm._backends._numpy` (each kernel's NumPy twin), plus
:func:`transform_ctgan` (CTGAN's ``[alpha, one-hot]`` layout written by the kernel) and
:func:`unavailable_reason`. Chunks may be NumPy arrays (copied to the current device, results
returned as NumPy) or CuPy arrays on the current device (results stay on the device, except the
small statistics, which always come back as NumPy).

Kernels are read from the package data (``kernels/*.cu``), compiled by NVRTC through
``cupy.RawModule`` once per (device, family, K) and kept (CuPy also caches the binaries on disk).
The table packers (``_estep_table``, ``_transform_tables``, ...) are plain NumPy so that the host
emulation tests (``tests/test_kernels_emulated.py``) feed the kernels exactly what this module does.

Importing this module needs neither CuPy nor a GPU; :func:`unavailable_reason` says what is
missing.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from .._errors import DataError, DataTypeError
from .._model import STD_MULTIPLIER, EStepParams, Moments, Stats, TransformParams
from .._profiling import annotate
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
logger = logging.getLogger("gpuvgm")

#: Threads per block of every kernel (the kernels' ``kMaxThreads``; a multiple of 32).
THREADS = 256
#: Largest number of components a kernel is built for (valid components travel as a 32-bit mask).
MAX_COMPONENTS = 32
#: Relative distance to a cdf boundary under which a draw is redone in double
#: (``sample_valid_fast`` in ``vgm_math.cuh``); float errors stay below 1e-5.
SAMPLE_MARGIN = 2.0**-14
#: Rows per thread and iteration of the E-step kernel (``EstepMath<float>::kRows``).
_ESTEP_ROWS = 4
#: Smallest piece of a chunk that an out-of-memory retry splits down to.
_MIN_PIECE_ROWS = 1 << 16
# Tuning knobs for bench/device_check.py, not an API: extra ``-D`` defines for every module (e.g.
# ``GPUVGM_ESTEP_MIN_BLOCKS=2``) and the statistics kernels' grid in waves of resident blocks.
_EXTRA_DEFINES: tuple[str, ...] = ()
_GRID_WAVES = 1

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
# Availability and kernel loading
# --------------------------------------------------------------------------------------------


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
        return (
            tuple(f"gpuvgm::transform<{t}, {k}>" for t in _REALS)
            + tuple(f"gpuvgm::transform_ctgan<{t}, {ot}, {k}>" for t in _REALS for ot in _REALS)
            + tuple(f"gpuvgm::inverse<{at}, {it}>" for at in _REALS for it in ("int", "long long"))
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
            options=COMPILE_OPTIONS + tuple(f"-D{d}" for d in defines),
            name_expressions=list(names),
        )
        module.compile()
    return module


def _kernel(family: str, name: str, n_components: int = 0) -> Any:
    device_id = cupy.cuda.Device().id
    return _module(device_id, family, n_components, _EXTRA_DEFINES).get_function(name)


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
# Parameter tables (plain NumPy; the kernels' layouts)
# --------------------------------------------------------------------------------------------


def _estep_table(params: EStepParams) -> np.ndarray:
    """(C, 2 + 3K) float64 rows ``[shift, 1/scale, means, -0.5 * precisions, log_consts]``."""
    shift = np.asarray(params.shift, dtype=np.float64)[:, None]
    inv_scale = 1.0 / np.asarray(params.scale, dtype=np.float64)[:, None]
    return np.ascontiguousarray(
        np.concatenate(
            [
                shift,
                inv_scale,
                params.means,
                -0.5 * np.asarray(params.precisions),
                params.log_consts,
            ],
            axis=1,
        ),
        dtype=np.float64,
    )


def _assign_table(centers: np.ndarray, params: EStepParams) -> np.ndarray:
    """(C, 2 + K) float64 rows ``[shift, 1/scale, centers]``."""
    shift = np.asarray(params.shift, dtype=np.float64)[:, None]
    inv_scale = 1.0 / np.asarray(params.scale, dtype=np.float64)[:, None]
    return np.ascontiguousarray(
        np.concatenate([shift, inv_scale, centers], axis=1), dtype=np.float64
    )


def _valid_tables(params: TransformParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(valid_means, valid_std4, n_valid)``: (C, K) zero-padded by valid position, and (C,)."""
    valid = np.asarray(params.valid, dtype=bool)
    n_cols, k = valid.shape
    n_valid = valid.sum(axis=1).astype(np.int64)
    if (n_valid < 1).any():
        bad = int(np.flatnonzero(n_valid < 1)[0])
        raise DataError(f"column {bad} of the transform has no valid component")
    means = np.zeros((n_cols, k))
    std4 = np.zeros((n_cols, k))
    for i in range(n_cols):
        means[i, : n_valid[i]] = np.asarray(params.means[i], dtype=np.float64)[valid[i]]
        # 4 * std is exact in binary floating point: the kernel divides by what NumPy divides by.
        std4[i, : n_valid[i]] = (
            STD_MULTIPLIER * np.asarray(params.stds[i], dtype=np.float64)[valid[i]]
        )
    return means, std4, n_valid


def _transform_tables(params: TransformParams) -> tuple[np.ndarray, np.ndarray]:
    """``(table, info)``: (C, 2 + 5K) float64 and (C, 3) int64 ``[key, valid mask, n_valid]``."""
    check_k(params.estep.n_components)
    means, std4, n_valid = _valid_tables(params)
    table = np.ascontiguousarray(np.concatenate([_estep_table(params.estep), means, std4], axis=1))
    valid = np.asarray(params.valid, dtype=bool)
    mask = (valid.astype(np.int64) << np.arange(valid.shape[1], dtype=np.int64)).sum(axis=1)
    keys = np.asarray(params.column_keys, dtype=np.int64)
    info = np.ascontiguousarray(np.stack([keys, mask, n_valid], axis=1), dtype=np.int64)
    return table, info


def _inverse_table(params: TransformParams) -> tuple[np.ndarray, np.ndarray]:
    """``(table, n_valid)``: (C, 2K) float64 rows ``[valid_means, valid_std4]`` and (C,) int64."""
    means, std4, n_valid = _valid_tables(params)
    return np.ascontiguousarray(np.concatenate([means, std4], axis=1)), n_valid


def _ctgan_offsets(params: TransformParams) -> tuple[np.ndarray, int]:
    """Column offsets in the CTGAN matrix (alpha then one slot per valid component), and width."""
    widths = 1 + np.asarray(params.valid, dtype=bool).sum(axis=1).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
    return offsets, int(widths.sum())


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
# Checks and device plumbing
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


def _element_strides(arr: Any) -> tuple[int, int]:
    """(row, column) strides in elements; any layout whose strides are whole elements."""
    item = arr.dtype.itemsize
    if any(s % item for s in arr.strides):
        raise DataError(f"array strides {arr.strides} are not multiples of the item size {item}")
    return arr.strides[0] // item, arr.strides[1] // item


def _in_pieces(run: Callable[[int, int], T], n_rows: int) -> list[T]:
    """``[run(start, stop)]`` over the rows: one piece, halved on device out-of-memory.

    Logged, never silent: the pieces' statistics add up to the same values within rounding.
    """
    pieces = [(0, n_rows)]
    results: list[T] = []
    while pieces:
        start, stop = pieces.pop(0)
        try:
            results.append(run(start, stop))
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


def _to_device(chunk: Any, on_host: bool, start: int, stop: int) -> Any:
    part = chunk[start:stop]
    return cupy.asarray(part) if on_host else part


# --------------------------------------------------------------------------------------------
# The backend functions
# --------------------------------------------------------------------------------------------


def _launch_stats(
    family: str, name: str, k: int, x: Any, columns_d: Any, table_d: Any
) -> np.ndarray:
    """Run a statistics kernel over every column of ``x`` and reduce; (C, 3K + 3) on the host."""
    n_rows = x.shape[0]
    n_cols = int(columns_d.size)
    slots = 3 * k + 3
    kernel = _kernel(family, name, k)
    device_id = cupy.cuda.Device().id
    resident = _blocks_per_sm(kernel) * _sm_count(device_id) * _GRID_WAVES
    grid_x = _grid_x(n_rows, n_cols, _ESTEP_ROWS, resident)
    partials = cupy.empty((grid_x, n_cols, slots), dtype=cupy.float64)
    rs, cs = _element_strides(x)
    kernel(
        (grid_x, n_cols),
        (THREADS,),
        (x, np.int64(n_rows), np.int64(rs), np.int64(cs), columns_d, table_d, partials),
    )
    out = cupy.empty((n_cols, slots), dtype=cupy.float64)
    reduce = _kernel(family, "gpuvgm::reduce_partials", k)
    reduce(
        (n_cols * slots,), (THREADS,), (partials, np.int64(grid_x), np.int64(n_cols * slots), out)
    )
    return cupy.asnumpy(out)


def estep_stats(chunk: Any, params: EStepParams, *, compute_dtype: Any = None) -> Stats:
    """Sufficient statistics of one chunk for the columns in ``params`` (working frame).

    CUDA twin of :func:`gpuvgm._backends._numpy.estep_stats`; kernel ``estep_stats`` in
    ``kernels/estep.cu``. ``compute_dtype`` (float32 or float64) is the precision of the
    per-value arithmetic; accumulation is always float64. Default: float32 for float32 chunks
    (<= 1e-6 relative to the float64 statistics), float64 for float64 chunks.
    """
    ensure_cupy()
    chunk, on_host = _check_chunk(chunk)
    k = params.n_components
    check_k(k)
    columns = check_columns(params.columns, chunk.shape[1])
    compute = np.dtype(compute_dtype or chunk.dtype)
    if compute not in (np.float32, np.float64):
        raise DataTypeError(f"compute_dtype must be float32 or float64, got {compute}")
    t = "float" if chunk.dtype == np.float32 else "double"
    ct = "float" if compute == np.float32 else "double"
    name = f"gpuvgm::estep_stats<{t}, {ct}, {k}>"
    with annotate("estep_stats"):
        columns_d = cupy.asarray(columns)
        table_d = cupy.asarray(_estep_table(params))

        def run(start: int, stop: int) -> np.ndarray:
            x = _to_device(chunk, on_host, start, stop)
            return _launch_stats("estep", name, k, x, columns_d, table_d)

        parts = _in_pieces(run, chunk.shape[0])
    return _stats_from_table(functools.reduce(np.add, parts), k)


def assign_stats(chunk: Any, centers: np.ndarray, params: EStepParams) -> Stats:
    """Statistics of the hard assignment of each value to its nearest center (k-means labels).

    CUDA twin of :func:`gpuvgm._backends._numpy.assign_stats`; kernel ``assign_stats`` in
    ``kernels/estep.cu``. ``centers``: (n_columns, K) in the working frame; ties go to the lowest
    index.
    """
    ensure_cupy()
    chunk, on_host = _check_chunk(chunk)
    centers = check_centers(centers, np.asarray(params.columns).size)
    k = centers.shape[1]
    columns = check_columns(params.columns, chunk.shape[1])
    t = "float" if chunk.dtype == np.float32 else "double"
    name = f"gpuvgm::assign_stats<{t}, {k}>"
    with annotate("assign_stats"):
        columns_d = cupy.asarray(columns)
        table_d = cupy.asarray(_assign_table(centers, params))

        def run(start: int, stop: int) -> np.ndarray:
            x = _to_device(chunk, on_host, start, stop)
            return _launch_stats("estep", name, k, x, columns_d, table_d)

        parts = _in_pieces(run, chunk.shape[0])
    return _stats_from_table(functools.reduce(np.add, parts), k)


def log_resp(chunk: Any, params: EStepParams) -> Any:
    """``log p(k | x)`` over all K components, shape (n_rows, n_columns, K); NaN for nulls.

    CUDA twin of :func:`gpuvgm._backends._numpy.log_resp`; kernel ``log_resp`` in
    ``kernels/estep.cu``.
    """
    ensure_cupy()
    chunk, on_host = _check_chunk(chunk)
    k = params.n_components
    check_k(k)
    columns = check_columns(params.columns, chunk.shape[1])
    t = "float" if chunk.dtype == np.float32 else "double"
    kernel = _kernel("estep", f"gpuvgm::log_resp<{t}, {k}>", k)
    columns_d = cupy.asarray(columns)
    table_d = cupy.asarray(_estep_table(params))
    resident = _blocks_per_sm(kernel) * _sm_count(cupy.cuda.Device().id)

    def run(start: int, stop: int) -> Any:
        x = _to_device(chunk, on_host, start, stop)
        out = cupy.empty((x.shape[0], columns.size, k), dtype=cupy.float64)
        rs, cs = _element_strides(x)
        grid_x = _grid_x(x.shape[0], columns.size, 1, 4 * resident)
        kernel(
            (grid_x, columns.size),
            (THREADS,),
            (x, np.int64(x.shape[0]), np.int64(rs), np.int64(cs), columns_d, table_d, out),
        )
        return cupy.asnumpy(out) if on_host else out

    parts = _in_pieces(run, chunk.shape[0])
    return np.concatenate(parts) if on_host else cupy.concatenate(parts)


def moments(chunk: Any) -> Moments:
    """Pre-pass statistics of one chunk (count, mean, M2, min, max, nulls) per column.

    CUDA twin of :func:`gpuvgm._backends._numpy.moments` (two passes, as the twin: the mean,
    then the sum of squared deviations from it); kernels ``moments_sums`` and ``moments_m2`` in
    ``kernels/estep.cu``.
    """
    ensure_cupy()
    chunk, on_host = _check_chunk(chunk)
    n_cols = chunk.shape[1]
    t = "float" if chunk.dtype == np.float32 else "double"
    sums_kernel = _kernel("moments", f"gpuvgm::moments_sums<{t}>")
    m2_kernel = _kernel("moments", f"gpuvgm::moments_m2<{t}>")
    columns_d = cupy.arange(n_cols, dtype=cupy.int64)
    resident = _blocks_per_sm(sums_kernel) * _sm_count(cupy.cuda.Device().id)

    def run(start: int, stop: int) -> Moments:
        x = _to_device(chunk, on_host, start, stop)
        n_rows = x.shape[0]
        rs, cs = _element_strides(x)
        grid_x = _grid_x(n_rows, n_cols, 4, resident)
        args = (x, np.int64(n_rows), np.int64(rs), np.int64(cs), columns_d)
        partials = cupy.empty((grid_x, n_cols, 5), dtype=cupy.float64)
        sums_kernel((grid_x, n_cols), (THREADS,), (*args, partials))
        sums = _reduce_moment_partials(cupy.asnumpy(partials))
        count = sums[:, 0]
        mean = np.where(count > 0, sums[:, 1] / np.maximum(count, 1.0), 0.0)
        m2_partials = cupy.empty((grid_x, n_cols), dtype=cupy.float64)
        m2_kernel((grid_x, n_cols), (THREADS,), (*args, cupy.asarray(mean), m2_partials))
        m2 = cupy.asnumpy(m2_partials).sum(axis=0)
        return _moments_from_partials(sums, m2, mean)

    with annotate("moments"):
        parts = _in_pieces(run, chunk.shape[0])
    return functools.reduce(lambda a, b: a + b, parts)


def _transform_launch(
    chunk: Any, params: TransformParams, row_offset: int, ctgan_dtype: Any = None
) -> tuple[Any, ...]:
    ensure_cupy()
    chunk, on_host = _check_chunk(chunk)
    k = params.estep.n_components
    columns = check_columns(params.estep.columns, chunk.shape[1])
    table, info = _transform_tables(params)
    n_cols = columns.size
    t = "float" if chunk.dtype == np.float32 else "double"
    if ctgan_dtype is None:
        name = f"gpuvgm::transform<{t}, {k}>"
    else:
        ot = "float" if np.dtype(ctgan_dtype) == np.float32 else "double"
        name = f"gpuvgm::transform_ctgan<{t}, {ot}, {k}>"
        offsets, width = _ctgan_offsets(params)
        offsets_d = cupy.asarray(offsets)
    kernel = _kernel("transform", name, k)
    columns_d = cupy.asarray(columns)
    table_d = cupy.asarray(table)
    info_d = cupy.asarray(info)
    resident = _blocks_per_sm(kernel) * _sm_count(cupy.cuda.Device().id)
    seed = np.uint64(int(params.seed) & 0xFFFFFFFFFFFFFFFF)

    def run(start: int, stop: int) -> tuple[Any, ...]:
        x = _to_device(chunk, on_host, start, stop)
        n_rows = x.shape[0]
        rs, cs = _element_strides(x)
        grid_x = _grid_x(n_rows, n_cols, 1, 4 * resident)
        counts = cupy.zeros((n_cols, 2), dtype=cupy.uint64)
        head = (
            x, np.int64(n_rows), np.int64(rs), np.int64(cs), columns_d, table_d, info_d, seed,
            np.int64(row_offset + start), np.int32(bool(params.sample)), np.float64(params.clip),
            np.float32(SAMPLE_MARGIN),
        )  # fmt: skip
        if ctgan_dtype is None:
            normalized = cupy.empty((n_rows, n_cols), dtype=cupy.float64)
            component = cupy.empty((n_rows, n_cols), dtype=cupy.int32)
            null = cupy.empty((n_rows, n_cols), dtype=cupy.bool_)
            kernel((grid_x, n_cols), (THREADS,), (*head, normalized, component, null, counts))
            outs: tuple[Any, ...] = (normalized, component, null)
        else:
            matrix = cupy.empty((n_rows, width), dtype=np.dtype(ctgan_dtype))
            kernel(
                (grid_x, n_cols),
                (THREADS,),
                (*head, matrix, np.int64(width), offsets_d, counts),
            )
            outs = (matrix,)
        if on_host:
            outs = tuple(cupy.asnumpy(o) for o in outs)
        return (*outs, cupy.asnumpy(counts).astype(np.int64))

    with annotate("transform"):
        parts = _in_pieces(run, chunk.shape[0])
    cat = np.concatenate if on_host else cupy.concatenate
    n_out = len(parts[0]) - 1
    arrays = tuple(cat([p[i] for p in parts]) for i in range(n_out))
    counts = functools.reduce(np.add, (p[-1] for p in parts))
    if counts[:, 1].any():
        logger.debug("transform: %d draws redone in double", int(counts[:, 1].sum()))
    if ctgan_dtype is not None:
        return (*arrays, offsets, counts[:, 0])
    return (*arrays, counts[:, 0])


def transform(chunk: Any, params: TransformParams, row_offset: int) -> tuple[Any, Any, Any, Any]:
    """Mode-specific normalization of one chunk.

    CUDA twin of :func:`gpuvgm._backends._numpy.transform`; kernel ``transform`` in
    ``kernels/transform.cu``. Returns ``normalized`` (n, C) float64 (NaN for nulls),
    ``component`` (n, C) int32 (-1 for nulls), ``null`` (n, C) bool — NumPy for a NumPy chunk,
    CuPy for a CuPy chunk — and ``n_clipped`` (C,) int64 (NumPy). The sampled components equal
    the NumPy backend's: both draw from the same Philox stream keyed by the global row.
    """
    normalized, component, null, n_clipped = _transform_launch(chunk, params, row_offset)
    return normalized, component, null, n_clipped


def transform_ctgan(
    chunk: Any, params: TransformParams, row_offset: int, dtype: Any = np.float32
) -> tuple[Any, np.ndarray, np.ndarray]:
    """The CTGAN layout of one chunk: ``(matrix, offsets, n_clipped)``.

    ``matrix`` (n, W) of ``dtype`` holds, for column c from ``offsets[c]``, alpha then the one-hot
    of the component over the column's valid components (CTGAN's ``DataTransformer``); a null
    writes NaN and an all-zero one-hot. Kernel ``transform_ctgan`` in ``kernels/transform.cu``;
    the values are those of :func:`transform`.
    """
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise DataTypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    matrix, offsets, n_clipped = _transform_launch(chunk, params, row_offset, ctgan_dtype=dtype)
    return matrix, offsets, n_clipped


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
    at = "float" if normalized.dtype == np.float32 else "double"
    it = "int" if component.dtype == np.int32 else "long long"
    kernel = _kernel("transform", f"gpuvgm::inverse<{at}, {it}>", k)
    table_d = cupy.asarray(table)
    n_valid_d = cupy.asarray(n_valid)
    n_cols = normalized.shape[1]
    resident = _blocks_per_sm(kernel) * _sm_count(cupy.cuda.Device().id)

    def run(start: int, stop: int) -> Any:
        a = _to_device(normalized, on_host, start, stop)
        c = _to_device(component, on_host, start, stop)
        n_rows = a.shape[0]
        ars, acs = _element_strides(a)
        crs, ccs = _element_strides(c)
        out = cupy.empty((n_rows, n_cols), dtype=cupy.float64)
        grid_x = _grid_x(n_rows, n_cols, 1, 4 * resident)
        kernel(
            (grid_x, n_cols),
            (THREADS,),
            (
                a, np.int64(ars), np.int64(acs), c, np.int64(crs), np.int64(ccs),
                np.int64(n_rows), table_d, np.int32(k), n_valid_d, out,
            ),
        )  # fmt: skip
        return cupy.asnumpy(out) if on_host else out

    with annotate("inverse"):
        parts = _in_pieces(run, normalized.shape[0])
    return np.concatenate(parts) if on_host else cupy.concatenate(parts)


# --------------------------------------------------------------------------------------------
# The initialisation sample's candidate rows (kernels/sample.cu)
# --------------------------------------------------------------------------------------------


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
    resident = _blocks_per_sm(kernel) * _sm_count(cupy.cuda.Device().id)
    key = np.uint64(int(column_key) & 0xFFFFFFFF)  # the Philox counter takes 32 bits, as the twin
    stream_u = np.uint32(int(stream) & 0xFFFFFFFF)

    def run(start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n_rows = stop - start
        rows_d = cupy.empty(n_rows, dtype=cupy.int64)
        words_d = cupy.empty(n_rows, dtype=cupy.uint32)
        count_d = cupy.zeros(1, dtype=cupy.uint64)
        grid_x = _grid_x(n_rows, 1, 1, 4 * resident)
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

    with annotate("sample_candidates"):
        parts = _in_pieces(run, chunk.shape[0])
    rows, words, values = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return rows, words, values


memory = _cuda_memory  # the Memory protocol (gpuvgm._backends._api): device memory
