"""The CUDA kernels, built for the CPU with the host emulation, against the NumPy backend.

``kernels/*.cu`` are compiled unchanged by g++ with ``cuda_emulation.h`` (one OS thread
per CUDA thread, real barriers and warp shuffles, blocks one at a time, warp 0 first between
barriers) into a shared library (``tests/emulation/shim.cpp``) that launches them over a grid of
several blocks. The parameter tables come from the CUDA backend's own packers, so these tests
check what a GPU would be fed. No GPU and no CuPy needed; skipped only without a C++20 compiler.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from gpuvgm import _rng
from gpuvgm._backends import _cuda
from gpuvgm._backends import _numpy as ref
from gpuvgm._model import EStepParams, Stats, TransformParams

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
EMULATION = Path(__file__).resolve().parent / "emulation"
SHIM = EMULATION / "shim.cpp"
CXX = os.environ.get("CXX", "g++")
# -ffp-contract=off: the host rounds a * b + c twice, as NumPy does and as the kernels' exact paths
# ask for on the GPU. -fno-gnu-unique: the emulated __shared__ arrays (static locals of inline
# functions) would otherwise be one object across every loaded build of the library, so a second
# build (the one without barriers) would read the first one's shared memory.
CXXFLAGS = (
    "-std=c++20", "-O2", "-fPIC", "-shared", "-pthread", "-ffp-contract=off", "-fno-gnu-unique",
    "-Wall", "-Wextra", "-Wno-unknown-pragmas",
)  # fmt: skip
# Small grids of several blocks: rows straddle blocks and every thread loops (grid stride).
GRID_X = 3
BLOCK = 128

pytestmark = pytest.mark.skipif(
    shutil.which(CXX) is None,
    reason=f"{CXX} (a C++20 compiler) is not installed: the kernel emulation tests need it",
)

i64 = ctypes.c_longlong
u64 = ctypes.c_ulonglong
vp = ctypes.c_void_p
c_int = ctypes.c_int
c_double = ctypes.c_double
c_float = ctypes.c_float

_SIGNATURES = {
    "emu_estep_stats": [vp, c_int, c_int, i64, i64, i64, vp, c_int, c_int, vp, c_int, c_int, vp],
    "emu_assign_stats": [vp, c_int, i64, i64, i64, vp, c_int, c_int, vp, c_int, c_int, vp],
    "emu_log_resp": [vp, c_int, i64, i64, i64, vp, c_int, c_int, vp, c_int, c_int, vp],
    "emu_moments": [vp, c_int, i64, i64, i64, vp, c_int, c_int, c_int, vp, vp, vp],
    "emu_transform": [
        vp, c_int, i64, i64, i64, vp, c_int, c_int, vp, vp, u64, i64, c_int, c_double, c_float,
        c_int, c_int, vp, vp, vp, vp,
    ],
    "emu_inverse": [
        vp, c_int, i64, i64, vp, c_int, i64, i64, i64, c_int, vp, c_int, vp, c_int, c_int, vp,
    ],
    "emu_philox_words": [u64, u64, ctypes.c_uint, u64, i64, vp],
    "emu_sample_candidates": [
        i64, u64, u64, ctypes.c_uint, i64, ctypes.c_uint, c_int, c_int, vp, vp, vp,
    ],
}  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Building and calling the emulated kernels
# ------------------------------------------------------------------------------------------------


def _compiler_id() -> str:
    out = subprocess.run([CXX, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else CXX


@functools.cache
def _library(defines: tuple[str, ...] = ()) -> ctypes.CDLL:
    """Build (once per source hash, cached on disk) and load the emulation library."""
    sources = sorted(p for p in KERNELS.iterdir() if p.suffix in {".cu", ".cuh"})
    digest = hashlib.sha256()
    for path in [*sources, EMULATION / "cuda_emulation.h", SHIM]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(" ".join((*CXXFLAGS, *defines, _compiler_id())).encode())
    cache = Path(os.environ.get("GPUVGM_EMU_CACHE", Path(tempfile.gettempdir()) / "gpuvgm-emu"))
    lib_path = cache / f"libgpuvgm_emu_{digest.hexdigest()[:20]}.so"
    if not lib_path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = lib_path.with_name(f"{lib_path.name}.{os.getpid()}.tmp")
        cmd = [CXX, *CXXFLAGS, *defines, f"-I{KERNELS}", str(SHIM), "-o", str(tmp)]
        built = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if built.returncode != 0:
            pytest.fail(f"building the kernel emulation failed:\n{' '.join(cmd)}\n{built.stderr}")
        os.replace(tmp, lib_path)  # atomic: concurrent sessions never load a half-written file
    lib = ctypes.CDLL(str(lib_path))
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = None if name == "emu_philox_words" else c_int
    return lib


def _p(a: np.ndarray) -> int:
    return a.ctypes.data


def _strides(a: np.ndarray) -> tuple[int, int]:
    return a.strides[0] // a.itemsize, a.strides[1] // a.itemsize


def _check(rc: int) -> None:
    assert rc == 0, "the emulation library has no instance for this dtype or K"


def emu_estep_stats(lib, chunk, params: EStepParams, compute, grid_x=GRID_X) -> Stats:
    k = params.n_components
    cols = np.ascontiguousarray(params.columns, dtype=np.int64)
    table = _cuda._estep_table(params)
    out = np.zeros((cols.size, 3 * k + 3))
    rs, cs = _strides(chunk)
    _check(lib.emu_estep_stats(
        _p(chunk), chunk.itemsize, np.dtype(compute).itemsize, chunk.shape[0], rs, cs, _p(cols),
        cols.size, k, _p(table), grid_x, BLOCK, _p(out),
    ))  # fmt: skip
    return _cuda._stats_from_table(out, k)


def emu_assign_stats(lib, chunk, centers, params: EStepParams) -> Stats:
    k = centers.shape[1]
    cols = np.ascontiguousarray(params.columns, dtype=np.int64)
    table = _cuda._assign_table(centers, params)
    out = np.zeros((cols.size, 3 * k + 3))
    rs, cs = _strides(chunk)
    _check(lib.emu_assign_stats(
        _p(chunk), chunk.itemsize, chunk.shape[0], rs, cs, _p(cols), cols.size, k, _p(table),
        GRID_X, BLOCK, _p(out),
    ))  # fmt: skip
    return _cuda._stats_from_table(out, k)


def emu_log_resp(lib, chunk, params: EStepParams) -> np.ndarray:
    k = params.n_components
    cols = np.ascontiguousarray(params.columns, dtype=np.int64)
    table = _cuda._estep_table(params)
    out = np.zeros((chunk.shape[0], cols.size, k))
    rs, cs = _strides(chunk)
    _check(lib.emu_log_resp(
        _p(chunk), chunk.itemsize, chunk.shape[0], rs, cs, _p(cols), cols.size, k, _p(table),
        GRID_X, BLOCK, _p(out),
    ))  # fmt: skip
    return out


def emu_moments(lib, chunk):
    """The CUDA backend's two passes and host reductions, on the emulated kernels."""
    n_cols = chunk.shape[1]
    cols = np.arange(n_cols, dtype=np.int64)
    rs, cs = _strides(chunk)
    sums = np.zeros((GRID_X, n_cols, 5))
    args = (_p(chunk), chunk.itemsize, chunk.shape[0], rs, cs, _p(cols), n_cols, GRID_X, BLOCK)
    _check(lib.emu_moments(*args, _p(sums), None, None))
    reduced = _cuda._reduce_moment_partials(sums)
    count = reduced[:, 0]
    mean = np.where(count > 0, reduced[:, 1] / np.maximum(count, 1.0), 0.0)
    m2 = np.zeros((GRID_X, n_cols))
    _check(lib.emu_moments(*args, None, _p(mean), _p(m2)))
    return _cuda._moments_from_partials(reduced, m2.sum(axis=0), mean)


def emu_transform(lib, chunk, params: TransformParams, row_offset, margin=_cuda.SAMPLE_MARGIN):
    """``(normalized, component, null, n_clipped, n_fallback)``."""
    k = params.estep.n_components
    cols = np.ascontiguousarray(params.estep.columns, dtype=np.int64)
    table, info = _cuda._transform_tables(params)
    n = chunk.shape[0]
    normalized = np.empty((n, cols.size))
    component = np.empty((n, cols.size), dtype=np.int32)
    null = np.empty((n, cols.size), dtype=bool)
    counts = np.zeros((cols.size, 2), dtype=np.uint64)
    rs, cs = _strides(chunk)
    _check(lib.emu_transform(
        _p(chunk), chunk.itemsize, n, rs, cs, _p(cols), cols.size, k, _p(table), _p(info),
        params.seed, row_offset, int(params.sample), params.clip, margin, GRID_X, BLOCK,
        _p(normalized), _p(component), _p(null), _p(counts),
    ))  # fmt: skip
    counts = counts.astype(np.int64)
    return normalized, component, null, counts[:, 0], counts[:, 1]


def emu_inverse(lib, normalized, component, params: TransformParams) -> np.ndarray:
    table, n_valid = _cuda._inverse_table(params)
    k = table.shape[1] // 2
    n, n_cols = normalized.shape
    out = np.empty((n, n_cols))
    ars, acs = _strides(normalized)
    crs, ccs = _strides(component)
    _check(lib.emu_inverse(
        _p(normalized), normalized.itemsize, ars, acs, _p(component), component.itemsize, crs,
        ccs, n, n_cols, _p(table), k, _p(n_valid), GRID_X, BLOCK, _p(out),
    ))  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------------
# Data: columns drawn from a known mixture, in data units far from the working frame
# ------------------------------------------------------------------------------------------------


def make_case(seed, n_rows, n_cols, k, dtype, order, null_fraction=0.05):
    """``(chunk, params)``: the chunk has one extra column, params select the others shuffled."""
    rng = np.random.default_rng(seed)
    means = np.sort(rng.uniform(-2.0, 2.0, (n_cols, k)), axis=1)
    stds = rng.uniform(0.05, 1.0, (n_cols, k))  # down to 5 % of the column: narrow modes
    weights = rng.dirichlet(np.ones(k), n_cols)
    precisions = 1.0 / stds**2
    # C_k as the E-step would have it: log weight - 0.5 log(2 pi) + 0.5 log precision.
    log_consts = np.log(weights) - 0.5 * np.log(2.0 * np.pi) + 0.5 * np.log(precisions)
    shift = rng.uniform(-1000.0, 1000.0, n_cols)
    scale = rng.uniform(0.5, 5.0, n_cols)
    label = np.stack([rng.choice(k, n_rows, p=w) for w in weights], axis=1)  # (n, C)
    cols_idx = np.arange(n_cols)[None, :]
    xw = means[cols_idx, label] + rng.standard_normal((n_rows, n_cols)) * stds[cols_idx, label]
    data = np.empty((n_rows, n_cols + 1))
    positions = rng.permutation(n_cols + 1)[:n_cols]
    data[:, positions] = shift + scale * xw
    data[:, np.setdiff1d(np.arange(n_cols + 1), positions)] = rng.standard_normal((n_rows, 1))
    data[rng.random(data.shape) < null_fraction] = np.nan
    chunk = np.asarray(data.astype(dtype), order=order)
    params = EStepParams(
        columns=positions.astype(np.int64),
        shift=shift,
        scale=scale,
        means=means,
        precisions=precisions,
        log_consts=log_consts,
    )
    return chunk, params


def make_transform_params(params: EStepParams, seed, sample, clip) -> TransformParams:
    rng = np.random.default_rng(seed + 1)
    n_cols, k = params.means.shape
    valid = rng.random((n_cols, k)) < 0.7
    valid[np.arange(n_cols), rng.integers(0, k, n_cols)] = True  # at least one per column
    scale = params.scale[:, None]
    return TransformParams(
        estep=params,
        means=params.means * scale + params.shift[:, None],
        stds=scale / np.sqrt(params.precisions),
        valid=valid,
        column_keys=rng.integers(0, 1000, n_cols),
        seed=(1 << 40) + 12345 + seed,  # both halves of the Philox key in use
        sample=sample,
        clip=clip,
    )


ROWS = (1, 255, 256, 257, 100_003)
# Every (rows, columns, K) combination; dtype and memory order alternate over them so that each
# of the four (dtype, order) pairs meets both column counts, both K and the large chunk.
CASES = [
    (n, c, k, (np.float32, np.float64)[i % 2], "CF"[(i // 2) % 2])
    for i, (n, c, k) in enumerate(itertools.product(ROWS, (1, 7), (1, 10)))
]
CASE_IDS = [f"n{n}-c{c}-k{k}-{np.dtype(t).name}-{o}" for n, c, k, t, o in CASES]


# ------------------------------------------------------------------------------------------------
# Tolerances: relative to each statistic's natural scale in its column
# ------------------------------------------------------------------------------------------------

#: Float compute (float exponentials, float tiles, double accumulation) and double compute.
RTOL = {np.float32: 1e-6, np.float64: 1e-12}


def assert_stats_close(got: Stats, want: Stats, rtol: float) -> None:
    np.testing.assert_array_equal(got.count, want.count)
    count = want.count[:, None]
    # |S1_k| <= sqrt(N_k S2_k) (Cauchy-Schwarz): the scale S1's cancellation cannot hide under.
    s1_scale = np.sqrt(np.maximum(want.nk * want.s2, 0.0))
    # Relative to the statistic, or to 1 % of the column's rows when it is smaller: a float l_k
    # of magnitude 40 is 2e-6 off, which a component holding 1e-3 of one row cannot absorb, and
    # need not (the M-step divides its sums by nk + 10 eps).
    floor = 1e-2 * count
    checks = {
        "nk": (got.nk, want.nk, np.abs(want.nk) + floor),
        "s1": (got.s1, want.s1, s1_scale + floor),
        "s2": (got.s2, want.s2, np.abs(want.s2) + floor),
        # H and log_prob enter the lower bound, a sum of O(1) terms per row: per-row absolute
        # errors are what count (a float log of s = 1 +- 1 ulp is 1e-7 off where H is 0).
        "h": (got.h, want.h, np.abs(want.h) + want.count),
        "log_prob": (got.log_prob, want.log_prob, np.abs(want.log_prob) + want.count),
    }
    for name, (g, w, scale) in checks.items():
        err = np.abs(g - w)
        bad = err > rtol * scale
        assert not bad.any(), (
            f"{name}: max error / scale = {np.max(err / np.where(scale > 0, scale, 1)):.3g} "
            f"> rtol {rtol:g}"
        )


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lib() -> ctypes.CDLL:
    return _library()


@pytest.mark.parametrize(
    ("seed", "column", "stream", "start", "n"),
    [
        (0, 0, 0, 0, 37),
        (12345, 3, 0, 5, 64),
        ((1 << 40) + 7, 999, 1, 2**32 * 4 - 6, 16),  # the block counter's high word flips
        (2**64 - 1, 2**32 - 1, 0, 2**45 + 3, 9),
    ],
)
def test_philox_words_equal_rng(lib, seed, column, stream, start, n):
    out = np.empty(n, dtype=np.uint32)
    lib.emu_philox_words(seed, column, stream, start, n, _p(out))
    np.testing.assert_array_equal(out, _rng.random_words(seed, column, start, n, stream))


@pytest.mark.parametrize(("n_rows", "n_cols", "k", "dtype", "order"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("compute", [np.float32, np.float64], ids=["f32math", "f64math"])
def test_estep_stats(lib, n_rows, n_cols, k, dtype, order, compute):
    chunk, params = make_case(n_rows + 10 * k, n_rows, n_cols, k, dtype, order)
    got = emu_estep_stats(lib, chunk, params, compute)
    assert_stats_close(got, ref.estep_stats(chunk, params), RTOL[compute])


@pytest.mark.parametrize("compute", [np.float32, np.float64], ids=["f32math", "f64math"])
def test_estep_stats_bit_identical_between_runs(lib, compute):
    chunk, params = make_case(5, 20_000, 3, 10, np.float32, "C")
    first = emu_estep_stats(lib, chunk, params, compute)
    second = emu_estep_stats(lib, chunk, params, compute)
    for name in ("nk", "s1", "s2", "h", "log_prob", "count"):
        a, b = getattr(first, name), getattr(second, name)
        assert a.tobytes() == b.tobytes(), name


def test_estep_stats_columns_of_a_timestamp_frame(lib):
    """Values 1.7e9 +- 10: the kernel's working frame keeps the digits, as the twin's does."""
    chunk, params = make_case(7, 5_000, 2, 3, np.float64, "F", null_fraction=0.0)
    params = EStepParams(
        columns=params.columns,
        shift=np.full(2, 1.7e9),
        scale=np.full(2, 10.0),
        means=params.means,
        precisions=params.precisions,
        log_consts=params.log_consts,
    )
    rng = np.random.default_rng(3)
    chunk = np.asfortranarray(1.7e9 + 10.0 * rng.standard_normal(chunk.shape))
    got = emu_estep_stats(lib, chunk, params, np.float64)
    assert_stats_close(got, ref.estep_stats(chunk, params), RTOL[np.float64])


@pytest.mark.parametrize(("n_rows", "n_cols", "k", "dtype", "order"), CASES[::3], ids=CASE_IDS[::3])
def test_assign_stats(lib, n_rows, n_cols, k, dtype, order):
    chunk, params = make_case(n_rows + 1, n_rows, n_cols, k, dtype, order)
    centers = params.means.copy()
    if k > 1:
        centers[:, 1] = centers[:, 0]  # a tie: every value goes to the lower index
    got = emu_assign_stats(lib, chunk, centers, params)
    want = ref.assign_stats(chunk, centers, params)
    np.testing.assert_array_equal(got.nk, want.nk)  # the labels are identical
    np.testing.assert_array_equal(got.count, want.count)
    assert_stats_close(got, want, 1e-12)


@pytest.mark.parametrize(
    ("n_rows", "n_cols", "k", "dtype", "order"), CASES[1::4], ids=CASE_IDS[1::4]
)
def test_log_resp(lib, n_rows, n_cols, k, dtype, order):
    chunk, params = make_case(n_rows + 2, n_rows, n_cols, k, dtype, order)
    got = emu_log_resp(lib, chunk, params)
    want = ref.log_resp(chunk, params)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("n_rows", "n_cols", "k", "dtype", "order"), CASES[::2], ids=CASE_IDS[::2])
def test_moments(lib, n_rows, n_cols, k, dtype, order):
    chunk, _ = make_case(n_rows + 3, n_rows, n_cols, k, dtype, order)
    got = emu_moments(lib, chunk)
    want = ref.moments(chunk)
    for name in ("count", "minimum", "maximum", "n_null"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.m2, want.m2, rtol=1e-11, atol=1e-12)


def test_moments_of_an_all_null_column(lib):
    chunk = np.full((300, 2), np.nan)
    chunk[:, 1] = np.arange(300.0)
    got, want = emu_moments(lib, chunk), ref.moments(chunk)
    for name in ("count", "mean", "m2", "minimum", "maximum", "n_null"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12)


def _assert_transform_equal(got, want) -> None:
    normalized, component, null, n_clipped = got[:4]
    w_normalized, w_component, w_null, w_clipped = want
    np.testing.assert_array_equal(null, w_null)
    np.testing.assert_array_equal(component, w_component)
    # Same operations in the same order on the same component: alpha is equal to the last bit.
    np.testing.assert_array_equal(normalized, w_normalized)
    np.testing.assert_array_equal(n_clipped, w_clipped)


@pytest.mark.parametrize(("n_rows", "n_cols", "k", "dtype", "order"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("sample", [False, True], ids=["argmax", "sample"])
def test_transform(lib, n_rows, n_cols, k, dtype, order, sample):
    chunk, params = make_case(n_rows + 20 * k, n_rows, n_cols, k, dtype, order)
    tp = make_transform_params(params, n_rows, sample, clip=0.99 if n_rows % 2 else np.inf)
    row_offset = 3 * n_rows + 1  # a global row index that is not a multiple of 4
    got = emu_transform(lib, chunk, tp, row_offset)
    want = ref.transform(chunk, tp, row_offset)
    _assert_transform_equal(got, want)
    if n_rows == ROWS[-1] and tp.clip < np.inf:
        assert want[3].sum() > 0, "the case should clip some values"
    if sample and n_rows == ROWS[-1] and k > 1:
        assert got[4].sum() > 0, "the double fallback of the sampler should have run"


def test_transform_sampling_all_in_double_equals_fast_path(lib):
    """margin >= 1 sends every draw to the double path: same components as the fast path."""
    chunk, params = make_case(11, 30_000, 2, 10, np.float32, "C")
    tp = make_transform_params(params, 11, sample=True, clip=np.inf)
    fast = emu_transform(lib, chunk, tp, 0)
    slow = emu_transform(lib, chunk, tp, 0, margin=2.0)
    np.testing.assert_array_equal(fast[1], slow[1])
    assert slow[4].sum() == np.count_nonzero(~slow[2])  # every non-null row went to double
    assert fast[4].sum() < 0.01 * slow[4].sum()


def test_transform_is_independent_of_chunking(lib):
    chunk, params = make_case(12, 3_001, 3, 10, np.float64, "C")
    tp = make_transform_params(params, 12, sample=True, clip=0.99)
    whole = emu_transform(lib, chunk, tp, 1_000)
    first = emu_transform(lib, np.ascontiguousarray(chunk[:1_234]), tp, 1_000)
    second = emu_transform(lib, np.ascontiguousarray(chunk[1_234:]), tp, 2_234)
    for i in range(3):
        np.testing.assert_array_equal(whole[i], np.concatenate([first[i], second[i]]))


@pytest.mark.parametrize(
    ("alpha_dtype", "comp_dtype", "order"),
    [(np.float64, np.int32, "C"), (np.float32, np.int64, "F"), (np.float64, np.int64, "F")],
)
@pytest.mark.parametrize("n_rows", [1, 257, 10_001])
def test_inverse(lib, alpha_dtype, comp_dtype, order, n_rows):
    _, params = make_case(14, 5, 5, 10, np.float64, "C")
    tp = make_transform_params(params, 14, sample=False, clip=np.inf)
    rng = np.random.default_rng(n_rows)
    alpha = rng.uniform(-1.0, 1.0, (n_rows, 5)).astype(alpha_dtype)
    alpha[rng.random(alpha.shape) < 0.05] = np.nan
    component = (rng.random((n_rows, 5)) * tp.n_valid).astype(comp_dtype)
    alpha, component = np.asarray(alpha, order=order), np.asarray(component, order=order)
    got = emu_inverse(lib, alpha, component, tp)
    np.testing.assert_array_equal(got, ref.inverse(alpha, component, tp))


def test_transform_then_inverse_round_trips(lib):
    chunk, params = make_case(15, 4_000, 3, 10, np.float64, "C")
    tp = make_transform_params(params, 15, sample=True, clip=np.inf)
    normalized, component, null, _, _ = emu_transform(lib, chunk, tp, 0)
    back = emu_inverse(lib, normalized, component, tp)
    x = chunk[:, tp.estep.columns]
    np.testing.assert_array_equal(np.isnan(back), null)
    np.testing.assert_allclose(back[~null], x[~null], rtol=1e-12)


_BROKEN_RUNS = itertools.count()


def test_missing_barrier_is_caught():
    """Without __syncthreads() the block reduction reads other warps' slots before they are
    written: the emulation runs warp 0 first between barriers, so it reads what an earlier launch
    left there, every time (fresh data per call, so those leftovers are never this data's)."""
    seed = 1000 + next(_BROKEN_RUNS)
    chunk, params = make_case(seed, 5_000, 1, 3, np.float64, "C", null_fraction=0.0)
    want = ref.estep_stats(chunk, params)
    good = emu_estep_stats(_library(), chunk, params, np.float64, grid_x=1)
    assert_stats_close(good, want, 1e-12)
    broken_lib = _library(("-DGPUVGM_EMU_DROP_SYNCTHREADS",))
    broken = emu_estep_stats(broken_lib, chunk, params, np.float64, grid_x=1)
    assert not np.allclose(broken.nk, want.nk, rtol=1e-3)
    assert not np.allclose(broken.s2, want.s2, rtol=1e-3)
