"""NumPy backend: the O(rows x K) passes on the CPU.

Each function is the reference twin of a CUDA kernel (``kernels/*.cu``) and names it. A chunk is
a 2-D array of shape (n_rows, n_columns), float32 or float64, any memory order; NaN marks a null.
Work is split into fixed blocks of :data:`BLOCK_ROWS` rows per column, run on a thread pool (NumPy
releases the GIL in its loops) and reduced in block order, so results do not depend on the number
of threads.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .. import _rng
from .._errors import DataTypeError
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
from .._parallel import parallel_map
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

NAME = "numpy"
memory = _host  # host memory: the data is already where this backend computes
# 16 Ki rows x K=10 float64 = 1.3 MB per temporary: stays in a core's L2 cache.
BLOCK_ROWS = 16384


def _blocks(n: int) -> list[slice]:
    return [slice(i, min(i + BLOCK_ROWS, n)) for i in range(0, n, BLOCK_ROWS)]


def _column(chunk: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Column ``j`` as contiguous float64 without its nulls, and the null mask (None if none)."""
    x = np.ascontiguousarray(chunk[:, j], dtype=np.float64)
    null = np.isnan(x)
    if null.any():
        return x[~null], null
    return x, None


def moments(chunk: np.ndarray) -> Moments:
    """Pre-pass statistics of one chunk (count, mean, M2, min, max, nulls) per column.

    Infinite values propagate into ``minimum``/``maximum`` so the caller can report them.
    NumPy twin of ``moments_sums`` and ``moments_m2`` in ``kernels/estep.cu``.
    """
    chunk = check_chunk(np.asarray(chunk))
    n_cols = chunk.shape[1]
    out = Moments.empty(n_cols)
    for j in range(n_cols):
        x, null = _column(chunk, j)
        n_null = 0 if null is None else int(null.sum())
        if x.size == 0:
            part = Moments.empty(1)
            part.n_null[0] = n_null
        else:
            mean = x.mean()
            m2 = float(np.dot(x - mean, x - mean)) if np.isfinite(mean) else np.inf
            part = Moments(
                count=np.array([x.size], dtype=np.float64),
                mean=np.array([mean]),
                m2=np.array([m2]),
                minimum=np.array([x.min()]),
                maximum=np.array([x.max()]),
                n_null=np.array([n_null], dtype=np.float64),
            )
        out = _set_column(out, j, part)
    return out


def _set_column(m: Moments, j: int, part: Moments) -> Moments:
    for name in ("count", "mean", "m2", "minimum", "maximum", "n_null"):
        getattr(m, name)[j] = getattr(part, name)[0]
    return m


def sample_candidates(
    chunk: np.ndarray, seed: int, column_key: int, stream: int, offset: int, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``chunk`` (global rows ``offset .. offset + n - 1``) whose Philox word
    ``(seed, column_key, global row, stream)`` is ``<= limit`` (``0 <= limit < 2**32``).

    Returns ``rows`` int64 ascending (chunk-relative), their ``words`` uint32 and ``values``
    float64 of shape (m, n_columns), nulls staying NaN. The candidates of the initialisation
    sample's bottom-k selection. NumPy twin of ``sample_candidates`` in ``kernels/sample.cu``.
    """
    chunk = check_chunk(np.asarray(chunk))
    seed, offset, limit = check_sample_args(seed, offset, limit)
    words = _rng.random_words(seed, column_key, offset, chunk.shape[0], stream)
    rows = np.flatnonzero(words <= limit).astype(np.int64, copy=False)
    return rows, words[rows], np.asarray(chunk[rows], dtype=np.float64)


def _working(x: np.ndarray, shift: float, inv_scale: float) -> np.ndarray:
    """``x' = (x - shift) * inv_scale`` clamped to ``±WORKING_MAX`` (NaN stays NaN);
    ``inv_scale`` from :func:`gpuvgm._model.inverse_scales`.

    NumPy twin of ``working`` in ``kernels/vgm_math.cuh``.
    """
    xw = (x - shift) * inv_scale
    return np.clip(xw, -WORKING_MAX, WORKING_MAX, out=xw)


_workspace = threading.local()


def _buffers(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-thread scratch arrays, reused across blocks: fresh large allocations page-fault."""
    ws = getattr(_workspace, "arrays", None)
    if ws is None or ws[0].shape[0] < k:
        ws = (
            np.empty((k, BLOCK_ROWS)),
            np.empty((k, BLOCK_ROWS)),
            np.empty((BLOCK_ROWS, 3)),
            np.empty(BLOCK_ROWS),
            np.empty(BLOCK_ROWS),
        )
        _workspace.arrays = ws
    return ws


def _log_prob_block(
    xw: np.ndarray,
    means: np.ndarray,
    neg_half_prec: np.ndarray,
    log_consts: np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``l_k(x') = C_k - 0.5 * prec_k * (x' - m_k)**2``, shape (K, n): rows stay contiguous."""
    logp = np.subtract(xw[None, :], means[:, None], out=out)  # (K, n)
    logp *= logp
    logp *= neg_half_prec[:, None]
    logp += log_consts[:, None]
    return logp


def _softmax_block(logp: np.ndarray, r: np.ndarray, mx: np.ndarray, s: np.ndarray) -> None:
    """In place: ``logp -= max_k logp``, ``r = exp(logp) / sum``, ``mx = max``, ``s = 1 / sum``."""
    np.max(logp, axis=0, out=mx)
    logp -= mx
    np.maximum(logp, EXP_FLOOR, out=r)
    np.exp(r, out=r)
    np.sum(r, axis=0, out=s)
    np.divide(1.0, s, out=s)
    r *= s


def _estep_block(
    xw: np.ndarray, means: np.ndarray, neg_half_prec: np.ndarray, log_consts: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """Statistics of one block: (K, 3) ``[sum r, sum r x', sum r x'^2]``, H and sum of log p(x)."""
    n, k = xw.size, means.size
    lbuf, rbuf, mbuf, v1, v2 = _buffers(k)
    logp, r, moments3, mx, s = lbuf[:k, :n], rbuf[:k, :n], mbuf[:n], v1[:n], v2[:n]
    _log_prob_block(xw, means, neg_half_prec, log_consts, out=logp)
    _softmax_block(logp, r, mx, s)
    moments3[:, 0] = 1.0
    moments3[:, 1] = xw
    np.multiply(xw, xw, out=moments3[:, 2])
    stats = r @ moments3  # (K, 3)
    np.log(s, out=s)  # -log(sum of exp)
    neg_log_s = float(s.sum())
    # sum_k r log r = sum_k r (logp - max) - log(sum), since log r_k = (l_k - max) - log(sum).
    h = float(np.vdot(r, logp)) + neg_log_s
    log_prob = float(mx.sum()) - neg_log_s
    return stats, h, log_prob


def estep_stats(chunk: np.ndarray, params: EStepParams, *, compute_dtype: Any = None) -> Stats:
    """Sufficient statistics of one chunk for the columns in ``params``.

    NumPy twin of ``estep_stats`` in ``kernels/estep.cu``. Statistics are in the working frame.
    ``compute_dtype``: None or float64, the reference's one precision (the other backends'
    signature).
    """
    if compute_dtype is not None and np.dtype(compute_dtype) != np.float64:
        raise DataTypeError(f"the NumPy backend computes in float64 only, got {compute_dtype}")
    chunk = check_chunk(np.asarray(chunk))
    check_k(params.n_components)
    check_columns(params.columns, chunk.shape[1])
    n_cols = params.columns.size
    out = Stats.zeros(n_cols, params.n_components)
    inv_scale, nhp = inverse_scales(params), neg_half_precisions(params)
    tasks = []
    for i, j in enumerate(params.columns):
        x, _ = _column(chunk, int(j))
        xw = _working(x, params.shift[i], inv_scale[i])
        out.count[i] = x.size
        for blk in _blocks(xw.size):
            tasks.append((i, xw[blk], params.means[i], nhp[i], params.log_consts[i]))

    results = parallel_map(lambda i, *args: (i, _estep_block(*args)), tasks)
    for i, (stats, h, log_prob) in results:
        out.nk[i] += stats[:, 0]
        out.s1[i] += stats[:, 1]
        out.s2[i] += stats[:, 2]
        out.h[i] += h
        out.log_prob[i] += log_prob
    return out


def assign_stats(chunk: np.ndarray, centers: np.ndarray, params: EStepParams) -> Stats:
    """Statistics of the hard assignment of each value to its nearest center (k-means labels).

    ``centers``: (n_columns, K) in the working frame; ties go to the lowest index, as in
    scikit-learn's k-means. NumPy twin of ``assign_stats`` in ``kernels/estep.cu``.
    """
    chunk = check_chunk(np.asarray(chunk))
    centers = check_centers(centers, np.asarray(params.columns).size)
    check_columns(params.columns, chunk.shape[1])
    n_cols, k = centers.shape
    out = Stats.zeros(n_cols, k)
    inv_scale = inverse_scales(params)
    for i, j in enumerate(params.columns):
        x, _ = _column(chunk, int(j))
        xw = _working(x, params.shift[i], inv_scale[i])
        out.count[i] = x.size
        for blk in _blocks(xw.size):
            xb = xw[blk]
            label = np.argmin(np.abs(xb[:, None] - centers[i]), axis=1)
            out.nk[i] += np.bincount(label, minlength=k)
            out.s1[i] += np.bincount(label, weights=xb, minlength=k)
            out.s2[i] += np.bincount(label, weights=xb * xb, minlength=k)
    return out


def log_resp(chunk: np.ndarray, params: EStepParams) -> np.ndarray:
    """``log p(k | x)`` over all K components, shape (n_rows, n_columns, K); NaN for nulls.

    NumPy twin of ``log_resp`` in ``kernels/estep.cu``.
    """
    chunk = check_chunk(np.asarray(chunk))
    check_k(params.n_components)
    check_columns(params.columns, chunk.shape[1])
    n = chunk.shape[0]
    out = np.full((n, params.columns.size, params.n_components), np.nan)
    inv_scale, nhp = inverse_scales(params), neg_half_precisions(params)
    for i, j in enumerate(params.columns):
        x = np.asarray(chunk[:, int(j)], dtype=np.float64)
        ok = ~np.isnan(x)
        xw = _working(x[ok], params.shift[i], inv_scale[i])
        logp = _log_prob_block(xw, params.means[i], nhp[i], params.log_consts[i])  # (K, n)
        logp -= logp.max(axis=0)
        logp -= np.log(np.exp(logp).sum(axis=0))
        out[ok, i] = logp.T
    return out


def _transform_block(
    x: np.ndarray, u: np.ndarray | None, i: int, p: TransformParams, tables: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray, int]:
    """alpha, component and clip count of column ``i``'s non-null values ``x``; ``tables``:
    ``(1/scale, -0.5 * precisions, valid means, valid 4 std)`` from the model."""
    e = p.estep
    valid = p.valid[i]
    inv_scale, nhp, valid_means, valid_std4 = tables
    xw = _working(x, e.shift[i], inv_scale[i])
    logp = _log_prob_block(xw, e.means[i], nhp[i], e.log_consts[i])  # (K, n)
    if u is None:  # the most probable valid component (first on ties)
        comp = np.argmax(logp[valid], axis=0)
    else:
        # RDT: p(k | x) over all K, restricted to the valid ones, + 1e-6; draw by inverting the CDF
        # (sequential cumulative sum, the same order as the CUDA twin).
        r = np.empty_like(logp)
        _softmax_block(logp, r, np.empty(x.size), np.empty(x.size))
        cdf = r[valid] + SAMPLE_PROB_FLOOR  # (n_valid, n), made cumulative in place:
        for k in range(1, cdf.shape[0]):  # row by row, 6x faster than np.cumsum(axis=0)
            np.add(cdf[k - 1], cdf[k], out=cdf[k])  # and the same sums, in the same order
        target = u * cdf[-1]
        comp = np.minimum((cdf <= target).sum(axis=0), cdf.shape[0] - 1)
    alpha = (x - valid_means[i][comp]) / valid_std4[i][comp]
    n_clipped = int(np.count_nonzero(np.abs(alpha) > p.clip))
    if n_clipped:
        np.clip(alpha, -p.clip, p.clip, out=alpha)
    return alpha, comp.astype(np.int32), n_clipped


def transform(
    chunk: np.ndarray, params: TransformParams, row_offset: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mode-specific normalization of one chunk.

    NumPy twin of ``transform`` in ``kernels/transform.cu``. Returns ``normalized`` (n, C) float64
    (NaN for nulls), ``component`` (n, C) int32 (index among the column's valid components, -1 for
    nulls), ``null`` (n, C) bool and ``n_clipped`` (C,) int64.
    """
    chunk = check_chunk(np.asarray(chunk))
    check_k(params.estep.n_components)
    check_columns(params.estep.columns, chunk.shape[1])
    n = chunk.shape[0]
    cols = params.estep.columns
    normalized = np.full((n, cols.size), np.nan)
    component = np.full((n, cols.size), -1, dtype=np.int32)
    null = np.empty((n, cols.size), dtype=bool)
    n_clipped = np.zeros(cols.size, dtype=np.int64)
    valid_means, valid_std4, _ = valid_tables(params)
    tables = (
        inverse_scales(params.estep),
        neg_half_precisions(params.estep),
        valid_means,
        valid_std4,
    )
    tasks = []
    for i, j in enumerate(cols):
        x = np.asarray(chunk[:, int(j)], dtype=np.float64)
        null[:, i] = np.isnan(x)
        u = (
            _rng.uniform(
                params.seed, int(params.column_keys[i]), row_offset, n, _rng.STREAM_COMPONENT
            )
            if params.sample
            else None
        )
        for blk in _blocks(n):
            rows = np.flatnonzero(~null[blk, i]) + blk.start
            tasks.append((i, rows, x[rows], None if u is None else u[rows]))

    def run(i: int, rows: np.ndarray, x: np.ndarray, u: np.ndarray | None):
        return i, rows, _transform_block(x, u, i, params, tables)

    for i, rows, (alpha, comp, clipped) in parallel_map(run, tasks):
        normalized[rows, i] = alpha
        component[rows, i] = comp
        n_clipped[i] += clipped
    return normalized, component, null, n_clipped


def inverse(normalized: np.ndarray, component: np.ndarray, params: TransformParams) -> np.ndarray:
    """``x = 4 * std_c * alpha + mean_c`` per column, shape (n, C) float64; NaN where alpha is NaN.

    ``component`` must already be validated (0 <= c < n_valid).
    NumPy twin of ``inverse`` in ``kernels/inverse.cu``.
    """
    normalized = check_inverse_args(
        np.asarray(normalized), np.asarray(component), np.asarray(params.valid).shape[0]
    )
    n, n_cols = normalized.shape
    out = np.empty((n, n_cols))
    valid_means, valid_std4, _ = valid_tables(params)
    for i in range(n_cols):
        comp = np.clip(component[:, i], 0, None)
        out[:, i] = valid_std4[i][comp] * normalized[:, i] + valid_means[i][comp]
    return out
