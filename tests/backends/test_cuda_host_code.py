"""The CUDA backend's host code, run on the CPU: CuPy replaced by a stand-in whose kernels are the
emulated ``kernels/*.cu`` (``tests/fakecupy``).

``test_kernels_emulated.py`` checks the kernels when fed the way its own launchers feed them; the
GPU tests (``test_cuda_gpu.py``) need a GPU. What lies between never ran without one: the
Python of ``gpuvgm/_backends/_cuda.py`` (argument lists, dtypes, strides, grids, the two-step
launches, the out-of-memory split, staging through pinned buffers, the device cache) and the
estimator driving it with ``device="cuda"``. Here it runs unchanged, each launch checked against
the kernel's declaration (types, dtypes, layouts, extents; see ``fakecupy/_kernels.py``) and run
on the host emulation over the grid ``_cuda.py`` computes, against the NumPy backend and
``device="cpu"`` as the reference.

The stand-in is installed as ``cupy``/``cupyx`` (``sys.modules``, ``_cuda.cupy`` and
``_cuda_memory.cupy``) only for the duration of each test; the memoized modules and SM counts of
``_cuda`` are cleared before and after, so the GPU tests, which skip without a real CuPy, never
see it.
"""

from __future__ import annotations

import copy
import logging
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import fakecupy
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _helpers.emulation import (
    CXX,
    assert_stats_close,
    library,
    make_case,
    make_transform_params,
)
from conftest import rtol

import gpuvgm
from gpuvgm._backends import _cuda, _cuda_memory, get_backend
from gpuvgm._backends import _numpy as ref
from gpuvgm._errors import ConvergenceWarning

pytestmark = pytest.mark.skipif(
    shutil.which(CXX) is None,
    reason=f"{CXX} (a C++20 compiler) is not installed: the kernel emulation tests need it",
)


def _clear_memoized() -> None:
    _cuda._module.cache_clear()
    _cuda._sm_count.cache_clear()


@pytest.fixture
def fake(monkeypatch):
    """The stand-in as ``cupy`` for this test only, on a fresh simulated device."""
    state = fakecupy.reset(library=library())
    _clear_memoized()
    monkeypatch.setitem(sys.modules, "cupy", fakecupy)
    monkeypatch.setitem(sys.modules, "cupyx", fakecupy.cupyx)
    monkeypatch.setattr(_cuda, "cupy", fakecupy)
    monkeypatch.setattr(_cuda_memory, "cupy", fakecupy)
    yield state
    _clear_memoized()
    assert not fakecupy.damaged_allocations(), "a write landed outside its device allocation"


def _on(chunk: np.ndarray, where: str):
    """``chunk`` in host memory, on the device, or as a row slice of a larger device array (a
    pointer inside its allocation, the strides of the larger array)."""
    if where == "host":
        return chunk
    if where == "device":
        return fakecupy.asarray(chunk)
    order = "F" if chunk.flags.f_contiguous and not chunk.flags.c_contiguous else "C"
    padded = np.full((chunk.shape[0] + 7, chunk.shape[1]), 7, dtype=chunk.dtype, order=order)
    padded[3 : 3 + chunk.shape[0]] = chunk
    return fakecupy.asarray(padded)[3 : 3 + chunk.shape[0]]


def _host(a):
    return a.get() if isinstance(a, fakecupy.ndarray) else a


def _names(state) -> list[str]:
    return [name for name, _, _ in state.launches]


WHERE = ["host", "device", "view"]
# (rows, columns, K, dtype, order): 1 and 3 columns (the chunk holds one more, unused), both
# dtypes and orders, a chunk of several grid-stride sweeps; K in the emulation's instances.
CASES = [
    (1, 1, 1, np.float32, "C"),
    (257, 3, 3, np.float64, "F"),
    (20_011, 1, 10, np.float32, "F"),
    (20_011, 3, 3, np.float64, "C"),
    (5_003, 3, 5, np.float32, "C"),
]
CASE_IDS = [f"n{n}-c{c}-k{k}-{np.dtype(t).name}-{o}" for n, c, k, t, o in CASES]


# ------------------------------------------------------------------------------------------------
# The stand-in itself: it runs the kernels, and it refuses what a GPU would get wrong
# ------------------------------------------------------------------------------------------------


def test_backend_is_available_through_the_stand_in(fake):
    assert _cuda.unavailable_reason() is None
    assert get_backend("cuda") is _cuda
    assert get_backend("auto") is _cuda


@pytest.mark.parametrize("family", ["moments", "estep", "transform", "sample"])
def test_every_name_expression_resolves_in_its_module(fake, family):
    module = _cuda._module(0, family, 5)
    for name in _cuda.kernel_names(family, 5):
        assert module.get_function(name).params, name


def test_the_stand_in_refuses_what_a_gpu_would_get_wrong(fake):
    kernel = _cuda._kernel("estep", "gpuvgm::log_resp<double, 3>", 3)
    x = fakecupy.zeros((10, 2))
    columns = fakecupy.arange(2, dtype=np.int64)
    table = fakecupy.zeros((2, 11))
    out = fakecupy.empty((10, 2, 3))
    i64 = np.int64
    good = (x, i64(10), i64(2), i64(1), columns, table, out)
    kernel((1, 2), (256,), good)
    assert _names(fake) == ["gpuvgm::log_resp<double, 3>"]

    def bad(args, exc, match, grid=(1, 2), block=(256,)):
        with pytest.raises(exc, match=match):
            kernel(grid, block, args)

    bad((x, np.int32(10), *good[2:]), TypeError, "n_rows is long long")
    bad((x, 10.0, *good[2:]), TypeError, "n_rows is long long")
    bad((x.get(), *good[1:]), TypeError, "needs a device array")
    bad((x.astype(np.float32), *good[1:]), TypeError, "the array's dtype is float32")
    bad((*good[:5], table.astype(np.float32), out), TypeError, "params is double")
    bad(good[:-1], TypeError, "takes 7 arguments")
    bad((x, i64(10), i64(1), i64(2), *good[4:]), ValueError, "stride")  # strides swapped
    bad((x, i64(11), *good[2:]), ValueError, "reads 11 rows")
    bad((*good[:6], fakecupy.empty((10, 2, 2))), ValueError, "out holds 40")
    bad((*good[:6], fakecupy.empty((3, 10, 2)).T), ValueError, "not C-contiguous")
    bad(good, ValueError, "__launch_bounds__", block=(512,))
    bad(good, ValueError, "whole number of warps", block=(100,))
    bad(good, ValueError, "grid", grid=(1, 0))
    # As with CuPy, device arrays do not turn into NumPy arrays behind the code's back.
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(x)
    with pytest.raises(TypeError):
        np.concatenate([x, x])
    with pytest.raises(TypeError):
        np.isnan(x)
    assert not isinstance(x, np.ndarray)


# ------------------------------------------------------------------------------------------------
# Each backend function, on host and on device chunks, against the NumPy backend
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize(("n_rows", "n_cols", "k", "dtype", "order"), CASES, ids=CASE_IDS)
def test_moments(fake, n_rows, n_cols, k, dtype, order, where):
    chunk, _ = make_case(n_rows + 3, n_rows, n_cols, k, dtype, order)
    got, want = _cuda.moments(_on(chunk, where)), ref.moments(chunk)
    for name in ("count", "minimum", "maximum", "n_null"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.m2, want.m2, rtol=1e-11, atol=1e-12)
    t = "float" if dtype == np.float32 else "double"
    assert _names(fake) == [f"gpuvgm::moments_sums<{t}>", f"gpuvgm::moments_m2<{t}>"]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize(("n_rows", "n_cols", "k", "dtype", "order"), CASES, ids=CASE_IDS)
def test_estep_stats(fake, n_rows, n_cols, k, dtype, order, where):
    chunk, params = make_case(n_rows + 10 * k, n_rows, n_cols, k, dtype, order)
    # Both compute dtypes over the cases, float32 compute only for float32 data's default.
    compute = (np.float32, np.float64)[(n_rows + WHERE.index(where)) % 2]
    got = _cuda.estep_stats(_on(chunk, where), params, compute_dtype=compute)
    assert_stats_close(got, ref.estep_stats(chunk, params), rtol(compute, "twin"))
    # Two launches: the partials of a grid of blocks, then their reduction, one block per slot.
    t = "float" if dtype == np.float32 else "double"
    ct = "float" if compute == np.float32 else "double"
    (stats, grid, block), (reduce, rgrid, _) = fake.launches
    assert (stats, reduce) == (f"gpuvgm::estep_stats<{t}, {ct}, {k}>", "gpuvgm::reduce_partials")
    assert grid[1] == n_cols and block == (_cuda.THREADS, 1, 1)
    assert rgrid == (n_cols * (3 * k + 3), 1, 1)


def test_estep_stats_default_compute_follows_the_data(fake):
    chunk, params = make_case(4, 3_000, 2, 3, np.float32, "C")
    _cuda.estep_stats(chunk, params)
    _cuda.estep_stats(chunk.astype(np.float64), params)
    assert _names(fake)[::2] == [
        "gpuvgm::estep_stats<float, float, 3>",
        "gpuvgm::estep_stats<double, double, 3>",
    ]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize(("n_rows", "n_cols", "k", "dtype", "order"), CASES, ids=CASE_IDS)
def test_assign_stats(fake, n_rows, n_cols, k, dtype, order, where):
    chunk, params = make_case(n_rows + 1, n_rows, n_cols, k, dtype, order)
    centers = params.means.copy()
    if k > 1:
        centers[:, 1] = centers[:, 0]  # a tie: every value goes to the lower index
    got = _cuda.assign_stats(_on(chunk, where), centers, params)
    want = ref.assign_stats(chunk, centers, params)
    np.testing.assert_array_equal(got.nk, want.nk)
    assert_stats_close(got, want, 1e-12)


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize(("n_rows", "n_cols", "k", "dtype", "order"), CASES, ids=CASE_IDS)
def test_log_resp(fake, n_rows, n_cols, k, dtype, order, where):
    chunk, params = make_case(n_rows + 2, n_rows, n_cols, k, dtype, order)
    got = _cuda.log_resp(_on(chunk, where), params)
    assert isinstance(got, fakecupy.ndarray) == (where != "host")
    np.testing.assert_allclose(_host(got), ref.log_resp(chunk, params), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sample", [False, True], ids=["argmax", "sample"])
@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize(("n_rows", "n_cols", "k", "dtype", "order"), CASES, ids=CASE_IDS)
def test_transform(fake, n_rows, n_cols, k, dtype, order, where, sample):
    chunk, params = make_case(n_rows + 20 * k, n_rows, n_cols, k, dtype, order)
    tp = make_transform_params(params, n_rows, sample, clip=0.99 if n_rows % 2 else np.inf)
    row_offset = 3 * n_rows + 1
    got = _cuda.transform(_on(chunk, where), tp, row_offset)
    want = ref.transform(chunk, tp, row_offset)
    assert all(isinstance(a, fakecupy.ndarray) == (where != "host") for a in got[:3])
    assert isinstance(got[3], np.ndarray)
    for g, w, name in zip(got, want, ("normalized", "component", "null", "n_clipped"), strict=True):
        g = _host(g)
        assert g.dtype == w.dtype, name
        np.testing.assert_array_equal(g, w, err_msg=name)


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize(
    ("alpha_dtype", "comp_dtype", "order", "n_cols"),
    [
        (np.float64, np.int32, "C", 3),
        (np.float32, np.int64, "F", 1),
        (np.float64, np.int64, "F", 3),
        (np.float32, np.int32, "C", 1),
    ],
)
@pytest.mark.parametrize("n_rows", [1, 10_001])
def test_inverse(fake, alpha_dtype, comp_dtype, order, n_cols, n_rows, where):
    _, params = make_case(14, 5, n_cols, 10, np.float64, "C")
    tp = make_transform_params(params, 14, sample=False, clip=np.inf)
    rng = np.random.default_rng(n_rows)
    alpha = rng.uniform(-1.0, 1.0, (n_rows, n_cols)).astype(alpha_dtype)
    alpha[rng.random(alpha.shape) < 0.05] = np.nan
    component = (rng.random((n_rows, n_cols)) * tp.n_valid).astype(comp_dtype)
    alpha, component = np.asarray(alpha, order=order), np.asarray(component, order=order)
    got = _cuda.inverse(_on(alpha, where), _on(component, where), tp)
    assert isinstance(got, fakecupy.ndarray) == (where != "host")
    np.testing.assert_array_equal(_host(got), ref.inverse(alpha, component, tp))
    at = "float" if alpha_dtype == np.float32 else "double"
    it = "int" if comp_dtype == np.int32 else "long long"
    assert _names(fake) == [f"gpuvgm::inverse<{at}, {it}>"]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("limit", [0, 2**24, 2**31, 2**32 - 1])
@pytest.mark.parametrize(
    ("n_rows", "n_cols", "dtype", "order"),
    [(1, 1, np.float32, "C"), (257, 3, np.float64, "F"), (30_001, 3, np.float32, "F")],
)
def test_sample_candidates(fake, n_rows, n_cols, dtype, order, limit, where):
    chunk, _ = make_case(n_rows, n_rows, n_cols, 1, dtype, order)
    args = ((1 << 40) + 5, 0xFFFFFFFF, 1, 2**32 - 5, limit)  # global rows cross 2**32
    got = _cuda.sample_candidates(_on(chunk, where), *args)
    want = ref.sample_candidates(chunk, *args)
    for g, w, name in zip(got, want, ("rows", "words", "values"), strict=True):
        assert isinstance(g, np.ndarray) and g.dtype == w.dtype, name
        np.testing.assert_array_equal(g, w, err_msg=name)


@pytest.mark.parametrize("where", ["host", "device"])
def test_empty_chunks(fake, where):
    """Zero rows (the stager hands them on): one block that does nothing, empty outputs."""
    full, params = make_case(19, 50, 2, 3, np.float32, "F")
    chunk = full[:0]
    x = _on(chunk, where)
    tp = make_transform_params(params, 19, sample=True, clip=0.99)
    got, want = _cuda.moments(x), ref.moments(chunk)
    np.testing.assert_array_equal(got.count, want.count)
    np.testing.assert_array_equal(got.n_null, want.n_null)
    assert_stats_close(_cuda.estep_stats(x, params), ref.estep_stats(chunk, params), 1e-12)
    centers = params.means
    assert_stats_close(
        _cuda.assign_stats(x, centers, params), ref.assign_stats(chunk, centers, params), 1e-12
    )
    assert _host(_cuda.log_resp(x, params)).shape == (0, 2, 3)
    for g, w in zip(_cuda.transform(x, tp, 0), ref.transform(chunk, tp, 0), strict=True):
        g = _host(g)
        assert g.shape == w.shape and g.dtype == w.dtype
    alpha = np.zeros((0, 2))
    component = np.zeros((0, 2), dtype=np.int32)
    assert _host(_cuda.inverse(_on(alpha, where), _on(component, where), tp)).shape == (0, 2)
    for g, w in zip(
        _cuda.sample_candidates(x, 1, 2, 1, 0, 2**32 - 1),
        ref.sample_candidates(chunk, 1, 2, 1, 0, 2**32 - 1),
        strict=True,
    ):
        assert g.shape == w.shape and g.dtype == w.dtype


# ------------------------------------------------------------------------------------------------
# The out-of-memory split
# ------------------------------------------------------------------------------------------------

OOM_ROWS = 20_000


def _run_all(x, params, tp, alpha, component, before=lambda name: None) -> dict:
    """Every function that splits on out-of-memory, ``before(name)`` called ahead of each."""
    calls = {
        "moments": lambda: _cuda.moments(x),
        "estep_stats": lambda: _cuda.estep_stats(x, params, compute_dtype=np.float64),
        "assign_stats": lambda: _cuda.assign_stats(x, params.means.copy(), params),
        "log_resp": lambda: _host(_cuda.log_resp(x, params)),
        "transform": lambda: tuple(_host(a) for a in _cuda.transform(x, tp, 5)),
        "inverse": lambda: _host(_cuda.inverse(alpha, component, tp)),
        "sample_candidates": lambda: _cuda.sample_candidates(x, 9, 3, 1, 7, 2**31),
    }
    out = {}
    for name, call in calls.items():
        before(name)
        out[name] = call()
    return out


def _assert_same(got: dict, want: dict) -> None:
    for field in ("count", "minimum", "maximum", "n_null"):
        np.testing.assert_array_equal(
            getattr(got["moments"], field), getattr(want["moments"], field)
        )
    np.testing.assert_allclose(got["moments"].mean, want["moments"].mean, rtol=1e-12)
    np.testing.assert_allclose(got["moments"].m2, want["moments"].m2, rtol=1e-10)
    for name in ("estep_stats", "assign_stats"):  # sums of pieces: the same within rounding
        assert_stats_close(got[name], want[name], 1e-12)
    for name in ("log_resp", "inverse"):
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    for name in ("transform", "sample_candidates"):
        for g, w in zip(got[name], want[name], strict=True):
            np.testing.assert_array_equal(g, w, err_msg=name)


@pytest.mark.parametrize("where", ["host", "device"])
def test_out_of_memory_is_retried_in_pieces(fake, monkeypatch, caplog, where):
    chunk, params = make_case(17, OOM_ROWS, 2, 3, np.float64, "C")
    tp = make_transform_params(params, 17, sample=True, clip=0.99)
    rng = np.random.default_rng(1)
    alpha = rng.uniform(-1, 1, (OOM_ROWS, 2))
    component = (rng.random((OOM_ROWS, 2)) * tp.n_valid).astype(np.int32)
    args = (_on(chunk, where), params, tp, _on(alpha, where), _on(component, where))
    whole = _run_all(*args)
    assert fake.oom_raised == 0
    n_whole = len(fake.launches)

    # A device that refuses any allocation over 6 000 rows of log_resp's output (2 x 3 doubles a
    # row; for sample_candidates, of its int64 rows): every function splits, log_resp down to
    # pieces of 5 000 rows. Device chunks allocate only outputs, concatenated on the device at the
    # end (where the split cannot help: the whole output must fit); for them a piece over 6 000
    # rows is refused where it is taken from the chunk, except in sample_candidates, whose
    # outputs come back to the host piece by piece.
    monkeypatch.setattr(_cuda, "_MIN_PIECE_ROWS", 1_000)
    real_rows = _cuda._rows

    def tight_rows(chunk, on_host, start, stop):
        if stop - start > 6_000:
            raise fakecupy.cuda.memory.OutOfMemoryError(stop - start, 0)
        return real_rows(chunk, on_host, start, stop)

    if where == "device":
        monkeypatch.setattr(_cuda, "_rows", tight_rows)

    marks: list[tuple[str, int]] = []

    def before(name: str) -> None:
        per_row = 8 if name == "sample_candidates" else 48
        fake.oom_above = 6_000 * per_row if where == "host" or per_row == 8 else None
        marks.append((name, len(caplog.records)))

    with caplog.at_level(logging.WARNING, logger="gpuvgm"):
        pieces = _run_all(*args, before=before)
    assert fake.free_all_blocks_calls > 0
    ends = [n for _, n in marks[1:]] + [len(caplog.records)]
    for (name, start), end in zip(marks, ends, strict=True):
        retries = [r for r in caplog.records[start:end] if "out of memory" in r.getMessage()]
        # Down to 5 000 rows where the largest array is log_resp's; at least once everywhere.
        assert len(retries) >= (3 if name == "log_resp" else 1), name
    assert len(fake.launches) > 2 * n_whole  # the pieces ran as launches of their own
    _assert_same(pieces, whole)


def test_out_of_memory_below_the_smallest_piece_is_raised(fake):
    chunk, params = make_case(18, OOM_ROWS, 2, 3, np.float32, "C")
    fake.oom_above = 10_000  # the chunk's copy cannot be made; pieces may not go below 65 536
    with pytest.raises(fakecupy.cuda.memory.OutOfMemoryError):
        _cuda.estep_stats(chunk, params)


# ------------------------------------------------------------------------------------------------
# Staging host chunks and the device cache
# ------------------------------------------------------------------------------------------------


def test_stage_gives_device_copies_of_the_host_chunks(fake):
    rng = np.random.default_rng(3)

    def chunk(n, dtype=np.float32, order="C", cols=3):
        a = rng.normal(size=(n, cols)).astype(dtype)
        a[rng.random(a.shape) < 0.1] = np.nan
        return np.asarray(a, order=order)

    on_device = fakecupy.asarray(chunk(50))
    chunks = [
        chunk(1_000),
        chunk(0),
        chunk(4_096, np.float64),
        chunk(10, order="F"),
        on_device,  # passes through
        chunk(30_000, order="F"),  # larger than every buffer so far: the slot grows
        chunk(7, cols=1),
        chunk(2_000, np.float64, "F"),
    ]
    offsets = np.cumsum([0] + [len(c) for c in chunks[:-1]])
    seen = 0
    for (offset, dev, host), want_offset, want in zip(
        _cuda.memory.stage(zip(offsets.tolist(), chunks, strict=True)), offsets, chunks, strict=True
    ):
        assert offset == want_offset and host is want
        assert isinstance(dev, fakecupy.ndarray)
        if want is on_device:
            assert dev is on_device
            continue
        assert dev.shape == want.shape and dev.dtype == want.dtype
        if want.flags.f_contiguous and not want.flags.c_contiguous:
            assert dev.flags.f_contiguous
        np.testing.assert_array_equal(dev.get(), want)  # valid until the next one is requested
        seen += want.nbytes
    assert fake.bytes_copied == seen


def test_stage_stopped_early_closes_cleanly(fake):
    chunks = ((i * 100, np.full((100, 2), float(i))) for i in range(10))
    stream = _cuda.memory.stage(chunks)
    for offset, dev, _ in stream:
        np.testing.assert_array_equal(dev.get(), offset // 100)
        if offset == 300:
            break
    stream.close()
    assert fake.bytes_copied <= 6 * 100 * 2 * 8  # at most two copies ahead of the consumer


def test_device_cache_helpers(fake):
    rng = np.random.default_rng(4)
    data = np.asarray(rng.normal(size=(1_000, 3)).astype(np.float32), order="F")
    cache = _cuda.memory.empty_cache(data.shape, data.dtype)
    assert isinstance(cache, fakecupy.ndarray) and cache.flags.f_contiguous
    _cuda.memory.cache_put(cache, 0, data[:400])  # from the host
    _cuda.memory.cache_put(cache, 400, fakecupy.asarray(np.ascontiguousarray(data[400:])))  # device
    np.testing.assert_array_equal(_cuda.memory.to_host(cache), data)

    for src in (data, fakecupy.asarray(data)):
        copied = _cuda.memory.to_device(src)
        assert isinstance(copied, fakecupy.ndarray) and copied is not src
        assert copied.flags.f_contiguous  # order "K"
        np.testing.assert_array_equal(copied.get(), data)
    device_src = fakecupy.asarray(data)
    copied = _cuda.memory.to_device(device_src)
    copied[0, 0] = 123.0
    assert device_src.get()[0, 0] == data[0, 0]  # a copy, not a view
    host = np.arange(3.0)
    assert _cuda.memory.to_host(host) is host

    pool = fakecupy.get_default_memory_pool()
    del copied, device_src
    free, _ = fakecupy.cuda.runtime.memGetInfo()
    assert _cuda.memory.cache_budget_bytes(0.25) == int(0.25 * (free + pool.free_bytes()))
    report = _cuda.memory.memory_report()
    assert set(report) == {
        "device_pool_used_bytes",
        "device_pool_total_bytes",
        "pinned_pool_free_blocks",
    }
    assert all(isinstance(v, int) for v in report.values())
    assert report["device_pool_used_bytes"] >= cache.nbytes
    _cuda.memory.release_memory()
    assert pool.free_bytes() == 0 and fake.free_all_blocks_calls == 2


# ------------------------------------------------------------------------------------------------
# End to end: VGM(device="cuda") on a Parquet file against device="cpu"
# ------------------------------------------------------------------------------------------------

E2E_ROWS = 24_000
FIT = dict(n_components=5, max_iter=30, tol=1e-3, chunk_rows=12_000, random_state=0)


@pytest.fixture(scope="module")
def parquet_file(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    n = E2E_ROWS
    a = np.concatenate(
        [rng.normal(-5, 1, n // 3), rng.normal(2, 0.5, n // 3), rng.normal(9, 2, n - 2 * (n // 3))]
    )
    a = rng.permutation(a).astype(np.float32)
    b = rng.lognormal(1.0, 0.6, n).astype(np.float32)
    a[rng.random(n) < 0.03] = np.nan
    b[rng.random(n) < 0.05] = np.nan
    table = pa.table({"a": pa.array(a, from_pandas=True), "b": pa.array(b, from_pandas=True)})
    path = tmp_path_factory.mktemp("e2e") / "data.parquet"
    pq.write_table(table, path, row_group_size=12_000)  # two chunks a pass
    return path


@pytest.fixture(scope="module")
def cpu_model(parquet_file) -> gpuvgm.VGM:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        return gpuvgm.VGM(device="cpu", **FIT).fit(parquet_file)


def _read(path: Path) -> pa.Table:
    return pq.read_table(path)


def _reader(path: Path, batch_rows: int) -> pa.RecordBatchReader:
    """The rows of ``path`` as a stream of unknown length (no whole-array device cache)."""
    table = pq.read_table(path).combine_chunks()
    batches = table.to_batches(max_chunksize=batch_rows)
    return pa.RecordBatchReader.from_batches(table.schema, batches)


F32_ROW = 2 * 4  # bytes of one row of the two float32 columns
# Streams in four chunks a pass: more than the stager's three slots, so a chunk kept in the device
# cache without a copy of its own would be overwritten when its slot is reused.
STREAM_CHUNK = E2E_ROWS // 4
# source, extra parameters, expected fit_report_["cache"] entries (None: only "> 0").
E2E_CASES = {
    # The whole data in one column-major device array, gathered with cache_put.
    "parquet-device-cache": ("parquet", {}, {"whole_on_device": True, "host_bytes": 0}),
    # Host cache: every pass stages the host chunks through the pinned buffers.
    "parquet-host-cache": (
        "parquet",
        {"device_cache_fraction": 0.0},
        {"whole_on_device": False, "device_bytes": 0, "host_bytes": E2E_ROWS * F32_ROW},
    ),
    # No cache: every pass reads the file again and stages it.
    "parquet-no-cache": (
        "parquet",
        {"device_cache_fraction": 0.0, "cache_bytes": 0},
        {"whole_on_device": False, "device_bytes": 0, "host_bytes": 0},
    ),
    # Unknown length: the staged chunks are copied to the device one by one (to_device).
    "stream-device-chunks": (
        "stream",
        {"chunk_rows": STREAM_CHUNK},
        {"whole_on_device": False, "device_bytes": E2E_ROWS * F32_ROW, "host_bytes": 0},
    ),
    # Three chunks and a device budget of 1.5: the first on the device, the others on the host.
    "stream-mixed": (
        "stream",
        {"chunk_rows": E2E_ROWS // 3, "device_cache_fraction": 0.5 * E2E_ROWS * F32_ROW / 2**30},
        {"whole_on_device": False, "device_bytes": E2E_ROWS // 3 * F32_ROW, "host_bytes": None},
    ),
}


@pytest.fixture(scope="module")
def stream_cpu_models(parquet_file) -> Callable[[int], gpuvgm.VGM]:
    """The stream's ``device="cpu"`` fits, by chunk_rows (fitted when first asked for)."""
    models: dict[int, gpuvgm.VGM] = {}

    def fit(chunk_rows: int) -> gpuvgm.VGM:
        if chunk_rows not in models:
            with warnings.catch_warnings():
                warnings.simplefilter("error", ConvergenceWarning)
                models[chunk_rows] = gpuvgm.VGM(
                    device="cpu", **{**FIT, "chunk_rows": chunk_rows}
                ).fit(_reader(parquet_file, chunk_rows))
        return models[chunk_rows]

    return fit


@pytest.mark.parametrize(
    "case",
    [
        "parquet-device-cache",
        *(
            pytest.param(c, marks=pytest.mark.slow)
            for c in (
                "parquet-host-cache",
                "parquet-no-cache",
                "stream-device-chunks",
                "stream-mixed",
            )
        ),
    ],
)
def test_fit_on_the_device_equals_the_cpu_fit(
    fake, parquet_file, cpu_model, stream_cpu_models, case
):
    kind, extra, expected_cache = E2E_CASES[case]
    source = parquet_file if kind == "parquet" else _reader(parquet_file, extra["chunk_rows"])
    reference = cpu_model if kind == "parquet" else stream_cpu_models(extra["chunk_rows"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = gpuvgm.VGM(device="cuda", **{**FIT, **extra}).fit(source)
    report = model.fit_report_
    assert report["backend"] == "cupy" and model.backend_ == "cupy"
    for key, value in expected_cache.items():
        if value is None:
            assert report["cache"][key] > 0, (key, report["cache"])
        else:
            assert report["cache"][key] == value, (key, report["cache"])
    assert report["memory"]["device_pool_used_bytes"] >= 0
    names = set(_names(fake))
    assert {"gpuvgm::estep_stats<float, float, 5>", "gpuvgm::assign_stats<float, 5>"} <= names
    assert {"gpuvgm::moments_sums<float>", "gpuvgm::sample_candidates"} <= names
    # Every pass that read host chunks staged them; the pre-pass always does.
    assert fake.bytes_copied >= E2E_ROWS * F32_ROW

    np.testing.assert_array_equal(model.n_iter_, reference.n_iter_)
    np.testing.assert_array_equal(model.converged_, reference.converged_)
    np.testing.assert_array_equal(model.valid_components_, reference.valid_components_)
    # Means relative to the column's spread (a mean near 0 has no relative precision).
    scale = np.sqrt(reference.moments_.variance)[:, None]
    assert np.max(np.abs(model.means_ - reference.means_) / scale) < 1e-5
    np.testing.assert_allclose(model.weights_, reference.weights_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.covariances_, reference.covariances_, rtol=1e-5)
    np.testing.assert_allclose(model.lower_bound_, reference.lower_bound_, rtol=1e-6)


@pytest.fixture
def cuda_fitted(fake, parquet_file) -> gpuvgm.VGM:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        return gpuvgm.VGM(device="cuda", **FIT).fit(parquet_file)


def test_inference_of_a_device_fit_equals_the_cpu_models(
    fake, cuda_fitted, cpu_model, parquet_file, tmp_path
):
    """The cuda-fitted model against the cpu-fitted one: parameters equal within float rounding,
    so the same components (the sampler is keyed by the global row) and alpha within rounding."""
    got, want = cuda_fitted.transform(parquet_file), cpu_model.transform(parquet_file)
    np.testing.assert_array_equal(got.null, want.null)
    np.testing.assert_array_equal(got.component, want.component)
    np.testing.assert_allclose(got.normalized, want.normalized, rtol=1e-5, atol=1e-6)
    assert "gpuvgm::transform<float, 5>" in _names(fake)

    for dst, options in (("one.parquet", {}), ("parts", {"rows_per_file": 9_000})):
        cuda_out, cpu_out = tmp_path / f"cuda-{dst}", tmp_path / f"cpu-{dst}"
        info = cuda_fitted.transform_parquet(parquet_file, cuda_out, **options)
        cpu_model.transform_parquet(parquet_file, cpu_out, **options)
        assert info["rows"] == E2E_ROWS
        g, w = _read(cuda_out), _read(cpu_out)
        assert g.column_names == w.column_names and g.num_rows == E2E_ROWS
        for name in g.column_names:
            gc, wc = g.column(name).to_numpy(), w.column(name).to_numpy()
            if name.endswith(".component"):
                np.testing.assert_array_equal(gc, wc, err_msg=name)
            else:
                np.testing.assert_allclose(gc, wc, rtol=1e-5, atol=1e-6, err_msg=name)
        back_g, back_w = tmp_path / f"cuda-back-{dst}", tmp_path / f"cpu-back-{dst}"
        n_launches = len(fake.launches)
        cuda_fitted.inverse_parquet(cuda_out, back_g, **options)
        assert "gpuvgm::inverse<double, long long>" in _names(fake)[n_launches:]
        cpu_model.inverse_parquet(cpu_out, back_w, **options)
        g, w = _read(back_g), _read(back_w)
        original = pq.read_table(parquet_file)
        for name in ("a", "b"):
            gc = g.column(name).to_numpy(zero_copy_only=False)
            wc = w.column(name).to_numpy(zero_copy_only=False)
            np.testing.assert_allclose(gc, wc, rtol=1e-5, atol=1e-6 * np.nanstd(wc))
            x = original.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
            np.testing.assert_array_equal(np.isnan(gc), np.isnan(x))

    proba_g, proba_w = (
        cuda_fitted.predict_proba(parquet_file),
        cpu_model.predict_proba(parquet_file),
    )
    np.testing.assert_array_equal(np.isnan(proba_g), np.isnan(proba_w))
    np.testing.assert_allclose(proba_g, proba_w, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(
        cuda_fitted.predict(parquet_file), cpu_model.predict(parquet_file)
    )


def test_inference_of_one_model_is_the_same_on_both_backends(fake, cpu_model, parquet_file):
    """One set of parameters, two backends: bit-identical transform and inverse."""
    on_device = copy.deepcopy(cpu_model).set_params(device="cuda")
    got, want = on_device.transform(parquet_file), cpu_model.transform(parquet_file)
    for name in ("normalized", "component", "null", "n_clipped"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    np.testing.assert_array_equal(
        on_device.inverse_transform(got), cpu_model.inverse_transform(want)
    )
    np.testing.assert_allclose(
        on_device.predict_proba(parquet_file),
        cpu_model.predict_proba(parquet_file),
        rtol=1e-12,
        atol=1e-15,
    )
    assert {"gpuvgm::transform<float, 5>", "gpuvgm::log_resp<float, 5>"} <= set(_names(fake))


@pytest.mark.parametrize(
    ("bad", "options", "match"),
    [
        (np.inf, {}, r"column '1' holds an infinite value \(first at row 7003\)"),
        (np.nan, {"null_policy": "error"}, r"column '1' holds a null \(first at row 7003\)"),
    ],
)
def test_checks_of_staged_chunks_name_the_global_row(fake, bad, options, match):
    """The pre-pass reads the checks off the device moments, then searches the host rows."""
    x = np.random.default_rng(5).normal(size=(9_000, 2))
    x[7_003, 1] = bad
    for device in ("cpu", "cuda"):
        model = gpuvgm.VGM(n_components=3, chunk_rows=3_000, device=device, **options)
        with pytest.raises(gpuvgm.DataError, match=match):
            model.fit(x)


@pytest.mark.slow
def test_dask_fit_and_transform_on_the_device_in_process(fake):
    """A Dask array on the synchronous scheduler (the workers are this process): the pre-pass
    on host blocks, the partitions then moved to the device (``persist_on``), the passes and
    the lazy transform and inverse through the CUDA backend."""
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(6)
    x = np.stack([rng.normal(0, 1, 8_000), rng.lognormal(0, 1, 8_000)], axis=1)
    x = x.astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    blocks = da.from_array(x, chunks=(4_000, 2))
    params = dict(n_components=5, max_iter=30, tol=1e-3, random_state=0)
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        models = [gpuvgm.VGM(device=d, **params).fit(blocks) for d in ("cpu", "cuda")]
        cpu, gpu = models
        np.testing.assert_array_equal(gpu.n_iter_, cpu.n_iter_)
        scale = np.sqrt(cpu.moments_.variance)[:, None]
        assert np.max(np.abs(gpu.means_ - cpu.means_) / scale) < 1e-5
        got, want = gpu.transform(blocks), cpu.transform(blocks)
        np.testing.assert_array_equal(got.component.compute(), want.component.compute())
        np.testing.assert_allclose(
            got.normalized.compute(), want.normalized.compute(), rtol=1e-5, atol=1e-6
        )
        back, want_back = (
            gpu.inverse_transform(got).compute(),
            cpu.inverse_transform(want).compute(),
        )
    np.testing.assert_allclose(back, want_back, rtol=1e-5, atol=1e-5)
    assert {"gpuvgm::estep_stats<float, float, 5>", "gpuvgm::transform<float, 5>"} <= set(
        _names(fake)
    )
