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

Compute precision (``compute_dtype`` of :func:`estep_stats`, as in the CUDA backend): float64
by default, for float32 chunks too. Statistics are then within ~1e-15 of the NumPy twin, so a fit
keeps the 1e-8 scikit-learn parity and a float32 array fits to the same model as its float64 copy
(``tests/data/test_sources.py``). float32 compute (~3e-7 relative, below the rounding float32 data
already carries; twice the SIMD lanes) is offered but not the default: measured interleaved on a
2-core AVX-512 VM it was 1.3-1.6x faster than float64 (``bench/results/throughput-cpu-backends-*``),
not enough to give up either guarantee. Accumulation is always float64. The transform,
``log_resp``, ``assign_stats``, ``moments`` and ``inverse`` compute in float64, in the NumPy
twin's order of operations (no FMA), so argmax components and ``alpha`` are identical to the
twin's; the sampled components use the inline exp polynomial below, which differs from NumPy's
exp by at most a few ulps, so a component could differ only where a uniform falls within ulps of
a CDF boundary (about 1e-15 per row; none in 10**7 rows of the benchmark, which counts them).

Vectorisation: a libm call per value keeps a loop scalar, and Numba's SVML path needs Intel's
patched LLVM (conda's llvmlite; PyPI's wheels are not, ``numba -s``: "SVML operational: False"),
so the E-step and the sampled transform evaluate exp and log as inline polynomials, with 2**n
from the exponent bits (an LLVM intrinsic), over tiles of contiguous rows that LLVM vectorises.

Sampled components draw from the same Philox4x32-10 stream as :mod:`gpuvgm._rng` (compiled here,
tested bit for bit against it), keyed by (seed, column, global row, stream).

Threads: ``GPUVGM_NUM_THREADS`` (:func:`gpuvgm._parallel.n_threads`), at most Numba's
``NUMBA_NUM_THREADS``. Numba's threading layer is ``workqueue`` unless ``NUMBA_THREADING_LAYER``
is set: OpenMP's default spin-waiting made 2-thread passes up to 100x slower than one thread on a
shared machine (DESIGN.md §5). The workqueue layer must not be entered from two Python threads at
once, so kernel launches are serialised by a lock (each launch is itself parallel).

Numba is imported with this module, which :func:`gpuvgm._backends.get_backend` imports only when
the backend is chosen; the kernels compile on their first call (``cache=True``: once per machine,
into Numba's cache directory, ``NUMBA_CACHE_DIR`` to move it).
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic, overload

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
# Kernels. Each names its NumPy twin; all loops over a block run on one thread.
# ---------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _working(v, shift, inv_scale, bound):  # pragma: no cover - compiled
    """``x' = (x - shift) * inv_scale`` clamped to ``±bound``; twin ``_numpy._working``."""
    w = (np.float64(v) - shift) * inv_scale
    if w > bound:
        return bound
    if w < -bound:
        return -bound
    return w


@njit(parallel=True, cache=True)
def _moments_kernel(chunk, block_rows, out):  # pragma: no cover - compiled
    """Per (column, block): count, pivot, mean - pivot, M2 about the mean, min, max, nulls.

    Twin: ``_numpy.moments``. The block's first value is the pivot of its sums, so that columns
    like Unix timestamps (1.7e9 +- 10) keep their digits.
    """
    n, n_cols = chunk.shape
    nb = out.shape[1]
    for t in prange(n_cols * nb):
        j = t // nb
        b = t % nb
        r0 = b * block_rows
        r1 = min(r0 + block_rows, n)
        cnt = 0.0
        pivot = 0.0
        s = 0.0
        lo = np.inf
        hi = -np.inf
        for r in range(r0, r1):
            v = np.float64(chunk[r, j])
            if v == v:
                if cnt == 0.0:
                    pivot = v
                cnt += 1.0
                s += v - pivot
                lo = min(lo, v)
                hi = max(hi, v)
        off = 0.0
        m2 = 0.0
        if cnt > 0:
            off = s / cnt
            for r in range(r0, r1):
                v = np.float64(chunk[r, j])
                if v == v:
                    d = (v - pivot) - off
                    m2 += d * d
        out[j, b, 0] = cnt
        out[j, b, 1] = pivot
        out[j, b, 2] = m2
        out[j, b, 3] = lo
        out[j, b, 4] = hi
        out[j, b, 5] = (r1 - r0) - cnt
        out[j, b, 6] = off


# ---------------------------------------------------------------------------------------------
# exp and log in SIMD lanes. A libm call per value keeps a loop scalar (Numba has no vector math
# library unless its LLVM is Intel's SVML-patched build, which PyPI's llvmlite is not), so the hot
# loops evaluate these inline polynomials instead; LLVM then vectorises them.
# ---------------------------------------------------------------------------------------------


_LN2HI = 0.693145751953125  # ln 2 to 12 bits: n * _LN2HI is exact (Cody-Waite)
_LN2LO = math.log(2.0) - _LN2HI


@intrinsic
def _pow2(typingctx, nf):  # pragma: no cover - compiled
    """``2**nf`` for an integral float ``nf`` in the normal range, from the exponent bits."""
    if nf == types.float64:
        ity, bias, mant = ir.IntType(64), 1023, 52
    elif nf == types.float32:
        ity, bias, mant = ir.IntType(32), 127, 23
    else:
        return None

    def codegen(context, builder, signature, args):
        i = builder.fptosi(args[0], ity)
        i = builder.shl(builder.add(i, ir.Constant(ity, bias)), ir.Constant(ity, mant))
        return builder.bitcast(i, args[0].type)

    return nf(nf), codegen


@intrinsic
def _split(typingctx, s):  # pragma: no cover - compiled
    """``(m, e)`` with ``s = m * 2**e``, ``1 <= m < 2``, for a positive normal ``s``."""
    if s == types.float64:
        ity, bias, mant = ir.IntType(64), 1023, 52
    elif s == types.float32:
        ity, bias, mant = ir.IntType(32), 127, 23
    else:
        return None

    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], ity)
        e = builder.sub(builder.lshr(bits, ir.Constant(ity, mant)), ir.Constant(ity, bias))
        low = ir.Constant(ity, (1 << mant) - 1)
        mbits = builder.or_(builder.and_(bits, low), ir.Constant(ity, bias << mant))
        m = builder.bitcast(mbits, args[0].type)
        ef = builder.sitofp(e, args[0].type)
        return context.make_tuple(builder, signature.return_type, [m, ef])

    return types.UniTuple(s, 2)(s), codegen


def _exp_lanes(t):  # pragma: no cover - replaced by the overload
    raise NotImplementedError


@overload(_exp_lanes, inline="always")
def _exp_lanes_impl(t):  # pragma: no cover - compiled
    """``exp(t)`` for ``t`` in [exp floor, 0]: Cody-Waite reduction to ``|f| <= ln2 / 2``
    (ln 2 split, hi with 12 zero low bits), a Taylor polynomial of exp (float64: degree 12,
    relative error < 2e-16; float32: degree 7, < 1e-8), times ``2**n`` from the exponent bits
    (Muller, *Elementary Functions*, 11.3)."""
    if t == types.float64:
        d = [1.0 / math.factorial(q) for q in range(13)]
        d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11, d12 = d

        def impl64(t):
            nf = np.floor(t * 1.4426950408889634 + 0.5)
            f = (t - nf * _LN2HI) - nf * _LN2LO
            p = d12 * f + d11
            p = p * f + d10
            p = p * f + d9
            p = p * f + d8
            p = p * f + d7
            p = p * f + d6
            p = p * f + d5
            p = p * f + d4
            p = p * f + d3
            p = p * f + d2
            p = p * f + d1
            return (p * f + d0) * _pow2(nf)

        return impl64
    if t == types.float32:
        c0, c1, c2, c3, c4, c5, c6, c7 = [np.float32(1.0 / math.factorial(q)) for q in range(8)]
        log2e, half = np.float32(1.4426950408889634), np.float32(0.5)
        hi, lo = np.float32(_LN2HI), np.float32(_LN2LO)

        def impl32(t):
            nf = np.floor(t * log2e + half)
            f = (t - nf * hi) - nf * lo
            p = c7 * f + c6
            p = p * f + c5
            p = p * f + c4
            p = p * f + c3
            p = p * f + c2
            p = p * f + c1
            return (p * f + c0) * _pow2(nf)

        return impl32
    return None


def _log_lanes(s):  # pragma: no cover - replaced by the overload
    raise NotImplementedError


@overload(_log_lanes, inline="always")
def _log_lanes_impl(s):  # pragma: no cover - compiled
    """``log(s)`` for a positive normal ``s``: ``s = m 2**e`` with ``m`` in [sqrt(1/2), sqrt 2),
    ``log m = 2 atanh(z)``, ``z = (m - 1) / (m + 1)``, ``|z| < 0.172``, by its odd series
    (float64: to z**19, error < 1e-17; float32: to z**9)."""
    if s not in (types.float64, types.float32):
        return None
    dt = np.float32 if s == types.float32 else np.float64
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 = [dt(2.0 / (2 * q + 1)) for q in range(10)]
    one, half, sqrt2 = dt(1.0), dt(0.5), dt(math.sqrt(2.0))
    ln2hi, ln2lo = dt(_LN2HI), dt(_LN2LO)

    def impl32(s):
        m, e = _split(s)
        big = m > sqrt2
        m = m * half if big else m
        e = e + one if big else e
        z = (m - one) / (m + one)
        z2 = z * z
        p = c4 * z2 + c3
        p = p * z2 + c2
        p = p * z2 + c1
        p = p * z2 + c0
        return (e * ln2hi + p * z) + e * ln2lo

    def impl64(s):
        m, e = _split(s)
        big = m > sqrt2
        m = m * half if big else m
        e = e + one if big else e
        z = (m - one) / (m + one)
        z2 = z * z
        p = c9 * z2 + c8
        p = p * z2 + c7
        p = p * z2 + c6
        p = p * z2 + c5
        p = p * z2 + c4
        p = p * z2 + c3
        p = p * z2 + c2
        p = p * z2 + c1
        p = p * z2 + c0
        return (e * ln2hi + p * z) + e * ln2lo

    return impl32 if s == types.float32 else impl64


# Rows per tile of the E-step: the tile's (K, TILE) scratch stays in a core's L1/L2 cache, and
# every inner loop runs over the tile's contiguous rows, in SIMD lanes.
TILE_ROWS = 256


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def _estep_kernel(
    chunk,
    cols,
    shift,
    inv_scale,
    means,
    nhp,
    log_consts,
    exp_floor,
    r_tiny,
    one,
    bound,
    block_rows,
    out,
    out2,
):  # pragma: no cover - compiled
    """Fused E-step per (column, block); twin ``_numpy._estep_block``.

    ``means``/``nhp``/``log_consts`` (n_cols, K) are in the compute dtype, as are ``exp_floor``,
    ``r_tiny``, ``one`` and ``bound``. The block's non-null values are compacted (without a
    branch), then per tile of :data:`TILE_ROWS` of them: l_k, max over k, exp, sum, 1/sum and
    log(sum) (:func:`_exp_lanes`, :func:`_log_lanes`), and the statistics added element-wise
    into per-row-slot float64 partials (no reduction in the hot loops, so no reassociation: the
    same sums on any SIMD width); the partials are summed in slot order at the block's end.
    Every inner loop runs over a tile's contiguous rows: LLVM vectorises them (ymm lanes here).
    ``fastmath={"contract"}`` only (FMA): NaN/inf semantics are kept.
    ``out`` (n_cols, n_blocks, K, 3): ``[sum r, sum r x', sum r x'^2]``;
    ``out2`` (n_cols, n_blocks, 3): ``[H, sum log p(x), count]``; both float64.
    """
    n = chunk.shape[0]
    n_cols = cols.size
    k_n = means.shape[1]
    nb = out.shape[1]
    dt = means.dtype
    tile = TILE_ROWS
    zero = one - one
    for t in prange(n_cols * nb):
        c = t // nb
        b = t % nb
        j = cols[c]
        r0 = b * block_rows
        r1 = min(r0 + block_rows, n)
        xs = np.zeros(r1 - r0 + tile, dtype=dt)  # the non-null x', padded to whole tiles
        m = 0
        sh = shift[c]
        isc = inv_scale[c]
        for r in range(r0, r1):  # compaction without a branch: a null is overwritten
            v = chunk[r, j]
            xw = (np.float64(v) - sh) * isc
            xw = xw if xw < bound else bound
            xs[m] = xw if xw > -bound else -bound
            m += v == v
        xs[m] = zero  # the slot a trailing null wrote
        logp = np.empty((k_n, tile), dtype=dt)
        resp = np.empty((k_n, tile), dtype=dt)
        mx = np.empty(tile, dtype=dt)
        s = np.empty(tile, dtype=dt)
        w = np.empty(tile, dtype=dt)  # 1 for a value, 0 for the last tile's padding
        a0 = np.zeros((k_n, tile))
        a1 = np.zeros((k_n, tile))
        a2 = np.zeros((k_n, tile))
        ah = np.zeros((k_n, tile))
        hl = np.zeros(tile)
        x1 = np.empty(tile)  # x' and x'**2 in float64, for the float64 partials
        x2 = np.empty(tile)
        lpl = np.zeros(tile)
        mk_ = means[c]
        hk_ = nhp[c]
        ck_ = log_consts[c]
        for t0 in range(0, m, tile):
            x = xs[t0 : t0 + tile]
            for i in range(tile):
                w[i] = one if t0 + i < m else zero
            for k in range(k_n):
                mk = mk_[k]
                hk = hk_[k]
                ck = ck_[k]
                lk = logp[k]
                for i in range(tile):
                    d = x[i] - mk
                    lk[i] = d * d * hk + ck
            for i in range(tile):
                mx[i] = logp[0, i]
                s[i] = zero
            for k in range(1, k_n):
                lk = logp[k]
                for i in range(tile):
                    mx[i] = lk[i] if lk[i] > mx[i] else mx[i]
            for k in range(k_n):
                lk = logp[k]
                rk = resp[k]
                for i in range(tile):
                    e = lk[i] - mx[i]
                    lk[i] = e
                    rk[i] = _exp_lanes(e if e > exp_floor else exp_floor)
                    s[i] += rk[i]
            for i in range(tile):
                ls = _log_lanes(s[i])
                s[i] = w[i] / s[i]  # 1/sum, 0 on padding
                hl[i] -= w[i] * ls
                lpl[i] += w[i] * (mx[i] + ls)
                x1[i] = np.float64(x[i])
                x2[i] = x1[i] * x1[i]
            for k in range(k_n):
                lk = logp[k]
                rk = resp[k]
                b0 = a0[k]
                b1 = a1[k]
                b2 = a2[k]
                bh = ah[k]
                for i in range(tile):
                    r = rk[i] * s[i]
                    r = np.float64(r if r >= r_tiny else zero)
                    b0[i] += r
                    b1[i] += r * x1[i]
                    b2[i] += r * x2[i]
                    bh[i] += r * np.float64(lk[i])
        h = 0.0
        lp = 0.0
        for i in range(tile):
            h += hl[i]
            lp += lpl[i]
        for k in range(k_n):
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            for i in range(tile):
                s0 += a0[k, i]
                s1 += a1[k, i]
                s2 += a2[k, i]
                h += ah[k, i]
            out[c, b, k, 0] = s0
            out[c, b, k, 1] = s1
            out[c, b, k, 2] = s2
        out2[c, b, 0] = h
        out2[c, b, 1] = lp
        out2[c, b, 2] = m


@njit(parallel=True, cache=True)
def _assign_kernel(
    chunk, cols, shift, inv_scale, centers, bound, block_rows, out, counts
):  # pragma: no cover - compiled
    """Nearest-center statistics per (column, block); twin ``_numpy.assign_stats``."""
    n = chunk.shape[0]
    n_cols = cols.size
    k_n = centers.shape[1]
    nb = out.shape[1]
    for t in prange(n_cols * nb):
        c = t // nb
        b = t % nb
        j = cols[c]
        r0 = b * block_rows
        r1 = min(r0 + block_rows, n)
        acc = np.zeros((k_n, 3))
        m = 0
        for r in range(r0, r1):
            v = chunk[r, j]
            if v == v:
                x = _working(v, shift[c], inv_scale[c], bound)
                best = 0
                dbest = abs(x - centers[c, 0])
                for k in range(1, k_n):
                    d = abs(x - centers[c, k])
                    if d < dbest:  # ties: the lowest index, as np.argmin
                        dbest = d
                        best = k
                acc[best, 0] += 1.0
                acc[best, 1] += x
                acc[best, 2] += x * x
                m += 1
        for k in range(k_n):
            for q in range(3):
                out[c, b, k, q] = acc[k, q]
        counts[c, b] = m


@njit(parallel=True, cache=True)
def _log_resp_kernel(
    chunk, cols, shift, inv_scale, means, nhp, log_consts, bound, block_rows, out
):  # pragma: no cover - compiled
    """``log p(k | x)`` per row; twin ``_numpy.log_resp``. ``out`` (n, n_cols, K), NaN-filled."""
    n = chunk.shape[0]
    n_cols = cols.size
    k_n = means.shape[1]
    nb = _blocks_of(n, block_rows)
    for t in prange(n_cols * nb):
        c = t // nb
        j = cols[c]
        r0 = (t % nb) * block_rows
        r1 = min(r0 + block_rows, n)
        lp = np.empty(k_n)
        for r in range(r0, r1):
            v = chunk[r, j]
            if v != v:
                continue
            x = _working(v, shift[c], inv_scale[c], bound)
            mx = -np.inf
            for k in range(k_n):
                d = x - means[c, k]
                lp[k] = d * d * nhp[c, k] + log_consts[c, k]
                if k == 0 or lp[k] > mx:
                    mx = lp[k]
            s = 0.0
            for k in range(k_n):
                lp[k] -= mx
                s += np.exp(lp[k])
            ls = np.log(s)
            for k in range(k_n):
                out[r, c, k] = lp[k] - ls


@njit(cache=True, inline="always")
def _blocks_of(n, block_rows):  # pragma: no cover - compiled
    return max(1, (n + block_rows - 1) // block_rows)


_M32 = np.uint64(0xFFFFFFFF)
_PM0 = np.uint64(0xD2511F53)
_PM1 = np.uint64(0xCD9E8D57)
_PW0 = np.uint64(0x9E3779B9)
_PW1 = np.uint64(0xBB67AE85)
_S32 = np.uint64(32)
_TWO = np.uint64(2)
_THREE = np.uint64(3)
_TWO_M32 = 2.0**-32


@njit(cache=True, inline="always")
def _philox4x32_10(c0, c1, c2, c3, k0, k1):  # pragma: no cover - compiled
    """Philox4x32-10 on 32-bit values held in uint64; twin ``_rng.philox4x32_10``."""
    for _ in range(10):
        p0 = c0 * _PM0
        p1 = c2 * _PM1
        n0 = (p1 >> _S32) ^ c1 ^ k0
        n2 = (p0 >> _S32) ^ c3 ^ k1
        c1 = p1 & _M32
        c3 = p0 & _M32
        c0 = n0
        c2 = n2
        k0 = (k0 + _PW0) & _M32
        k1 = (k1 + _PW1) & _M32
    return c0, c1, c2, c3


@njit(cache=True, error_model="numpy")
def _fill_words(seed, column, stream, start, words):  # pragma: no cover - compiled
    """``words[i]``: the Philox word of global row ``start + i``; twin ``_rng.random_words``.

    The counters ``q = row >> 2`` covering the rows run in one loop without a branch (SIMD
    lanes: 32x32 -> 64-bit products), their 4 words each into a scratch, which ``words`` is
    then copied from at the first row's lane.
    """
    n = words.size
    if n == 0:
        return
    k0 = seed & _M32
    k1 = seed >> _S32
    c2 = column & _M32
    c3 = stream & _M32
    q0 = start >> _TWO
    lane0 = np.int64(start & _THREE)
    n_q = (lane0 + n + 3) // 4
    w = np.empty(4 * n_q, dtype=np.uint32)
    for i in range(n_q):
        q = q0 + np.uint64(i)
        w0, w1, w2, w3 = _philox4x32_10(q & _M32, q >> _S32, c2, c3, k0, k1)
        w[4 * i] = w0
        w[4 * i + 1] = w1
        w[4 * i + 2] = w2
        w[4 * i + 3] = w3
    for i in range(n):
        words[i] = w[lane0 + i]


@njit(parallel=True, cache=True)
def _words_kernel(seed, column, stream, start, block_rows, words):  # pragma: no cover - compiled
    n = words.size
    nb = _blocks_of(n, block_rows)
    for b in prange(nb):
        r0 = b * block_rows
        r1 = min(r0 + block_rows, n)
        _fill_words(seed, column, stream, start + np.uint64(r0), words[r0:r1])


@njit(parallel=True, cache=True)
def _transform_kernel(
    chunk,
    cols,
    shift,
    inv_scale,
    means,
    nhp,
    log_consts,
    valid_idx,
    n_valid,
    v_means,
    v_std4,
    sample,
    seed,
    column_keys,
    stream,
    row_offset,
    clip,
    exp_floor,
    prob_floor,
    bound,
    block_rows,
    normalized,
    component,
    null,
    clipped,
):  # pragma: no cover - compiled
    """Mode-specific normalization per (column, block), float64; twin ``_numpy._transform_block``.

    ``valid_idx`` (n_cols, K): the valid components' indices first, ``n_valid`` of them;
    ``v_means``/``v_std4`` (n_cols, K): their means and 4 stds in data units, in the same order
    (:func:`gpuvgm._model.valid_tables`).
    """
    n = chunk.shape[0]
    n_cols = cols.size
    k_n = means.shape[1]
    nb = clipped.shape[1]
    for t in prange(n_cols * nb):
        c = t // nb
        b = t % nb
        j = cols[c]
        r0 = b * block_rows
        r1 = min(r0 + block_rows, n)
        nv = n_valid[c]
        lp = np.empty(k_n)
        cdf = np.empty(k_n)
        u = np.empty(r1 - r0, dtype=np.uint32)
        if sample:
            _fill_words(seed, column_keys[c], stream, row_offset + np.uint64(r0), u)
        n_clip = 0
        for r in range(r0, r1):
            v = np.float64(chunk[r, j])
            if v != v:
                null[r, c] = True
                normalized[r, c] = np.nan
                component[r, c] = -1
                continue
            null[r, c] = False
            x = _working(v, shift[c], inv_scale[c], bound)
            for k in range(k_n):
                d = x - means[c, k]
                lp[k] = d * d * nhp[c, k] + log_consts[c, k]
            if not sample:  # the most probable valid component, first on ties (np.argmax)
                comp = 0
                best = lp[valid_idx[c, 0]]
                for q in range(1, nv):
                    val = lp[valid_idx[c, q]]
                    if val > best:
                        best = val
                        comp = q
            else:
                # RDT: p(k | x) over all K (the twin's _softmax_block), restricted to the valid
                # ones, + 1e-6, cumulated in order; inverse CDF at u * total.
                mx = lp[0]
                for k in range(1, k_n):
                    mx = max(mx, lp[k])
                s = 0.0
                for k in range(k_n):
                    lp[k] = np.exp(max(lp[k] - mx, exp_floor))
                    s += lp[k]
                inv = 1.0 / s
                acc = 0.0
                for q in range(nv):  # cdf_q = cdf_(q-1) + (r_q + floor), the twin's order
                    term = lp[valid_idx[c, q]] * inv + prob_floor
                    acc = term if q == 0 else acc + term
                    cdf[q] = acc
                # _rng.uniform: (word + 0.5) * 2**-32
                target = ((np.float64(u[r - r0]) + 0.5) * _TWO_M32) * cdf[nv - 1]
                comp = 0
                for q in range(nv):
                    if cdf[q] <= target:
                        comp += 1
                comp = min(comp, nv - 1)
            alpha = (v - v_means[c, comp]) / v_std4[c, comp]
            if abs(alpha) > clip:
                n_clip += 1
                alpha = clip if alpha > 0 else -clip
            normalized[r, c] = alpha
            component[r, c] = comp
        clipped[c, b] = n_clip


@njit(parallel=True, cache=True, error_model="numpy")
def _sampled_kernel(
    chunk,
    cols,
    shift,
    inv_scale,
    means,
    nhp,
    log_consts,
    valid_idx,
    n_valid,
    v_means,
    v_std4,
    seed,
    column_keys,
    stream,
    row_offset,
    clip,
    exp_floor,
    prob_floor,
    bound,
    block_rows,
    normalized,
    component,
    null,
    clipped,
):  # pragma: no cover - compiled
    """The sampled transform (RDT's rule) per (column, block), float64; twin
    ``_numpy._transform_block`` with ``u``. Arguments as :func:`_transform_kernel`'s.

    The block's non-null values (and their uniforms) are compacted, then per tile of
    :data:`TILE_ROWS`: l_k in the twin's order of operations (no FMA), max, exp
    (:func:`_exp_lanes`), the sum and 1/sum, the valid components' CDF cumulated in the twin's
    order, and the inverse-CDF count, each loop over the tile's rows in SIMD lanes.
    """
    n = chunk.shape[0]
    n_cols = cols.size
    k_n = means.shape[1]
    nb = clipped.shape[1]
    tile = TILE_ROWS
    for t in prange(n_cols * nb):
        c = t // nb
        b = t % nb
        j = cols[c]
        r0 = b * block_rows
        r1 = min(r0 + block_rows, n)
        nv = n_valid[c]
        words = np.empty(r1 - r0, dtype=np.uint32)
        _fill_words(seed, column_keys[c], stream, row_offset + np.uint64(r0), words)
        xs = np.zeros(r1 - r0 + tile)  # the non-null values (data units), padded
        us = np.zeros(r1 - r0 + tile)  # their uniforms
        rows = np.zeros(r1 - r0 + tile, dtype=np.int64)
        m = 0
        for r in range(r0, r1):  # compaction without a branch: a null is overwritten
            v = np.float64(chunk[r, j])
            isnull = v != v
            null[r, c] = isnull
            normalized[r, c] = np.nan  # a null's outputs; a value's are written below
            component[r, c] = -1
            xs[m] = v
            us[m] = (np.float64(words[r - r0]) + 0.5) * _TWO_M32  # _rng.uniform
            rows[m] = r
            m += not isnull
        xs[m] = 0.0
        logp = np.empty((k_n, tile))
        mx = np.empty(tile)
        inv = np.empty(tile)
        acc = np.empty(tile)
        target = np.empty(tile)
        cnt = np.empty(tile, dtype=np.int64)
        n_clip = 0
        sh = shift[c]
        isc = inv_scale[c]
        vm = v_means[c]
        vs = v_std4[c]
        for t0 in range(0, m, tile):
            x = xs[t0 : t0 + tile]
            for i in range(tile):
                xw = (x[i] - sh) * isc
                xw = xw if xw < bound else bound
                target[i] = xw if xw > -bound else -bound  # x' here; u * total below
                inv[i] = 0.0
                mx[i] = -np.inf
            for k in range(k_n):
                mk = means[c, k]
                hk = nhp[c, k]
                ck = log_consts[c, k]
                lk = logp[k]
                for i in range(tile):
                    d = target[i] - mk
                    v = d * d * hk + ck
                    lk[i] = v
                    mx[i] = v if v > mx[i] else mx[i]
            for k in range(k_n):
                lk = logp[k]
                for i in range(tile):
                    e = lk[i] - mx[i]
                    lk[i] = _exp_lanes(e if e > exp_floor else exp_floor)
                    inv[i] += lk[i]
            for i in range(tile):
                inv[i] = 1.0 / inv[i]
            # cdf_q = cdf_(q-1) + (r_q + floor), the twin's order; first the total, then the
            # count of cdf_q <= u * total
            for q in range(nv):
                lq = logp[valid_idx[c, q]]
                for i in range(tile):
                    term = lq[i] * inv[i] + prob_floor
                    acc[i] = term if q == 0 else acc[i] + term
            for i in range(tile):
                target[i] = us[t0 + i] * acc[i]
                cnt[i] = 0
            for q in range(nv):
                lq = logp[valid_idx[c, q]]
                for i in range(tile):
                    term = lq[i] * inv[i] + prob_floor
                    acc[i] = term if q == 0 else acc[i] + term
                    cnt[i] += acc[i] <= target[i]
            lim = min(tile, m - t0)
            for i in range(tile):
                comp = min(cnt[i], nv - 1)
                cnt[i] = comp
                a = (x[i] - vm[comp]) / vs[comp]
                big = abs(a) > clip
                n_clip += big & (i < lim)
                mx[i] = (clip if a > 0 else -clip) if big else a  # alpha, clipped
            for i in range(lim):
                r = rows[t0 + i]
                normalized[r, c] = mx[i]
                component[r, c] = cnt[i]
        clipped[c, b] = n_clip


@njit(parallel=True, cache=True)
def _inverse_kernel(
    normalized, component, n_valid, v_means, v_std4, block_rows, out
):  # pragma: no cover - compiled
    """``x = 4 std_c alpha + mean_c``; twin ``_numpy.inverse``. Returns the first bad component
    index found (or -1)."""
    n, n_cols = normalized.shape
    nb = _blocks_of(n, block_rows)
    bad = np.full(n_cols * nb, -1, dtype=np.int64)
    for t in prange(n_cols * nb):
        i = t // nb
        r0 = (t % nb) * block_rows
        r1 = min(r0 + block_rows, n)
        for r in range(r0, r1):
            comp = max(np.int64(component[r, i]), 0)
            if comp >= n_valid[i]:
                bad[t] = comp
                comp = 0
            out[r, i] = v_std4[i, comp] * np.float64(normalized[r, i]) + v_means[i, comp]
    return bad.max()


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
    _launch(_moments_kernel, chunk, BLOCK_ROWS, parts)
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
            _words_kernel,
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
        _estep_kernel,
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
        _assign_kernel,
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
        _log_resp_kernel,
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
    keys = np.asarray(params.column_keys, dtype=np.int64).astype(np.uint64) & np.uint64(0xFFFFFFFF)
    if params.sample:
        _launch(
            _sampled_kernel,
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
            np.uint64(seed),
            keys,
            np.uint64(_rng.STREAM_COMPONENT),
            np.uint64(row_offset),
            np.float64(params.clip),
            np.float64(EXP_FLOOR),
            np.float64(SAMPLE_PROB_FLOOR),
            np.float64(WORKING_MAX),
            BLOCK_ROWS,
            normalized,
            component,
            null,
            clipped,
        )
        return normalized, component, null, clipped.sum(axis=1)
    _launch(
        _transform_kernel,
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
        bool(params.sample),
        np.uint64(seed),
        keys,
        np.uint64(_rng.STREAM_COMPONENT),
        np.uint64(row_offset),
        np.float64(params.clip),
        np.float64(EXP_FLOOR),
        np.float64(SAMPLE_PROB_FLOOR),
        np.float64(WORKING_MAX),
        BLOCK_ROWS,
        normalized,
        component,
        null,
        clipped,
    )
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
        _inverse_kernel,
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
