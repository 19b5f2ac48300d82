"""The compiled CPU backend's kernels (``gpuvgm._backends._numba`` launches them): each is the
compiled twin of the NumPy function its comment names, over fixed blocks of rows reduced in
block order.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._numba_math import (
    TWO_M32,
    blocks_of,
    exp_lanes,
    fill_words,
    log_lanes,
    wide_vectors,
    working,
)

# Numba's on-disk cache is keyed by the hash of this file's text alone, not of the modules it
# inlines: the first 16 hex digits of the SHA-256 of ``_numba_math.py``, kept here (and checked by
# ``tests/backends/test_numba.py``), make every change of the math a change of this file, so that
# no cached kernel outlives the math it was compiled from.
MATH_DIGEST = "48a266767199ebee"

# ---------------------------------------------------------------------------------------------
# Kernels. Each names its NumPy twin; all loops over a block run on one thread.
# ---------------------------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def moments_kernel(chunk, block_rows, out):  # pragma: no cover - compiled
    """Per (column, block): count, pivot, mean - pivot, M2 about the mean, min, max, nulls.

    Twin: ``_numpy.moments``. The block's first value is the pivot of its sums, so that columns
    like Unix timestamps (1.7e9 +- 10) keep their digits.
    """
    n, n_cols = chunk.shape
    nb = out.shape[1]
    for t in prange(n_cols * nb):
        wide_vectors()  # 512-bit lanes where the CPU has them
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


TILE_ROWS = 256


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _tile_sums(rk, inv, x, x2, r_tiny, zero):  # pragma: no cover - compiled
    """``(sum r, sum r x', sum r x'^2)`` over one tile's rows, ``r = rk * inv`` (0 below
    ``r_tiny``), in the compute dtype; the caller adds them to float64 sums.

    ``reassoc`` lets LLVM keep the sums in SIMD registers, several partial sums per lane
    added at the loop's end (a float32 partial then holds at most a tile's :data:`TILE_ROWS`
    terms, 1.5e-5 relative in the worst case and ~1e-7 typically: the CUDA kernel's float tiles
    of 4 rows, at the width of a SIMD loop; float64 compute sums in float64). The order of that
    reduction is fixed when the loop is compiled, so the sums do not depend on the number of
    threads. Not inlined by Numba, which would drop these flags: LLVM inlines the compiled
    function and keeps them.
    """
    wide_vectors()
    s0 = zero
    s1 = zero
    s2 = zero
    for i in range(rk.size):
        r = rk[i] * inv[i]
        r = r if r >= r_tiny else zero
        s0 += r
        s1 += r * x[i]
        s2 += r * x2[i]
    return s0, s1, s2


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _tile_rows(s, ls, hs, mx, w, x, x2, inv):  # pragma: no cover - compiled
    """Per row of a tile: ``inv = w / s`` and ``x2 = x'^2``; returns the tile's
    ``(sum_k r log r, log p(x))`` sums, float64: ``sum_k r (l_k - max) - log s`` and
    ``max + log s`` per row (``ls = log s``, ``hs = sum_k exp(l_k - max) (l_k - max)``, ``w``:
    1 for a value, 0 for padding), as the twin. (The logs are taken by the caller, outside
    ``reassoc``, which could undo the split of ln 2 in :func:`log_lanes`.)"""
    wide_vectors()
    h = 0.0
    lp = 0.0
    for i in range(s.size):
        iv = w[i] / s[i]
        inv[i] = iv
        h += np.float64(hs[i] * iv - w[i] * ls[i])
        lp += np.float64(w[i] * (mx[i] + ls[i]))
        x2[i] = x[i] * x[i]
    return h, lp


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def estep_kernel(
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
    branch), then per tile of :data:`TILE_ROWS` of them, with K the outer loop and the tile's
    contiguous rows the inner one (SIMD lanes): l_k and their max, exp, its sum and the row's
    ``sum_k exp (l_k - max)`` (:func:`exp_lanes`), 1/sum and log(sum) (:func:`log_lanes`) with
    the row's entropy and log p(x) (:func:`_tile_rows`), and each component's three sums over the
    tile (:func:`_tile_sums`, in registers), added to the block's float64 sums in tile order.
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
        wide_vectors()  # 512-bit lanes where the CPU has them
        c = t // nb
        b = t % nb
        j = cols[c]
        r0 = b * block_rows
        r1 = min(r0 + block_rows, n)
        xs = np.zeros(r1 - r0 + tile, dtype=dt)  # the non-null x', padded to whole tiles
        m = 0
        sh = shift[c]
        isc = inv_scale[c]
        col = chunk[r0:r1, j]
        for i in range(r1 - r0):  # x' of every row (SIMD lanes where the column is contiguous)
            v = col[i]
            xw = (np.float64(v) - sh) * isc
            xw = xw if xw < bound else bound
            xs[i] = xw if xw > -bound else -bound
            m += v == v
        if m < r1 - r0:  # nulls: compacted without a branch (a null's slot is overwritten)
            m = 0
            for i in range(r1 - r0):
                xs[m] = xs[i]
                m += col[i] == col[i]
        xs[m] = zero  # the slot a trailing null wrote
        logp = np.empty((k_n, tile), dtype=dt)
        mx = np.empty(tile, dtype=dt)
        s = np.empty(tile, dtype=dt)
        hs = np.empty(tile, dtype=dt)
        ls = np.empty(tile, dtype=dt)
        w = np.empty(tile, dtype=dt)  # 1 for a value, 0 for the last tile's padding
        inv = np.empty(tile, dtype=dt)
        x2 = np.empty(tile, dtype=dt)
        acc = np.zeros((k_n, 3))
        h = 0.0
        lp = 0.0
        mk_ = means[c]
        hk_ = nhp[c]
        ck_ = log_consts[c]
        for t0 in range(0, m, tile):
            x = xs[t0 : t0 + tile]
            for i in range(tile):
                w[i] = one if t0 + i < m else zero
                s[i] = zero
                hs[i] = zero
            lk = logp[0]
            for i in range(tile):
                d = x[i] - mk_[0]
                v = d * d * hk_[0] + ck_[0]
                lk[i] = v
                mx[i] = v
            for k in range(1, k_n):
                mk = mk_[k]
                hk = hk_[k]
                ck = ck_[k]
                lk = logp[k]
                for i in range(tile):
                    d = x[i] - mk
                    v = d * d * hk + ck
                    lk[i] = v
                    mx[i] = v if v > mx[i] else mx[i]
            for k in range(k_n):
                lk = logp[k]
                for i in range(tile):
                    e = lk[i] - mx[i]
                    e = e if e > exp_floor else exp_floor
                    r = exp_lanes(e)
                    lk[i] = r  # the unnormalised responsibility, in place of l_k
                    s[i] += r
                    hs[i] += r * e
            for i in range(tile):
                ls[i] = log_lanes(s[i])
            dh, dlp = _tile_rows(s, ls, hs, mx, w, x, x2, inv)
            h += dh
            lp += dlp
            for k in range(k_n):
                s0, s1, s2 = _tile_sums(logp[k], inv, x, x2, r_tiny, zero)
                acc[k, 0] += np.float64(s0)
                acc[k, 1] += np.float64(s1)
                acc[k, 2] += np.float64(s2)
        for k in range(k_n):
            out[c, b, k, 0] = acc[k, 0]
            out[c, b, k, 1] = acc[k, 1]
            out[c, b, k, 2] = acc[k, 2]
        out2[c, b, 0] = h
        out2[c, b, 1] = lp
        out2[c, b, 2] = m


@njit(parallel=True, cache=True)
def assign_kernel(
    chunk, cols, shift, inv_scale, centers, bound, block_rows, out, counts
):  # pragma: no cover - compiled
    """Nearest-center statistics per (column, block); twin ``_numpy.assign_stats``."""
    n = chunk.shape[0]
    n_cols = cols.size
    k_n = centers.shape[1]
    nb = out.shape[1]
    for t in prange(n_cols * nb):
        wide_vectors()  # 512-bit lanes where the CPU has them
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
                x = working(v, shift[c], inv_scale[c], bound)
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
def log_resp_kernel(
    chunk, cols, shift, inv_scale, means, nhp, log_consts, bound, block_rows, out
):  # pragma: no cover - compiled
    """``log p(k | x)`` per row; twin ``_numpy.log_resp``. ``out`` (n, n_cols, K), NaN-filled."""
    n = chunk.shape[0]
    n_cols = cols.size
    k_n = means.shape[1]
    nb = blocks_of(n, block_rows)
    for t in prange(n_cols * nb):
        wide_vectors()  # 512-bit lanes where the CPU has them
        c = t // nb
        j = cols[c]
        r0 = (t % nb) * block_rows
        r1 = min(r0 + block_rows, n)
        lp = np.empty(k_n)
        for r in range(r0, r1):
            v = chunk[r, j]
            if v != v:
                continue
            x = working(v, shift[c], inv_scale[c], bound)
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


@njit(parallel=True, cache=True)
def argmax_kernel(
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
    clip,
    bound,
    block_rows,
    normalized,
    component,
    null,
    clipped,
):  # pragma: no cover - compiled
    """The argmax transform per (column, block), float64; twin ``_numpy._transform_block``
    without ``u``: the most probable valid component, first on ties (``np.argmax``).

    ``valid_idx`` (n_cols, K): the valid components' indices first, ``n_valid`` of them;
    ``v_means``/``v_std4`` (n_cols, K): their means and 4 stds in data units, in the same order
    (:func:`gpuvgm._model.valid_tables`).
    """
    n = chunk.shape[0]
    n_cols = cols.size
    k_n = means.shape[1]
    nb = clipped.shape[1]
    for t in prange(n_cols * nb):
        wide_vectors()  # 512-bit lanes where the CPU has them
        c = t // nb
        b = t % nb
        j = cols[c]
        r0 = b * block_rows
        r1 = min(r0 + block_rows, n)
        nv = n_valid[c]
        lp = np.empty(k_n)
        n_clip = 0
        for r in range(r0, r1):
            v = np.float64(chunk[r, j])
            if v != v:
                null[r, c] = True
                normalized[r, c] = np.nan
                component[r, c] = -1
                continue
            null[r, c] = False
            x = working(v, shift[c], inv_scale[c], bound)
            for k in range(k_n):
                d = x - means[c, k]
                lp[k] = d * d * nhp[c, k] + log_consts[c, k]
            comp = 0
            best = lp[valid_idx[c, 0]]
            for q in range(1, nv):
                val = lp[valid_idx[c, q]]
                if val > best:
                    best = val
                    comp = q
            alpha = (v - v_means[c, comp]) / v_std4[c, comp]
            if abs(alpha) > clip:
                n_clip += 1
                alpha = clip if alpha > 0 else -clip
            normalized[r, c] = alpha
            component[r, c] = comp
        clipped[c, b] = n_clip


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _exp_rows(lk, mx, s, exp_floor):  # pragma: no cover - compiled
    """In place over a tile's rows: ``lk = exp(max(lk - mx, exp_floor))``, ``s += lk``.

    Its own function for the flag: ``contract`` fuses the exp polynomial's multiply-adds (half
    the instructions) while the caller, the sampled transform, keeps the twin's unfused order
    for everything else. LLVM inlines it and keeps the flag.
    """
    wide_vectors()
    for i in range(lk.size):
        e = lk[i] - mx[i]
        lk[i] = exp_lanes(e if e > exp_floor else exp_floor)
        s[i] += lk[i]


@njit(parallel=True, cache=True, error_model="numpy")
def sampled_kernel(
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
    ``_numpy._transform_block`` with ``u``. Arguments as :func:`argmax_kernel`'s, plus the
    counter-based stream's key and the sampling floors.

    The block's non-null values (and their uniforms) are compacted, then per tile of
    :data:`TILE_ROWS`: l_k in the twin's order of operations (no FMA), max, exp
    (:func:`exp_lanes` in :func:`_exp_rows`, the one fused part), the sum and 1/sum, the valid
    components' CDF cumulated in the twin's order, and the inverse-CDF count, each loop over the
    tile's rows in SIMD lanes. A block without nulls writes its outputs in place; one with nulls
    keeps the compacted values' rows.
    """
    n = chunk.shape[0]
    n_cols = cols.size
    k_n = means.shape[1]
    nb = clipped.shape[1]
    tile = TILE_ROWS
    for t in prange(n_cols * nb):
        wide_vectors()  # 512-bit lanes where the CPU has them
        c = t // nb
        b = t % nb
        j = cols[c]
        r0 = b * block_rows
        r1 = min(r0 + block_rows, n)
        nv = n_valid[c]
        words = np.empty(r1 - r0, dtype=np.uint32)
        fill_words(seed, column_keys[c], stream, row_offset + np.uint64(r0), words)
        xs = np.empty(r1 - r0 + tile)  # the non-null values (data units), padded
        us = np.empty(r1 - r0 + tile)  # their uniforms
        rows = np.empty(r1 - r0, dtype=np.int64)  # their rows in the block, if any null
        m = 0
        col = chunk[r0:r1, j]
        col_null = null[r0:r1, c]
        col_normalized = normalized[r0:r1, c]
        col_component = component[r0:r1, c]
        for i in range(r1 - r0):  # every row (SIMD lanes where the columns are contiguous)
            v = np.float64(col[i])
            isnull = v != v
            col_null[i] = isnull
            xs[i] = v
            us[i] = (np.float64(words[i]) + 0.5) * TWO_M32  # _rng.uniform
            m += not isnull
        dense = m == r1 - r0
        if not dense:  # nulls: their outputs, then the values compacted without a branch
            for i in range(r1 - r0):  # (a value's outputs are written once, below)
                if col_null[i]:
                    col_normalized[i] = np.nan
                    col_component[i] = -1
            m = 0
            for i in range(r1 - r0):
                xs[m] = xs[i]
                us[m] = us[i]
                rows[m] = i
                m += not col_null[i]
        xs[m : m + tile] = 0.0
        us[m : m + tile] = 0.0
        logp = np.empty((k_n, tile))
        mx = np.empty(tile)
        inv = np.empty(tile)
        acc = np.empty(tile)
        target = np.empty(tile)
        cnt = np.empty(tile, dtype=np.int64)
        sel_m = np.empty(tile)
        sel_s = np.empty(tile)
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
                _exp_rows(logp[k], mx, inv, exp_floor)
            for i in range(tile):
                inv[i] = 1.0 / inv[i]
            # cdf_q = cdf_(q-1) + (r_q + floor), the twin's order, kept in the valid rows of
            # logp; then the count of cdf_q <= u * total
            lq = logp[valid_idx[c, 0]]
            for i in range(tile):
                acc[i] = lq[i] * inv[i] + prob_floor
                lq[i] = acc[i]
            for q in range(1, nv):
                lq = logp[valid_idx[c, q]]
                for i in range(tile):
                    acc[i] = acc[i] + (lq[i] * inv[i] + prob_floor)
                    lq[i] = acc[i]
            # the CDF never decreases (each term >= prob_floor > 0), so the q with cdf_q <= u *
            # total are a prefix: the count is the component, and the last q counted carries its
            # mean and 4 sigma (a blend per q in SIMD lanes, where an indexed read is a gather)
            m0 = vm[0]
            s0 = vs[0]
            for i in range(tile):
                target[i] = us[t0 + i] * acc[i]
                cnt[i] = 0
                sel_m[i] = m0
                sel_s[i] = s0
            for q in range(nv):
                lq = logp[valid_idx[c, q]]
                qn = min(q + 1, nv - 1)
                mq = vm[qn]
                sq = vs[qn]
                for i in range(tile):
                    hit = lq[i] <= target[i]
                    cnt[i] += hit
                    sel_m[i] = mq if hit else sel_m[i]
                    sel_s[i] = sq if hit else sel_s[i]
            lim = min(tile, m - t0)
            for i in range(tile):
                cnt[i] = min(cnt[i], nv - 1)
                a = (x[i] - sel_m[i]) / sel_s[i]
                big = abs(a) > clip
                n_clip += big & (i < lim)
                mx[i] = (clip if a > 0 else -clip) if big else a  # alpha, clipped
            if dense:
                for i in range(lim):
                    col_normalized[t0 + i] = mx[i]
                    col_component[t0 + i] = cnt[i]
            else:
                for i in range(lim):
                    r = rows[t0 + i]
                    col_normalized[r] = mx[i]
                    col_component[r] = cnt[i]
        clipped[c, b] = n_clip


@njit(parallel=True, cache=True)
def inverse_kernel(
    normalized, component, n_valid, v_means, v_std4, block_rows, out
):  # pragma: no cover - compiled
    """``x = 4 std_c alpha + mean_c``; twin ``_numpy.inverse``. Returns the first bad component
    index found (or -1)."""
    n, n_cols = normalized.shape
    nb = blocks_of(n, block_rows)
    bad = np.full(n_cols * nb, -1, dtype=np.int64)
    for t in prange(n_cols * nb):
        wide_vectors()  # 512-bit lanes where the CPU has them
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
