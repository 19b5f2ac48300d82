"""The compiled CPU backend's per-element mathematics (``gpuvgm._backends._numba``): the working
frame, exp and log as inline polynomials over SIMD lanes (PyPI's llvmlite has no SVML, and a libm
call per value keeps a loop scalar), the fixed blocks, and Philox4x32-10, bit-identical to
:mod:`gpuvgm._rng`. Twins: ``working``, ``philox4x32_10`` in ``kernels/vgm_math.cuh``.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic, overload


@njit(cache=True, inline="always")
def working(v, shift, inv_scale, bound):  # pragma: no cover - compiled
    """``x' = (x - shift) * inv_scale`` clamped to ``±bound``; twin ``_numpy._working``."""
    w = (np.float64(v) - shift) * inv_scale
    if w > bound:
        return bound
    if w < -bound:
        return -bound
    return w


# ---------------------------------------------------------------------------------------------
# The vector width. LLVM vectorises for 256-bit registers on Intel's AVX-512 cores by default
# (its "prefer-256-bit" tuning, https://reviews.llvm.org/D67259, made for Skylake-SP's clock
# drop under 512-bit work), so an AVX-512 core runs the loops at half its lanes. Numba's own
# switch is the process-wide NUMBA_CPU_FEATURES (its tests set "-prefer-256-bit"), which would
# recompile every other library's kernels too; the function attribute below is the per-function
# form of clang's -mprefer-vector-width=512. On a core without AVX-512 it changes nothing.
# ---------------------------------------------------------------------------------------------

_WIDE_VECTORS = '"prefer-vector-width"="512"'


@intrinsic
def wide_vectors(typingctx):  # pragma: no cover - compiled
    """Let LLVM vectorise the calling function (the one being compiled, a prange body
    included) with 512-bit registers where the CPU has them; a no-op at run time.

    llvmlite's IR builder lists only LLVM's enum attributes, so the string attribute is added
    to the function's attribute set directly; it is a speed hint only, so where a later llvmlite
    keeps attributes another way the kernels compile as before, at the default width.
    """

    def codegen(context, builder, signature, args):
        attributes = builder.function.attributes
        if isinstance(attributes, set):
            set.add(attributes, _WIDE_VECTORS)
        return context.get_dummy_value()

    return types.none(), codegen


# ---------------------------------------------------------------------------------------------
# exp and log in SIMD lanes. A libm call per value keeps a loop scalar (Numba has no vector math
# library unless its LLVM is Intel's SVML-patched build, which PyPI's llvmlite is not), so the hot
# loops evaluate these inline polynomials instead; LLVM then vectorises them.
# ---------------------------------------------------------------------------------------------


_LN2HI = 0.693145751953125  # ln 2 to 12 bits: n * _LN2HI is exact (Cody-Waite)
_LN2LO = math.log(2.0) - _LN2HI


def _float_layout(t):  # pragma: no cover - called while Numba types the intrinsics
    """``(integer type of the same width, exponent bias, mantissa bits)`` of an IEEE float type,
    or None for any other type."""
    if t == types.float64:
        return ir.IntType(64), 1023, 52
    if t == types.float32:
        return ir.IntType(32), 127, 23
    return None


@intrinsic
def _pow2(typingctx, nf):  # pragma: no cover - compiled
    """``2**nf`` for an integral float ``nf`` in the normal range, from the exponent bits."""
    layout = _float_layout(nf)
    if layout is None:
        return None
    ity, bias, mant = layout

    def codegen(context, builder, signature, args):
        i = builder.fptosi(args[0], ity)
        i = builder.shl(builder.add(i, ir.Constant(ity, bias)), ir.Constant(ity, mant))
        return builder.bitcast(i, args[0].type)

    return nf(nf), codegen


@intrinsic
def _split(typingctx, s):  # pragma: no cover - compiled
    """``(m, e)`` with ``s = m * 2**e``, ``1 <= m < 2``, for a positive normal ``s``."""
    layout = _float_layout(s)
    if layout is None:
        return None
    ity, bias, mant = layout

    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], ity)
        e = builder.sub(builder.lshr(bits, ir.Constant(ity, mant)), ir.Constant(ity, bias))
        low = ir.Constant(ity, (1 << mant) - 1)
        mbits = builder.or_(builder.and_(bits, low), ir.Constant(ity, bias << mant))
        m = builder.bitcast(mbits, args[0].type)
        ef = builder.sitofp(e, args[0].type)
        return context.make_tuple(builder, signature.return_type, [m, ef])

    return types.UniTuple(s, 2)(s), codegen


# exp on [-ln2/2, ln2/2] for float32: the interpolant at the Chebyshev nodes (near-minimax), in
# powers of f, rounded to float32: numpy.polynomial.Chebyshev.interpolate(np.exp, 6,
# domain=[-a, a]).convert(kind=Polynomial).coef, a = 1.0001 ln2 / 2.
_EXP32_COEFFS = (
    1.0,
    1.0,
    0.5,
    0.16666415333747864,
    0.04166635125875473,
    0.008375134319067001,
    0.0013941118959337473,
)


def exp_lanes(t):  # pragma: no cover - replaced by the overload
    raise NotImplementedError


@overload(exp_lanes, inline="always")
def _exp_lanes_impl(t):  # pragma: no cover - compiled
    """``exp(t)`` for ``t`` in [exp floor, 0]: Cody-Waite reduction to ``|f| <= ln2 / 2``
    (ln 2 split, hi with 12 zero low bits), a polynomial of exp (float64: Taylor, degree 12,
    relative error < 2e-16; float32: :data:`_EXP32_COEFFS`, degree 6, 7.5e-8 in float32
    arithmetic, as the degree-7 Taylor polynomial's 6.3e-8 with one multiply-add less), times
    ``2**n`` from the exponent bits (Muller, *Elementary Functions*, 11.3)."""
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
        c0, c1, c2, c3, c4, c5, c6 = [np.float32(c) for c in _EXP32_COEFFS]
        log2e, half = np.float32(1.4426950408889634), np.float32(0.5)
        hi, lo = np.float32(_LN2HI), np.float32(_LN2LO)

        def impl32(t):
            nf = np.floor(t * log2e + half)
            f = (t - nf * hi) - nf * lo
            p = c6 * f + c5
            p = p * f + c4
            p = p * f + c3
            p = p * f + c2
            p = p * f + c1
            return (p * f + c0) * _pow2(nf)

        return impl32
    return None


def log_lanes(s):  # pragma: no cover - replaced by the overload
    raise NotImplementedError


@overload(log_lanes, inline="always")
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
@njit(cache=True, inline="always")
def blocks_of(n, block_rows):  # pragma: no cover - compiled
    return max(1, (n + block_rows - 1) // block_rows)


_M32 = np.uint64(0xFFFFFFFF)
_PM0 = np.uint64(0xD2511F53)
_PM1 = np.uint64(0xCD9E8D57)
_PW0 = np.uint64(0x9E3779B9)
_PW1 = np.uint64(0xBB67AE85)
_S32 = np.uint64(32)
_TWO = np.uint64(2)
_THREE = np.uint64(3)
TWO_M32 = 2.0**-32


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
def fill_words(seed, column, stream, start, words):  # pragma: no cover - compiled
    """``words[i]``: the Philox word of global row ``start + i``; twin ``_rng.random_words``.

    The counters ``q = row >> 2`` covering the rows run in one loop without a branch (SIMD
    lanes: 32x32 -> 64-bit products), their 4 words each into a scratch, which ``words`` is
    then copied from at the first row's lane.
    """
    wide_vectors()
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
def words_kernel(seed, column, stream, start, block_rows, words):  # pragma: no cover - compiled
    n = words.size
    nb = blocks_of(n, block_rows)
    for b in prange(nb):
        wide_vectors()
        r0 = b * block_rows
        r1 = min(r0 + block_rows, n)
        fill_words(seed, column, stream, start + np.uint64(r0), words[r0:r1])
