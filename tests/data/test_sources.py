"""Fitting from files equals fitting the same data in memory."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import five_modes, lognormal, rel_err

import gpuvgm


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(8)
    n = 30_000
    df = pd.DataFrame(
        {"b": five_modes(n, rng), "a": lognormal(n, rng), "label": rng.choice(["x", "y"], n)}
    )
    df.loc[rng.random(n) < 0.02, "a"] = np.nan
    return df


def fit(X, **kw):
    model = gpuvgm.VGM(5, max_iter=30, tol=0.0, chunk_rows=4096, device="cpu", random_state=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        return model.fit(X, **kw)


def assert_same(m1, m2, rtol=1e-10):
    for name in ("weights_", "means_", "covariances_", "lower_bound_"):
        assert rel_err(getattr(m1, name), getattr(m2, name)) <= rtol, name


def test_parquet_dataset_of_several_files_equals_memory(frame, tmp_path):
    # Files named so that sorted order is the row order; written out of order on purpose.
    bounds = [0, 7000, 15000, 22222, len(frame)]
    for i in (2, 0, 3, 1):
        part = frame.iloc[bounds[i] : bounds[i + 1]]
        pq.write_table(
            pa.Table.from_pandas(part, preserve_index=False),
            tmp_path / f"part-{i:03d}.parquet",
            row_group_size=3000,
        )
    cols = ["b", "a"]
    from_files = fit(tmp_path, columns=cols)
    in_memory = fit(frame[cols].to_numpy())
    assert_same(from_files, in_memory)
    assert list(from_files.feature_names_in_) == cols
    enc_files = from_files.transform(sorted(tmp_path.glob("*.parquet")), columns=cols)
    enc_mem = in_memory.transform(frame[cols].to_numpy())
    # Parameters agree to 1e-10, not bit for bit (the sums run in another order), hence allclose.
    np.testing.assert_array_equal(enc_files.component, enc_mem.component)
    np.testing.assert_allclose(enc_files.normalized, enc_mem.normalized, rtol=1e-8, atol=1e-12)


def test_csv_equals_memory(frame, tmp_path):
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False, float_format="%.17g")
    from_csv = fit(path, columns=["b", "a"])
    in_memory = fit(frame[["b", "a"]])
    assert_same(from_csv, in_memory)


def test_arrow_and_pandas_nullable_types(frame):
    df = frame[["b", "a"]].copy()
    df["a"] = df["a"].astype("Float64")
    df["i"] = pd.array(np.arange(len(df)) % 7, dtype="Int64")
    df.loc[5, "i"] = pd.NA
    from_pandas = fit(df)
    from_arrow = fit(pa.Table.from_pandas(df, preserve_index=False))
    assert_same(from_pandas, from_arrow)
    assert from_pandas.moments_.n_null[2] == 1


def test_float32_arrays_are_read_in_float32(frame):
    x = frame[["b"]].to_numpy().astype(np.float32)
    m32 = fit(x)
    m64 = fit(x.astype(np.float64))
    assert_same(m32, m64)


def test_a_source_can_be_iterated_many_times(frame, tmp_path):
    from gpuvgm._inputs import make_source

    path = tmp_path / "one.parquet"
    pq.write_table(
        pa.Table.from_pandas(frame[["b", "a"]], preserve_index=False), path, row_group_size=5000
    )
    src = make_source(path)
    first = [(o, c.copy()) for o, c in src.chunks(4096)]
    second = list(src.chunks(4096))
    assert [o for o, _ in first] == [o for o, _ in second]
    for (_, a), (_, b) in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert sum(len(c) for _, c in first) == len(frame) == src.n_rows


def test_cache_fills_the_device_then_host_memory_then_gives_up():
    from types import SimpleNamespace

    from gpuvgm._cache import _ChunkCache

    moved = []
    memory = SimpleNamespace(to_device=lambda c: moved.append(c) or ("device", c))
    backend = SimpleNamespace(memory=memory)
    chunk = np.zeros((100, 2))  # 1600 bytes
    # Row count unknown (CSV): chunk by chunk.
    cache = _ChunkCache(device_budget=3200, host_budget=1600, backend=backend, n_rows=None)
    for i in range(3):
        cache.add(i * 100, chunk, chunk)
    assert [type(c) for _, c in cache.chunks] == [tuple, tuple, np.ndarray]
    assert cache.report() == {
        "device_bytes": 3200,
        "host_bytes": 1600,
        "spill_bytes": 0,
        "whole_on_device": False,
    }
    cache.add(300, chunk, chunk)  # fits nowhere: keep nothing, stream every pass
    assert cache.chunks is None and cache.source(None) is None
    assert cache.report() == {
        "device_bytes": 0,
        "host_bytes": 0,
        "spill_bytes": 0,
        "whole_on_device": False,
    }
    assert len(moved) == 2


def test_cache_gathers_every_row_into_one_device_array_when_they_fit():
    from gpuvgm._backends import _numpy
    from gpuvgm._cache import _ChunkCache
    from gpuvgm._sources import ArraySource

    x = np.random.default_rng(0).normal(size=(250, 3))
    like = ArraySource(x)
    cache = _ChunkCache(device_budget=x.nbytes, host_budget=0, backend=_numpy, n_rows=250)
    for start in range(0, 250, 100):
        staged = x[start : start + 100].copy()
        cache.add(start, staged, staged)
        staged[:] = np.nan  # a staging buffer is reused after add(): the cache kept a copy
    ((offset, whole),) = cache.source(like).chunks(100)
    assert offset == 0 and whole.flags.f_contiguous
    np.testing.assert_array_equal(whole, x)
    assert cache.report() == {
        "device_bytes": x.nbytes,
        "host_bytes": 0,
        "spill_bytes": 0,
        "whole_on_device": True,
    }
    # One byte short: chunk by chunk (here: nothing fits, stream).
    short = _ChunkCache(device_budget=x.nbytes - 1, host_budget=0, backend=_numpy, n_rows=250)
    short.add(0, x, x)
    assert not short.report()["whole_on_device"] and short.source(like) is None
    # The source delivered fewer or more rows than its metadata said: the cache is not used.
    for rows in (240, 260):
        wrong = _ChunkCache(device_budget=10**6, host_budget=0, backend=_numpy, n_rows=250)
        y = np.zeros((rows, 3))
        wrong.add(0, y[:200], y[:200])
        wrong.add(200, y[200:], y[200:])
        assert wrong.source(like) is None


@pytest.mark.filterwarnings("ignore::gpuvgm.ConvergenceWarning")
def test_fit_from_one_device_array_matches_the_streamed_fit(tmp_path, frame, monkeypatch):
    """The backend's cache budget admits every row: iterations read one array (one launch per
    kernel on a GPU); the model is the streamed model up to summation order."""
    from types import SimpleNamespace

    from gpuvgm._backends import get_backend

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pandas(frame[["a", "b"]], preserve_index=False), path)
    kw = dict(n_components=5, max_iter=20, chunk_rows=777, device="cpu", random_state=3)
    streamed = gpuvgm.VGM(**kw, cache_bytes=0).fit(path)
    # The CPU backend's host memory, with a "device" budget of 2 GiB: it keeps one array.
    backend = get_backend(kw["device"])
    memory = {name: getattr(backend.memory, name) for name in dir(backend.memory)}
    memory["cache_budget_bytes"] = lambda fraction: int(fraction * 2**31)
    monkeypatch.setattr(backend, "memory", SimpleNamespace(**memory))
    whole = gpuvgm.VGM(**kw).fit(path)
    assert whole.fit_report_["cache"]["whole_on_device"]
    assert "one array" in whole.fit_report_["source"]
    np.testing.assert_array_equal(whole.n_iter_, streamed.n_iter_)
    np.testing.assert_allclose(whole.means_, streamed.means_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(whole.weights_, streamed.weights_, rtol=1e-10, atol=1e-14)


def test_fit_report_says_where_the_iterations_read(tmp_path, frame):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pandas(frame[["b"]], preserve_index=False), path)
    cached = fit(path)
    assert cached.fit_report_["cache"] == {
        "device_bytes": 0,
        "host_bytes": len(frame) * 8,
        "spill_bytes": 0,
        "whole_on_device": False,
    }
    streamed = gpuvgm.VGM(5, max_iter=3, cache_bytes=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        streamed.fit(path)
    assert streamed.fit_report_["cache"] == {
        "device_bytes": 0,
        "host_bytes": 0,
        "spill_bytes": 0,
        "whole_on_device": False,
    }


@pytest.mark.filterwarnings("ignore::gpuvgm.ConvergenceWarning")
def test_pyarrow_dataset_streams_in_path_order_with_projection(tmp_path):
    import pyarrow.dataset as ds

    rng = np.random.default_rng(4)
    parts = []
    for name in ("part-2.parquet", "part-0.parquet", "part-1.parquet"):  # written out of order
        x = np.concatenate([rng.normal(-2, 1, 3_000), rng.normal(5, 0.5, 2_000)])
        label = np.array([name] * x.size)
        pq.write_table(pa.table({"x": x, "label": label}), tmp_path / name, row_group_size=1_100)
        parts.append((name, x))
    in_order = np.concatenate([x for _, x in sorted(parts)])
    dataset = ds.dataset(tmp_path, format="parquet")
    kw = dict(n_components=4, max_iter=25, chunk_rows=2_048, device="cpu", random_state=1)
    streamed = gpuvgm.VGM(**kw).fit(dataset, columns=["x"])
    memory = gpuvgm.VGM(**kw).fit(in_order.reshape(-1, 1))
    assert "dataset of 3 fragment(s)" in streamed.fit_report_["source"]
    np.testing.assert_allclose(streamed.means_, memory.means_, rtol=1e-10)
    enc = streamed.transform(dataset, columns=["x"])
    np.testing.assert_array_equal(enc.component, memory.transform(in_order).component)
    with pytest.raises(gpuvgm.DataTypeError, match="label"):
        gpuvgm.VGM(**kw).fit(dataset, columns=["label"])


@pytest.mark.filterwarnings("ignore::gpuvgm.ConvergenceWarning")
def test_record_batch_reader_is_read_once(frame):
    table = pa.Table.from_pandas(frame[["a", "b"]], preserve_index=False)

    def reader():
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=900))

    kw = dict(n_components=3, max_iter=10, chunk_rows=500, device="cpu", random_state=0)
    from_reader = gpuvgm.VGM(**kw).fit(reader())  # pre-pass reads it; the host cache holds it
    from_table = gpuvgm.VGM(**kw).fit(table)
    np.testing.assert_allclose(from_reader.means_, from_table.means_, rtol=1e-10)
    a, b = from_table.transform(reader()), from_table.transform(table)
    np.testing.assert_array_equal(a.component, b.component)
    with pytest.raises(gpuvgm.DataError, match="read only once"):
        gpuvgm.VGM(**kw, cache_bytes=0).fit(reader())


@pytest.mark.parametrize("chunk_rows", [300, 1_000, 4_096])
@pytest.mark.parametrize("budget", [0, 256 << 20])  # sequential record batches / parallel groups
def test_parquet_row_groups_read_in_parallel_arrive_in_order(
    tmp_path, monkeypatch, chunk_rows, budget
):
    from gpuvgm import _files, _inputs

    monkeypatch.setattr(_files, "PARQUET_BYTES_IN_FLIGHT", budget)
    x = np.arange(6_500, dtype=np.float64)
    y = (x * 0.5).astype(np.float32)
    path = tmp_path / "groups.parquet"
    pq.write_table(pa.table({"x": x, "y": y, "s": x.astype(str)}), path, row_group_size=1_000)
    assert pq.ParquetFile(path).metadata.num_row_groups == 7
    src = _inputs.make_source(path, ["y", "x"])
    chunks = list(src.chunks(chunk_rows))
    offsets = [o for o, _ in chunks]
    assert all(len(c) <= chunk_rows for _, c in chunks)
    assert offsets == list(np.cumsum([0] + [len(c) for _, c in chunks])[:-1])
    np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), np.c_[y, x])
    # Stopping early leaves nothing behind that breaks the next pass.
    it = src.chunks(chunk_rows)
    next(it)
    it.close()
    assert sum(len(c) for _, c in src.chunks(chunk_rows)) == 6_500


def test_corrupt_row_group_read_on_an_io_thread_is_a_data_error(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"x": np.arange(8_000.0)}), path, row_group_size=1_000)
    meta = pq.ParquetFile(path).metadata
    rg = meta.row_group(5).column(0)
    raw = bytearray(path.read_bytes())
    start = rg.data_page_offset
    raw[start : start + 64] = b"\xff" * 64  # the page header of row group 5
    path.write_bytes(bytes(raw))
    src = gpuvgm._inputs.make_source(path)
    with pytest.raises(gpuvgm.DataError, match=r"bad\.parquet"):
        for _ in src.chunks(1_000):
            pass
