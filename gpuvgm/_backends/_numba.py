"""Compiled CPU backend (Numba): the O(rows x K) passes as fused, multi-threaded loops.

The reference twin of every function here is the function of the same name in
:mod:`gpuvgm._backends._numpy` (same signatures, same outputs); the tests compare them on sizes
that straddle the block size. The per-element mathematics is the model layer's: the kernels only
evaluate the tables of :class:`~gpuvgm._model.EStepParams` and
:class:`~gpuvgm._model.TransformParams` (``means``, ``precisions``, ``log_consts``, ``shift``,
``scale``, the valid-component tables), in the NumPy twin's order of operations.

A chunk is a 2-D array of shape (n_rows, n_columns), float32 or float64, in any memory order or
strides: the kernels read it in place (no copy), skip NaNs (nulls) and count them. Work is cut
into fixed blocks of :data:`BLOCK_ROWS` rows per column; each block is summed by one thread into
float64 partials, and the partials are reduced in block order, so the statistics are
bit-identical for any number of threads.

Compute precision (``compute_dtype`` of :func:`estep_stats`, as in the CUDA backend; the
estimator's ``compute_dtype``): float64 by default, for float32 chunks too. Statistics are then
within ~1e-15 of the NumPy twin, so a fit keeps the 1e-8 scikit-learn parity and a float32 array
fits to the same model as its float64 copy (``tests/data/test_sources.py``). float32 compute
(~1e-8 relative here, within the float32 tolerance; twice the SIMD lanes, and each 256-row tile
summed in float32 before it joins the float64 sums, as the CUDA kernel's float tiles of 4 rows)
is offered but not the default: measured interleaved on a 2-core AVX-512 VM it was 1.8-2x faster
than float64 (``bench/results/throughput-cpu-backends-*``), not enough to give up either
guarantee. Sums over tiles and blocks are always float64. The transform, ``log_resp``,
``assign_stats``, ``moments`` and ``inverse`` compute in float64, in the NumPy twin's order of
operations (no FMA), so argmax components and ``alpha`` are identical to the twin's; the sampled
components use the inline exp polynomial below, which differs from NumPy's exp by at most a few
ulps, so a component could differ only where a uniform falls within ulps of a CDF boundary
(about 1e-15 per row; none in 10**7 rows of the benchmark, which counts them).

Vectorisation: a libm call per value keeps a loop scalar, and Numba's SVML path needs Intel's
patched LLVM (conda's llvmlite; PyPI's wheels are not, ``numba -s``: "SVML operational: False"),
so the E-step and the sampled transform evaluate exp and log as inline polynomials, with 2**n
from the exponent bits (an LLVM intrinsic), over tiles of contiguous rows that LLVM vectorises:
within a tile K is the outer loop and the tile's rows the inner one. Each component's sums over
a tile are reductions kept in SIMD registers: ``fastmath={"reassoc"}`` in those small helper
functions only (``_numba_kernels._tile_sums``), whose summation order is fixed when they are
compiled, so the sums still do not depend on the number of threads. Everything else keeps IEEE
semantics, with ``contract`` (FMA) at most: no ``nnan``/``ninf``, so NaN and inf behave as in
NumPy. The hot loops compile to ``ymm`` code: LLVM's tuning for these CPUs prefers 256-bit
vectors. 512-bit code (``NUMBA_CPU_FEATURES`` = the host's features plus ``-prefer-256-bit``)
measured 7-10 % faster here; gpuvgm does not set it, as it is a process-wide Numba setting.

Sampled components draw from the same Philox4x32-10 stream as :mod:`gpuvgm._rng` (compiled here,
tested bit for bit against it), keyed by (seed, column, global row, stream).

Threads: the estimator's ``n_jobs``, else ``GPUVGM_NUM_THREADS``
(:func:`gpuvgm._parallel.n_threads`), at most Numba's ``NUMBA_NUM_THREADS``. Numba's threading
layer is ``workqueue`` unless ``NUMBA_THREADING_LAYER`` is set: OpenMP's default spin-waiting
made 2-thread passes up to 100x slower than one thread on a shared machine (DESIGN.md §5). The
workqueue layer must not be entered from two Python threads at once, so kernel launches are
serialised by a lock (each launch is itself parallel).

Numba is imported with this module, which :func:`gpuvgm._backends.get_backend` imports only when
the backend is chosen; the kernels compile on their first call (``cache=True``: once per machine,
into Numba's cache directory, ``NUMBA_CACHE_DIR`` to move it).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numba
import numpy as np

from .. import _rng
from .._errors import DataError, DataTypeError
from .._model import (
    SAMPLE_PROB_FLOOR,
    EStepParams,
    Moments,
    Stats,
    TransformParams,
    inverse_scales,
    neg_half_precisions,
    valid_tables,
)
from .._parallel import n_threads
from . import _host
from ._api import (
    EXP_FLOOR,
    WORKING_MAX,
    check_centers,
    check_chunk,
    check_columns,
    check_inverse_args,
    check_k,
    check_sample_args,
)
from ._numba_kernels import (
    argmax_kernel,
    assign_kernel,
    estep_kernel,
    inverse_kernel,
    log_resp_kernel,
    moments_kernel,
    sampled_kernel,
)
from ._numba_math import (
    words_kernel,
)

NAME = "numba"
memory = _host  # host memory: the data is already where this backend computes
# 16 Ki rows x K=10 in float64 = 1.3 MB of scratch per block: stays in a core's L2 cache.
BLOCK_ROWS = 16384

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]

_launch_lock = threading.Lock()


def _launch(kernel: Any, *args: Any) -> Any:
    """Run ``kernel(*args)`` on ``GPUVGM_NUM_THREADS`` threads, one launch at a time."""
    with _launch_lock:
        numba.set_num_threads(max(1, min(n_threads(), numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
        return kernel(*args)


def _n_blocks(n_rows: int) -> int:
    return max(1, -(-n_rows // BLOCK_ROWS))


# ---------------------------------------------------------------------------------------------
# The backend functions.
# ---------------------------------------------------------------------------------------------


def moments(chunk: Any) -> Moments:
    """Pre-pass statistics of one chunk (count, mean, M2, min, max, nulls) per column.

    Twin of :func:`gpuvgm._backends._numpy.moments`. Block partials (count, mean, M2 about the
    block mean) merge in block order: ``M2 = sum_b M2_b + n_b (mean_b - mean)**2`` (Chan et al.).
    """
    chunk = check_chunk(np.asarray(chunk))
    n, n_cols = chunk.shape
    nb = _n_blocks(n)
    parts = np.empty((n_cols, nb, 7))
    _launch(moments_kernel, chunk, BLOCK_ROWS, parts)
    out = Moments.empty(n_cols)
    for j in range(n_cols):
        p = parts[j][parts[j, :, 0] > 0]  # (blocks with values, 7)
        out.n_null[j] = parts[j, :, 5].sum()
        if p.shape[0] == 0:
            continue
        count = p[:, 0].sum()
        with np.errstate(invalid="ignore"):
            # block means relative to the first pivot, kept apart from it: no digits lost
            rel = (p[:, 1] - p[0, 1]) + p[:, 6]
            rel_mean = float(np.dot(p[:, 0], rel)) / count
            mean = p[0, 1] + rel_mean
        if np.isfinite(mean):
            m2 = float(np.sum(p[:, 2] + p[:, 0] * (rel - rel_mean) ** 2))
        else:  # infinite values: M2 = inf as in the twin
            m2 = np.inf
        out.count[j] = count
        out.mean[j] = mean
        out.m2[j] = m2
        out.minimum[j] = p[:, 3].min()
        out.maximum[j] = p[:, 4].max()
    return out


def sample_candidates(
    chunk: Any, seed: int, column_key: int, stream: int, offset: int, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``chunk`` (global rows ``offset ..``) whose Philox word is ``<= limit``.

    Twin of :func:`gpuvgm._backends._numpy.sample_candidates` (same outputs); the words are
    computed by the compiled Philox.
    """
    chunk = check_chunk(np.asarray(chunk))
    seed, offset, limit = check_sample_args(seed, offset, limit)
    words = _random_words(seed, column_key, offset, chunk.shape[0], stream)
    rows = np.flatnonzero(words <= limit).astype(np.int64, copy=False)
    return rows, words[rows], np.asarray(chunk[rows], dtype=np.float64)


def _random_words(seed: int, column: int, start: int, n: int, stream: int) -> np.ndarray:
    """Compiled twin of :func:`gpuvgm._rng.random_words`, uint32 of shape (n,)."""
    seed = _rng._check_seed(seed)
    words = np.empty(n, dtype=np.uint32)
    if n:
        _launch(
            words_kernel,
            np.uint64(seed),
            np.uint64(int(column) & 0xFFFFFFFF),
            np.uint64(int(stream) & 0xFFFFFFFF),
            np.uint64(start),
            BLOCK_ROWS,
            words,
        )
    return words


def _frame(params: EStepParams) -> tuple[np.ndarray, np.ndarray]:
    """``(shift, 1 / scale)`` as contiguous float64, the model's tables."""
    return np.ascontiguousarray(params.shift, dtype=np.float64), inverse_scales(params)


def _stats(parts: np.ndarray, counts: np.ndarray, h: np.ndarray | None, lp: np.ndarray | None):
    """Block partials (n_cols, n_blocks, K, 3) reduced in block order into :class:`Stats`."""
    # A fixed reduction over the block axis: the same sums for any number of threads.
    total = parts.sum(axis=1)  # (n_cols, K, 3)
    n_cols = parts.shape[0]
    return Stats(
        nk=total[:, :, 0],
        s1=total[:, :, 1],
        s2=total[:, :, 2],
        h=h.sum(axis=1) if h is not None else np.zeros(n_cols),
        log_prob=lp.sum(axis=1) if lp is not None else np.zeros(n_cols),
        count=counts.sum(axis=1),
    )


def _exp_constants(dtype: np.dtype) -> tuple[Any, Any, Any, Any]:
    """``(exp floor, r_tiny, one, |x'| bound)`` of the E-step in the compute ``dtype``.

    Subnormal operands cost ~100 cycles each on x86: responsibilities below ``r_tiny`` count as
    0 (they change a statistic by < r_tiny per row, far below either tolerance). In float32,
    exp(-60) = 9e-27 keeps the products normal (the twin's -700 underflows) and |x'| is clamped
    lower so that (x' - m)**2 stays finite (fitted data has |x'| <= sqrt(n_rows)).
    """
    if dtype == np.float32:
        return np.float32(-60.0), np.float32(1e-20), np.float32(1.0), np.float32(1e18)
    return np.float64(EXP_FLOOR), np.float64(1e-250), np.float64(1.0), np.float64(WORKING_MAX)


def estep_stats(chunk: Any, params: EStepParams, *, compute_dtype: Any = None) -> Stats:
    """Sufficient statistics of one chunk for the columns in ``params``, in the working frame.

    Twin of :func:`gpuvgm._backends._numpy.estep_stats`.

    Parameters
    ----------
    chunk : array of shape (n_rows, n_columns), float32 or float64, any strides
    params : EStepParams
    compute_dtype : {None, float32, float64}
        Precision of the per-value arithmetic (accumulation is always float64). Default (None):
        float64 (see the module docstring).
    """
    chunk = check_chunk(np.asarray(chunk))
    check_k(params.n_components)
    cols = check_columns(params.columns, chunk.shape[1])
    compute = np.dtype(compute_dtype or np.float64)
    if compute not in (np.float32, np.float64):
        raise DataTypeError(f"compute_dtype must be float32 or float64, got {compute}")
    shift, inv_scale = _frame(params)
    nb = _n_blocks(chunk.shape[0])
    k = params.n_components
    parts = np.empty((cols.size, nb, k, 3))
    extra = np.empty((cols.size, nb, 3))
    floor, r_tiny, one, bound = _exp_constants(compute)
    _launch(
        estep_kernel,
        chunk,
        cols,
        shift,
        inv_scale,
        np.ascontiguousarray(params.means, dtype=compute),
        np.ascontiguousarray(neg_half_precisions(params), dtype=compute),
        np.ascontiguousarray(params.log_consts, dtype=compute),
        floor,
        r_tiny,
        one,
        bound,
        BLOCK_ROWS,
        parts,
        extra,
    )
    return _stats(parts, extra[:, :, 2], extra[:, :, 0], extra[:, :, 1])


def assign_stats(chunk: Any, centers: np.ndarray, params: EStepParams) -> Stats:
    """Statistics of the hard assignment of each value to its nearest center (k-means labels).

    ``centers``: (n_columns, K) in the working frame; ties go to the lowest index. Twin of
    :func:`gpuvgm._backends._numpy.assign_stats`; float64.
    """
    chunk = check_chunk(np.asarray(chunk))
    centers = np.ascontiguousarray(check_centers(centers, np.asarray(params.columns).size))
    cols = check_columns(params.columns, chunk.shape[1])
    shift, inv_scale = _frame(params)
    nb = _n_blocks(chunk.shape[0])
    parts = np.empty((cols.size, nb, centers.shape[1], 3))
    counts = np.empty((cols.size, nb))
    _launch(
        assign_kernel,
        chunk,
        cols,
        shift,
        inv_scale,
        centers,
        np.float64(WORKING_MAX),
        BLOCK_ROWS,
        parts,
        counts,
    )
    return _stats(parts, counts, None, None)


def log_resp(chunk: Any, params: EStepParams) -> np.ndarray:
    """``log p(k | x)`` over all K components, shape (n_rows, n_columns, K); NaN for nulls.

    Twin of :func:`gpuvgm._backends._numpy.log_resp`; float64.
    """
    chunk = check_chunk(np.asarray(chunk))
    check_k(params.n_components)
    cols = check_columns(params.columns, chunk.shape[1])
    shift, inv_scale = _frame(params)
    out = np.full((chunk.shape[0], cols.size, params.n_components), np.nan)
    _launch(
        log_resp_kernel,
        chunk,
        cols,
        shift,
        inv_scale,
        np.ascontiguousarray(params.means, dtype=np.float64),
        neg_half_precisions(params),
        np.ascontiguousarray(params.log_consts, dtype=np.float64),
        np.float64(WORKING_MAX),
        BLOCK_ROWS,
        out,
    )
    return out


def _valid_index(params: TransformParams) -> np.ndarray:
    """(n_cols, K) int64: each column's valid component indices first (zero-padded), the
    order of :func:`gpuvgm._model.valid_tables` (the twin's ``logp[valid]``)."""
    valid = np.asarray(params.valid, dtype=bool)
    idx = np.zeros(valid.shape, dtype=np.int64)
    for i in range(valid.shape[0]):
        nz = np.flatnonzero(valid[i])
        idx[i, : nz.size] = nz
    return idx


def transform(
    chunk: Any, params: TransformParams, row_offset: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mode-specific normalization of one chunk.

    Twin of :func:`gpuvgm._backends._numpy.transform` (identical outputs). Returns
    ``normalized`` (n, C) float64 (NaN for nulls), ``component`` (n, C) int32 (index among the
    column's valid components, -1 for nulls), ``null`` (n, C) bool and ``n_clipped`` (C,) int64.
    """
    chunk = check_chunk(np.asarray(chunk))
    e = params.estep
    check_k(e.n_components)
    cols = check_columns(e.columns, chunk.shape[1])
    seed = _rng._check_seed(params.seed) if params.sample else 0
    row_offset = int(row_offset)
    if row_offset < 0:
        raise DataError(f"row_offset must be >= 0, got {row_offset}")
    shift, inv_scale = _frame(e)
    v_means, v_std4, n_valid = valid_tables(params)
    idx = _valid_index(params)
    n = chunk.shape[0]
    nb = _n_blocks(n)
    normalized = np.empty((n, cols.size))  # every element written by the kernels
    component = np.empty((n, cols.size), dtype=np.int32)
    null = np.empty((n, cols.size), dtype=bool)
    clipped = np.zeros((cols.size, nb), dtype=np.int64)
    common = (
        chunk,
        cols,
        shift,
        inv_scale,
        np.ascontiguousarray(e.means, dtype=np.float64),
        neg_half_precisions(e),
        np.ascontiguousarray(e.log_consts, dtype=np.float64),
        idx,
        n_valid,
        v_means,
        v_std4,
    )
    outputs = (normalized, component, null, clipped)
    if params.sample:
        keys = np.asarray(params.column_keys, dtype=np.int64).astype(np.uint64)
        sampling = (
            np.uint64(seed),
            keys & np.uint64(0xFFFFFFFF),
            np.uint64(_rng.STREAM_COMPONENT),
            np.uint64(row_offset),
            np.float64(params.clip),
            np.float64(EXP_FLOOR),
            np.float64(SAMPLE_PROB_FLOOR),
        )
        _launch(sampled_kernel, *common, *sampling, np.float64(WORKING_MAX), BLOCK_ROWS, *outputs)
    else:
        clip = np.float64(params.clip)
        _launch(argmax_kernel, *common, clip, np.float64(WORKING_MAX), BLOCK_ROWS, *outputs)
    return normalized, component, null, clipped.sum(axis=1)


def inverse(normalized: Any, component: Any, params: TransformParams) -> np.ndarray:
    """``x = 4 * std_c * alpha + mean_c`` per column, shape (n, C) float64; NaN where alpha is NaN.

    Twin of :func:`gpuvgm._backends._numpy.inverse`; ``component`` must already be validated
    (0 <= c < n_valid; negative values read as 0, as in the twin), else IndexError.
    """
    component = np.asarray(component)
    normalized = check_inverse_args(
        np.asarray(normalized), component, np.asarray(params.valid).shape[0]
    )
    v_means, v_std4, n_valid = valid_tables(params)
    out = np.empty(normalized.shape)
    bad = _launch(
        inverse_kernel,
        normalized,
        component,
        n_valid,
        v_means,
        v_std4,
        BLOCK_ROWS,
        out,
    )
    if bad >= 0:
        raise IndexError(f"component index {bad} is out of range for the valid components")
    return out
