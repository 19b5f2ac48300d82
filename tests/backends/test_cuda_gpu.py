"""The CUDA backend through CuPy against the NumPy backend (needs a GPU; skipped otherwise).

The same cases and tolerances as the host emulation of the kernels (test_kernels_emulated.py), now
on the device with NVRTC-compiled kernels, NumPy and CuPy inputs, plus what only a GPU shows:
run-to-run bit identity on the real scheduler, out-of-memory retries, results left on the device.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from _helpers.emulation import (
    CASE_IDS,
    CASES,
    assert_stats_close,
    make_case,
    make_transform_params,
)
from conftest import rtol

from gpuvgm._backends import _cuda
from gpuvgm._backends import _numpy as ref
from gpuvgm._errors import DataError, DataTypeError

pytestmark = pytest.mark.gpu

# Collected everywhere; the conftest skips `gpu` items when CuPy or a GPU is missing.
cupy = pytest.importorskip("cupy")


def _on(chunk: np.ndarray, device: bool):
    return cupy.asarray(chunk) if device else chunk


def _host(a):
    return cupy.asnumpy(a) if isinstance(a, cupy.ndarray) else a


def test_backend_is_available():
    assert _cuda.unavailable_reason() is None


@pytest.mark.parametrize(("n_rows", "n_cols", "k", "dtype", "order"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("compute", [np.float32, np.float64], ids=["f32math", "f64math"])
@pytest.mark.parametrize("device", [False, True], ids=["numpy-in", "cupy-in"])
def test_estep_stats(n_rows, n_cols, k, dtype, order, compute, device):
    chunk, params = make_case(n_rows + 10 * k, n_rows, n_cols, k, dtype, order)
    got = _cuda.estep_stats(_on(chunk, device), params, compute_dtype=compute)
    assert_stats_close(got, ref.estep_stats(chunk, params), rtol(compute, "twin"))


@pytest.mark.parametrize("compute", [np.float32, np.float64], ids=["f32math", "f64math"])
def test_estep_stats_bit_identical_between_runs(compute):
    chunk, params = make_case(5, 3_000_000, 2, 10, np.float32, "F")
    x = cupy.asarray(chunk)
    runs = [_cuda.estep_stats(x, params, compute_dtype=compute) for _ in range(3)]
    for name in ("nk", "s1", "s2", "h", "log_prob", "count"):
        first = getattr(runs[0], name).tobytes()
        assert all(getattr(r, name).tobytes() == first for r in runs[1:]), name


@pytest.mark.parametrize(("n_rows", "n_cols", "k", "dtype", "order"), CASES[::3], ids=CASE_IDS[::3])
def test_assign_stats(n_rows, n_cols, k, dtype, order):
    chunk, params = make_case(n_rows + 1, n_rows, n_cols, k, dtype, order)
    centers = params.means.copy()
    got = _cuda.assign_stats(cupy.asarray(chunk), centers, params)
    want = ref.assign_stats(chunk, centers, params)
    np.testing.assert_array_equal(got.nk, want.nk)
    assert_stats_close(got, want, 1e-12)


@pytest.mark.parametrize(
    ("n_rows", "n_cols", "k", "dtype", "order"), CASES[1::4], ids=CASE_IDS[1::4]
)
def test_log_resp(n_rows, n_cols, k, dtype, order):
    chunk, params = make_case(n_rows + 2, n_rows, n_cols, k, dtype, order)
    got = _cuda.log_resp(chunk, params)
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, ref.log_resp(chunk, params), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("n_rows", "n_cols", "k", "dtype", "order"), CASES[::2], ids=CASE_IDS[::2])
def test_moments(n_rows, n_cols, k, dtype, order):
    chunk, _ = make_case(n_rows + 3, n_rows, n_cols, k, dtype, order)
    got, want = _cuda.moments(cupy.asarray(chunk)), ref.moments(chunk)
    for name in ("count", "minimum", "maximum", "n_null"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.m2, want.m2, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize(("n_rows", "n_cols", "k", "dtype", "order"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("sample", [False, True], ids=["argmax", "sample"])
@pytest.mark.parametrize("device", [False, True], ids=["numpy-in", "cupy-in"])
def test_transform(n_rows, n_cols, k, dtype, order, sample, device):
    chunk, params = make_case(n_rows + 20 * k, n_rows, n_cols, k, dtype, order)
    tp = make_transform_params(params, n_rows, sample, clip=0.99 if n_rows % 2 else np.inf)
    got = _cuda.transform(_on(chunk, device), tp, 3 * n_rows + 1)
    want = ref.transform(chunk, tp, 3 * n_rows + 1)
    assert all(isinstance(a, cupy.ndarray) == device for a in got[:3])
    names = ("normalized", "component", "null", "n_clipped")
    for g, w, name in zip(got, want, names, strict=True):
        np.testing.assert_array_equal(_host(g), w, err_msg=name)


@pytest.mark.parametrize("device", [False, True], ids=["numpy-in", "cupy-in"])
def test_inverse(device):
    _, params = make_case(14, 5, 5, 10, np.float64, "C")
    tp = make_transform_params(params, 14, sample=False, clip=np.inf)
    rng = np.random.default_rng(0)
    alpha = rng.uniform(-1.0, 1.0, (10_001, 5))
    alpha[rng.random(alpha.shape) < 0.05] = np.nan
    component = (rng.random((10_001, 5)) * tp.n_valid).astype(np.int32)
    got = _cuda.inverse(_on(alpha, device), _on(component, device), tp)
    np.testing.assert_array_equal(_host(got), ref.inverse(alpha, component, tp))


def test_bad_inputs_are_refused_before_launch():
    chunk, params = make_case(1, 100, 1, 3, np.float32, "C")
    with pytest.raises(DataTypeError, match="float32 or float64"):
        _cuda.estep_stats(chunk.astype(np.int32), params)
    with pytest.raises(DataError, match="2-D"):
        _cuda.estep_stats(chunk[:, 0], params)
    with pytest.raises(DataError, match="out of range"):
        _cuda.estep_stats(chunk[:, :1], params)


def test_out_of_memory_is_retried_in_pieces(monkeypatch, caplog):
    chunk, params = make_case(17, 300_000, 1, 10, np.float32, "C")
    real = _cuda._rows

    def tight(array, on_host, start, stop):
        if stop - start > 100_000:  # a device that cannot hold more than 100 000 rows at a time
            raise cupy.cuda.memory.OutOfMemoryError(stop - start, 0)
        return real(array, on_host, start, stop)

    monkeypatch.setattr(_cuda, "_rows", tight)
    monkeypatch.setattr(_cuda, "_MIN_PIECE_ROWS", 1_000)
    with caplog.at_level(logging.WARNING, logger="gpuvgm"):
        got = _cuda.estep_stats(chunk, params)
    assert "out of memory" in caplog.text
    assert_stats_close(got, ref.estep_stats(chunk, params), rtol(np.float32, "twin"))


@pytest.mark.parametrize(
    ("n_rows", "dtype", "order"),
    [(1, np.float32, "C"), (257, np.float64, "F"), (1_000_003, np.float32, "F")],
)
@pytest.mark.parametrize("limit", [0, 2**24, 2**31, 2**32 - 1])
@pytest.mark.parametrize("device", [False, True], ids=["numpy-in", "cupy-in"])
def test_sample_candidates(n_rows, dtype, order, limit, device):
    chunk, _ = make_case(n_rows, n_rows, 2, 1, dtype, order)
    args = ((1 << 40) + 5, 0xFFFFFFFF, 1, 2**32 - 5, limit)  # rows cross 2**32
    got = _cuda.sample_candidates(_on(chunk, device), *args)
    want = ref.sample_candidates(chunk, *args)
    for g, w, name in zip(got, want, ("rows", "words", "values"), strict=True):
        assert isinstance(g, np.ndarray) and g.dtype == w.dtype, name
        np.testing.assert_array_equal(g, w, err_msg=name)


def test_sample_candidates_in_pieces(monkeypatch):
    """The rows of a piece are shifted back to the chunk's, and its global rows are the chunk's."""
    chunk, _ = make_case(18, 50_001, 2, 1, np.float64, "C")
    cuts = [0, 1, 777, 30_000, 50_001]

    def fixed_pieces(label, kernel, shape, run, **grid):
        assert shape[0] == cuts[-1]
        return [run(cuts[i], cuts[i + 1], 1) for i in range(len(cuts) - 1)]

    monkeypatch.setattr(_cuda, "_launch_pieces", fixed_pieces)
    args = (7, 3, 1, 123, 2**30)
    got = _cuda.sample_candidates(cupy.asarray(chunk), *args)
    for g, w in zip(got, ref.sample_candidates(chunk, *args), strict=True):
        np.testing.assert_array_equal(g, w)
