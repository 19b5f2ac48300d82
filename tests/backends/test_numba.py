"""The compiled CPU backend (``_backends/_numba.py``) against its NumPy reference twin.

Every compiled function runs on sizes that straddle the block size (1, 255, 256, 257, 100 003
rows), 1 and 7 columns, K = 1, 10, 32, float32 and float64 chunks with nulls, in C order, F order
and strided views. Statistics agree within 1e-12 relative with float64 compute and within the
float32 bound of the tolerance table with float32 compute; components (argmax and sampled, which
share the Philox stream), ``alpha`` and the inverse are identical.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from conftest import rtol

import gpuvgm
from gpuvgm import _rng
from gpuvgm._backends import _numba as nb
from gpuvgm._backends import _numpy as ref
from gpuvgm._backends import get_backend
from gpuvgm._errors import DataError, DataTypeError
from gpuvgm._model import EStepParams, TransformParams

SIZES = (1, 255, 256, 257, 100_003)
F64_RTOL = rtol(np.float64, "twin")


def _chunk(n, n_cols, dtype=np.float64, layout="C", seed=0):
    """Mixture-like values with 10 % nulls; one column in a timestamp-like frame."""
    rng = np.random.default_rng(seed + 7 * n + n_cols)
    x = rng.normal(size=(n, n_cols)) * 2.0 + rng.integers(-3, 4, size=(n, n_cols)) * 3.0
    if n_cols > 1:
        x[:, 1] = 1.7e9 + 10.0 * x[:, 1]
    x[rng.random(x.shape) < 0.1] = np.nan
    x = x.astype(dtype)
    if layout == "F":
        return np.asfortranarray(x)
    if layout == "strided":  # a view with row and column strides: no contiguous axis at all
        big = np.full((2 * n, 2 * n_cols), 99.0, dtype=dtype)
        big[::2, ::2] = x
        return big[::2, ::2]
    return np.ascontiguousarray(x)


def _params(chunk, k, seed=1):
    """E-step tables in each column's working frame (random but well-conditioned)."""
    rng = np.random.default_rng(seed + k)
    c = chunk.shape[1]
    x = np.asarray(chunk, dtype=np.float64)
    ok = ~np.isnan(x).all(axis=0)
    shift = np.where(ok, np.nanmean(np.where(ok, x, 0.0), axis=0), 0.0) if x.size else np.zeros(c)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-null columns
        std = np.nanstd(x, axis=0) if x.shape[0] > 1 else np.ones(c)
    scale = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return EStepParams(
        columns=np.arange(c, dtype=np.int64),
        shift=np.nan_to_num(shift),
        scale=scale,
        means=rng.normal(0.0, 1.5, size=(c, k)),
        precisions=rng.uniform(0.3, 6.0, size=(c, k)),
        log_consts=rng.normal(-2.0, 1.0, size=(c, k)),
    )


def _tparams(e, sample, seed=(1 << 40) + 5, clip=0.99):
    rng = np.random.default_rng(e.n_components)
    c, k = e.means.shape
    valid = rng.random((c, k)) < 0.7
    valid[np.arange(c), rng.integers(0, k, size=c)] = True
    return TransformParams(
        estep=e,
        means=e.means * e.scale[:, None] + e.shift[:, None],
        stds=np.sqrt(1.0 / e.precisions) * e.scale[:, None],
        valid=valid,
        column_keys=np.arange(c, dtype=np.int64) + 3,
        seed=seed,
        sample=sample,
        clip=clip,
    )


def _assert_stats_close(got, want, rtol):
    """Each statistic within ``rtol`` of the magnitude it is a sum of: ``|S1| <= sqrt(N S2)``
    bounds the terms of ``S1`` (it cancels around the working frame's zero); H and log p are
    sums of ``count`` terms of order one."""
    np.testing.assert_array_equal(got.count, want.count)
    scales = {
        "nk": np.abs(want.nk).max(axis=1, keepdims=True),
        "s1": np.sqrt(want.nk * want.s2).max(axis=1, keepdims=True),
        "s2": np.abs(want.s2).max(axis=1, keepdims=True),
        "h": np.abs(want.h) + want.count,
        "log_prob": np.abs(want.log_prob) + want.count,
    }
    for f, scale in scales.items():
        g, w = getattr(got, f), getattr(want, f)
        assert g.shape == w.shape, f
        err = float(np.max(np.abs(g - w) / np.maximum(scale, 1e-300), initial=0.0))
        assert err <= rtol, (f, err)


# --- the E-step: the full matrix of sizes x K x dtype ------------------------------------------


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("k", [1, 10, 32])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_estep_stats_match_numpy(n, k, dtype):
    chunk = _chunk(n, 7, dtype, layout="F")
    p = _params(chunk, k)
    want = ref.estep_stats(chunk, p)
    _assert_stats_close(nb.estep_stats(chunk, p, compute_dtype=np.float64), want, F64_RTOL)
    got32 = nb.estep_stats(chunk, p, compute_dtype=np.float32)
    _assert_stats_close(got32, want, rtol(np.float32, "parity"))
    default = nb.estep_stats(chunk, p)  # float64 compute
    _assert_stats_close(default, want, F64_RTOL)
    np.testing.assert_array_equal(default.count, (~np.isnan(chunk)).sum(axis=0))


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("n_cols", [1, 7])
@pytest.mark.parametrize("n", [257, 100_003])
def test_estep_stats_any_layout(layout, n_cols, n):
    chunk = _chunk(n, n_cols, np.float32, layout)
    p = _params(chunk, 10)
    want = ref.estep_stats(chunk, p)
    _assert_stats_close(nb.estep_stats(chunk, p, compute_dtype=np.float64), want, F64_RTOL)
    _assert_stats_close(
        nb.estep_stats(chunk, p, compute_dtype=np.float32), want, rtol(np.float32, "parity")
    )


def test_estep_stats_subset_of_columns_and_all_null_column():
    chunk = _chunk(1000, 7)
    chunk[:, 4] = np.nan
    full = _params(chunk, 10)
    sel = np.array([4, 0, 6])
    p = EStepParams(
        columns=sel,
        shift=full.shift[sel],
        scale=full.scale[sel],
        means=full.means[sel],
        precisions=full.precisions[sel],
        log_consts=full.log_consts[sel],
    )
    got, want = nb.estep_stats(chunk, p), ref.estep_stats(chunk, p)
    _assert_stats_close(got, want, F64_RTOL)
    assert got.count[0] == 0 and not got.nk[0].any()


# --- the transform: argmax and sampled components identical to the twin -----------------------


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("k", [1, 10, 32])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sample", [False, True])
def test_transform_identical_to_numpy(n, k, dtype, sample):
    chunk = _chunk(n, 7, dtype, layout="C")
    tp = _tparams(_params(chunk, k), sample)
    offset = 123_457  # not a multiple of 4: the Philox lanes straddle the blocks
    got = nb.transform(chunk, tp, offset)
    want = ref.transform(chunk, tp, offset)
    for g, w, name in zip(got, want, ("normalized", "component", "null", "n_clipped"), strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape, name
        np.testing.assert_array_equal(g, w, err_msg=name)


@pytest.mark.parametrize("layout", ["F", "strided"])
def test_transform_any_layout_and_no_clip(layout):
    chunk = _chunk(20_000, 3, np.float64, layout)
    tp = _tparams(_params(chunk, 10), True, clip=np.inf)
    for g, w in zip(nb.transform(chunk, tp, 5), ref.transform(chunk, tp, 5), strict=True):
        np.testing.assert_array_equal(g, w)


# --- the inverse, log_resp, moments, assign_stats, sample_candidates ---------------------------


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inverse_identical_to_numpy(n, dtype):
    chunk = _chunk(n, 7, np.float64)
    tp = _tparams(_params(chunk, 10), True)
    normalized, component, _, _ = ref.transform(chunk, tp, 0)
    normalized = np.asfortranarray(normalized.astype(dtype))
    got = nb.inverse(normalized, component, tp)
    np.testing.assert_array_equal(got, ref.inverse(normalized, component, tp))
    assert got.dtype == np.float64


def test_inverse_refuses_components_out_of_range():
    chunk = _chunk(300, 2)
    tp = _tparams(_params(chunk, 10), False)
    normalized, component, _, _ = ref.transform(chunk, tp, 0)
    component[5, 1] = tp.means.shape[1]  # past every table: both refuse it
    for backend in (ref, nb):
        with pytest.raises(IndexError):
            backend.inverse(normalized, component, tp)
    component[5, 1] = tp.n_valid[1]  # a padded slot: the compiled backend refuses it too
    with pytest.raises(IndexError):
        nb.inverse(normalized, component, tp)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_log_resp_matches_numpy(n, layout):
    chunk = _chunk(n, 7 if n < 1000 else 2, np.float32, layout)
    p = _params(chunk, 10)
    got, want = nb.log_resp(chunk, p), ref.log_resp(chunk, p)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=F64_RTOL, atol=1e-12)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "strided"])
def test_moments_match_numpy(n, dtype, layout):
    chunk = _chunk(n, 7, dtype, layout)
    chunk[:, 3] = np.nan  # an all-null column
    got, want = nb.moments(chunk), ref.moments(chunk)
    for f in ("count", "n_null", "minimum", "maximum"):
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)
    std = np.sqrt(np.maximum(want.m2 / np.maximum(want.count, 1), 1e-300))
    assert np.all(np.abs(got.mean - want.mean) <= F64_RTOL * (np.abs(want.mean) + std))
    np.testing.assert_allclose(got.m2, want.m2, rtol=F64_RTOL, atol=1e-300)


def test_moments_propagate_infinities_like_numpy():
    chunk = _chunk(1000, 3)
    chunk[10, 0] = np.inf
    chunk[11, 1], chunk[12, 1] = np.inf, -np.inf
    got, want = nb.moments(chunk), ref.moments(chunk)
    for f in ("count", "minimum", "maximum", "n_null"):
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)
    np.testing.assert_array_equal(np.isnan(got.mean), np.isnan(want.mean))
    np.testing.assert_array_equal(np.isinf(got.m2), np.isinf(want.m2))
    np.testing.assert_allclose(got.m2, want.m2, rtol=F64_RTOL)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("k", [1, 10, 32])
def test_assign_stats_match_numpy(n, k):
    chunk = _chunk(n, 7, np.float32, "F")
    p = _params(chunk, k)
    centers = np.sort(np.random.default_rng(k).normal(0, 1.5, size=(7, k)), axis=1)
    if k > 1:
        centers[:, 1] = centers[:, 0]  # an exact tie: the lowest index wins in both
    _assert_stats_close(
        nb.assign_stats(chunk, centers, p), ref.assign_stats(chunk, centers, p), F64_RTOL
    )


@pytest.mark.parametrize(
    ("seed", "column", "start", "stream"),
    [(0, 0, 0, 0), ((1 << 40) + 99, 0xFFFFFFFF, 1, 1), (2**64 - 1, 5, 2**32 - 3, 0), (7, 2, 3, 1)],
)
def test_compiled_philox_is_bit_identical(seed, column, start, stream):
    for n in (1, 2, 5, 40_001):
        np.testing.assert_array_equal(
            nb._random_words(seed, column, start, n, stream),
            _rng.random_words(seed, column, start, n, stream),
        )


@pytest.mark.parametrize(("n", "layout"), [(1, "C"), (257, "F"), (100_003, "strided")])
def test_sample_candidates_identical(n, layout):
    chunk = _chunk(n, 3, np.float32, layout)
    args = ((1 << 40) + 99, 2, _rng.STREAM_SAMPLE, 1001, 2**31)
    for g, w in zip(
        nb.sample_candidates(chunk, *args), ref.sample_candidates(chunk, *args), strict=True
    ):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


# --- the same bad inputs, refused with the same typed errors ------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        (-1, 0, 0, 0, 10),
        (2**64, 0, 0, 0, 10),
        (0, 0, 0, -5, 10),
        (0, 0, 0, 2**63, 10),
        (0, 0, 0, 0, 2**32),
    ],
)
def test_bad_sample_arguments_refused_alike(args):
    chunk = _chunk(10, 1)
    for backend in (ref, nb):
        with pytest.raises(DataError):
            backend.sample_candidates(chunk, *args)


def test_bad_inputs_refused_alike():
    chunk = _chunk(100, 2)
    p = _params(chunk, 4)
    wide = EStepParams(
        columns=np.array([0, 5]),
        shift=np.zeros(2),
        scale=np.ones(2),
        means=p.means,
        precisions=p.precisions,
        log_consts=p.log_consts,
    )
    for backend in (ref, nb):
        with pytest.raises(DataError, match="out of range"):
            backend.estep_stats(chunk, wide)
        with pytest.raises(ValueError):  # the seed keys the sampler: [0, 2**64)
            backend.transform(chunk, _tparams(p, True, seed=-1), 0)
        with pytest.raises(DataTypeError, match="float"):
            backend.estep_stats(chunk, p, compute_dtype=np.float16)
    with pytest.raises(DataTypeError, match="float64 only"):  # the reference has one precision
        ref.estep_stats(chunk, p, compute_dtype=np.float32)
    _assert_stats_close(
        ref.estep_stats(chunk, p, compute_dtype=np.float64), ref.estep_stats(chunk, p), 0.0
    )


# --- reproducibility, selection, import cost ----------------------------------------------------

_DIGEST = textwrap.dedent(
    """
    import hashlib, sys
    import numpy as np
    sys.path[:0] = [{tests!r}, {root!r}]
    from test_numba import _chunk, _params, _tparams
    from gpuvgm._backends import _numba as nb
    chunk = _chunk(100_003, 3, np.float32, "F")
    p = _params(chunk, 10)
    h = hashlib.sha256()
    for cd in (np.float32, np.float64):
        s = nb.estep_stats(chunk, p, compute_dtype=cd)
        for a in (s.nk, s.s1, s.s2, s.h, s.log_prob, s.count):
            h.update(np.ascontiguousarray(a).tobytes())
    s = nb.assign_stats(chunk, np.sort(p.means, axis=1), p)
    h.update(s.s2.tobytes())
    m = nb.moments(chunk)
    h.update(m.m2.tobytes() + m.mean.tobytes())
    for out in nb.transform(chunk, _tparams(p, True), 17):
        h.update(np.ascontiguousarray(out).tobytes())
    print(h.hexdigest())
    """
)


def _digest(threads: int) -> str:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), GPUVGM_NUM_THREADS=str(threads))
    here = os.path.dirname(os.path.abspath(__file__))
    code = _DIGEST.format(tests=here, root=os.path.dirname(here))
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_statistics_bit_identical_for_one_and_two_threads():
    assert _digest(1) == _digest(2)


def test_kernel_cache_follows_the_math():
    """Numba keys a cached kernel by its own file's text; the digest ties it to the math."""
    import hashlib
    from pathlib import Path

    from gpuvgm._backends import _numba_kernels, _numba_math

    digest = hashlib.sha256(Path(_numba_math.__file__).read_bytes()).hexdigest()[:16]
    assert digest == _numba_kernels.MATH_DIGEST, (
        f"_numba_math.py changed: set MATH_DIGEST = {digest!r} in _numba_kernels.py"
    )


def test_wide_vectors_reach_the_compiled_loop():
    """The kernels' 512-bit hint is in the compiled function's IR, leaves its results as they
    are, and on a core with AVX-512 the loop runs in 512-bit registers."""
    import llvmlite.binding as llvm
    from numba import njit

    from gpuvgm._backends._numba_math import exp_lanes, wide_vectors

    @njit(cache=False, error_model="numpy")
    def wide_exp(x, y):
        wide_vectors()
        for i in range(x.size):
            y[i] = exp_lanes(-x[i])

    @njit(cache=False, error_model="numpy")
    def plain_exp(x, y):
        for i in range(x.size):
            y[i] = exp_lanes(-x[i])

    x = np.linspace(0.0, 700.0, 10_007)
    y_wide, y_plain = np.empty_like(x), np.empty_like(x)
    wide_exp(x, y_wide)
    plain_exp(x, y_plain)
    np.testing.assert_array_equal(y_wide, y_plain)
    np.testing.assert_allclose(y_wide, np.exp(-x), rtol=F64_RTOL, atol=0)
    ir_text = next(iter(wide_exp.inspect_llvm().values()))
    assert '"prefer-vector-width"="512"' in ir_text
    assert '"prefer-vector-width"' not in next(iter(plain_exp.inspect_llvm().values()))
    if llvm.get_host_cpu_features().get("avx512f"):
        assert "zmm" in next(iter(wide_exp.inspect_asm().values()))


def test_importing_gpuvgm_imports_no_numba():
    code = "import sys, gpuvgm; print('numba' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


def test_device_selects_the_backend():
    assert get_backend("cpu") is nb
    assert get_backend("numpy") is ref
    x = _chunk(3000, 2)
    fits = {}
    for device in ("cpu", "numpy"):
        model = gpuvgm.VGM(5, max_iter=5, tol=0.0, device=device, random_state=0)
        with pytest.warns(gpuvgm.ConvergenceWarning):
            model.fit(x)
        fits[device] = model
    assert fits["cpu"].backend_ == "numba" and fits["numpy"].backend_ == "numpy"
    np.testing.assert_allclose(fits["cpu"].means_, fits["numpy"].means_, rtol=1e-9)
    np.testing.assert_allclose(fits["cpu"].weights_, fits["numpy"].weights_, rtol=1e-9, atol=1e-12)


def test_launches_from_several_python_threads_are_safe():
    from concurrent.futures import ThreadPoolExecutor

    chunk = _chunk(50_000, 2, np.float32)
    p = _params(chunk, 10)
    want = nb.estep_stats(chunk, p)
    with ThreadPoolExecutor(4) as pool:
        for got in pool.map(lambda _: nb.estep_stats(chunk, p), range(8)):
            np.testing.assert_array_equal(got.nk, want.nk)


def test_fit_report_records_cpu_utilisation():
    x = np.random.default_rng(0).normal(size=(5000, 1))
    report = gpuvgm.VGM(3, max_iter=5, device="cpu", random_state=0).fit(x).fit_report_
    cpu = report["cpu"]
    assert cpu["cores"] >= 1
    assert cpu["wall_seconds"] == report["seconds"]["total"]
    assert cpu["process_seconds"] >= 0.0
    assert cpu["utilisation"] == pytest.approx(
        cpu["process_seconds"] / cpu["wall_seconds"] / cpu["cores"]
    )
