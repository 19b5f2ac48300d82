"""The CUDA kernels, built for the CPU with the host emulation, against the NumPy backend.

``kernels/*.cu`` are compiled unchanged by g++ with ``cuda_emulation.h`` (one OS thread
per CUDA thread, real barriers and warp shuffles, blocks one at a time, warp 0 first between
barriers) into a shared library (``tests/emulation/shim.cpp``) that launches them over a grid of
several blocks (``tests/_helpers/emulation.py``). The parameter tables come from the CUDA
backend's own packers, so these tests check what a GPU would be fed. No GPU and no CuPy needed;
skipped only without a C++20 compiler.
"""

from __future__ import annotations

import ctypes
import itertools
import shutil

import numpy as np
import pytest
from _helpers.emulation import (
    CASE_IDS,
    CASES,
    CXX,
    ROWS,
    assert_stats_close,
    emu_assign_stats,
    emu_estep_stats,
    emu_inverse,
    emu_log_resp,
    emu_moments,
    emu_transform,
    library,
    make_case,
    make_transform_params,
    ptr,
)
from conftest import rtol

from gpuvgm import _rng
from gpuvgm._backends import _numpy as ref
from gpuvgm._model import EStepParams

pytestmark = pytest.mark.skipif(
    shutil.which(CXX) is None,
    reason=f"{CXX} (a C++20 compiler) is not installed: the kernel emulation tests need it",
)


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lib() -> ctypes.CDLL:
    return library()


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
    lib.emu_philox_words(seed, column, stream, start, n, ptr(out))
    np.testing.assert_array_equal(out, _rng.random_words(seed, column, start, n, stream))


@pytest.mark.parametrize(("n_rows", "n_cols", "k", "dtype", "order"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("compute", [np.float32, np.float64], ids=["f32math", "f64math"])
def test_estep_stats(lib, n_rows, n_cols, k, dtype, order, compute):
    chunk, params = make_case(n_rows + 10 * k, n_rows, n_cols, k, dtype, order)
    got = emu_estep_stats(lib, chunk, params, compute)
    assert_stats_close(got, ref.estep_stats(chunk, params), rtol(compute, "twin"))


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
    assert_stats_close(got, ref.estep_stats(chunk, params), rtol(np.float64, "twin"))


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
    good = emu_estep_stats(library(), chunk, params, np.float64, grid_x=1)
    assert_stats_close(good, want, 1e-12)
    broken_lib = library(("-DGPUVGM_EMU_DROP_SYNCTHREADS",))
    broken = emu_estep_stats(broken_lib, chunk, params, np.float64, grid_x=1)
    assert not np.allclose(broken.nk, want.nk, rtol=1e-3)
    assert not np.allclose(broken.s2, want.s2, rtol=1e-3)
