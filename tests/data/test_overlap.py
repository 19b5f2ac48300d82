"""Overlap on the host: reading ahead (``read_ahead``) and writing behind (``WriteBehind``) in
``gpuvgm._parallel``: order, bounded memory, overlap, errors, early close; a streamed fit that
reads ahead gives the model of the in-memory fit, and a failed write leaves no file."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpuvgm import VGM, DataError
from gpuvgm._parallel import WriteBehind, read_ahead


def test_items_in_order_and_complete():
    assert list(read_ahead(iter(range(1000)), depth=3)) == list(range(1000))
    assert list(read_ahead(iter([]), depth=2)) == []
    assert list(read_ahead(iter(range(5)), depth=0)) == list(range(5))


def test_producer_runs_ahead_of_the_consumer_but_no_further_than_depth():
    produced = [threading.Event() for _ in range(10)]
    count = 0
    lock = threading.Lock()

    def items():
        nonlocal count
        for i in range(10):
            with lock:
                count += 1
            produced[i].set()
            yield i

    it = read_ahead(items(), depth=2)
    assert next(it) == 0
    # While item 0 is being worked on, items 1 and 2 are read: the overlap.
    assert produced[1].wait(5) and produced[2].wait(5)
    # Two queued plus one the producer holds while the queue is full; never more.
    assert not produced[4].wait(0.3)
    with lock:
        assert count <= 4
    assert list(it) == list(range(1, 10))


class Boom(DataError):
    pass


def test_error_in_the_producer_is_raised_at_its_item():
    def items():
        yield 1
        yield 2
        raise Boom("bad row group in part-3.parquet")

    got = []
    with pytest.raises(Boom, match="part-3"):
        for x in read_ahead(items()):
            got.append(x)
    assert got == [1, 2]


def test_closing_early_stops_the_producer_and_closes_the_source():
    closed = threading.Event()

    def items():
        try:
            yield from range(10**9)
        finally:
            closed.set()

    before = threading.active_count()
    it = read_ahead(items(), depth=2)
    assert next(it) == 0
    it.close()
    assert closed.wait(5)
    assert threading.active_count() == before


def test_error_in_the_consumer_stops_the_producer():
    closed = threading.Event()

    def items():
        try:
            yield from range(10**9)
        finally:
            closed.set()

    with pytest.raises(KeyError):
        for i in read_ahead(items()):
            if i == 5:
                raise KeyError(i)
    assert closed.wait(5)


@pytest.mark.filterwarnings("ignore::gpuvgm.ConvergenceWarning")
def test_streamed_fit_and_transform_match_memory(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 1, 30_000), rng.normal(4, 0.5, 20_000)])
    x = x[rng.permutation(x.size)]
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"x": x}), path, row_group_size=7_000)
    kw = dict(n_components=4, chunk_rows=4_096, max_iter=30, random_state=0, device="cpu")
    streamed = VGM(**kw, cache_bytes=0).fit(path)  # every pass reads the file again
    memory = VGM(**kw).fit(x.reshape(-1, 1))
    np.testing.assert_allclose(streamed.means_, memory.means_, rtol=1e-10)
    np.testing.assert_allclose(streamed.weights_, memory.weights_, rtol=1e-10, atol=1e-14)
    a, b = streamed.transform(path), memory.transform(x.reshape(-1, 1))
    np.testing.assert_array_equal(a.component, b.component)
    np.testing.assert_allclose(a.normalized, b.normalized, rtol=1e-9, atol=1e-12)


def test_write_behind_writes_everything_in_order():
    written = []
    behind = WriteBehind(written.append, depth=2)
    for i in range(500):
        behind.submit(i)
    behind.finish()
    assert written == list(range(500))


def test_write_behind_overlaps_the_submitter():
    started, release = threading.Event(), threading.Event()

    def slow(item):
        started.set()
        assert release.wait(5)

    behind = WriteBehind(slow, depth=2)
    behind.submit(0)  # returns while item 0 is still being written
    assert started.wait(5)
    behind.submit(1)
    release.set()
    behind.finish()


def test_write_behind_raises_the_writers_error_and_stops_writing():
    written = []

    def write(item):
        if item == 3:
            raise OSError("disk full")
        written.append(item)

    behind = WriteBehind(write, depth=1)
    with pytest.raises(OSError, match="disk full"):
        for i in range(100):
            behind.submit(i)
        behind.finish()
    assert written == [0, 1, 2]


def test_write_behind_abort_drops_queued_items():
    gate = threading.Event()
    written = []

    def write(item):
        assert gate.wait(5)
        written.append(item)

    behind = WriteBehind(write, depth=3)
    for i in range(4):
        behind.submit(i)
    gate.set()
    behind.abort()
    assert written in ([0], [0, 1])  # the item being written when aborted, at most one more
    with pytest.raises(RuntimeError):
        behind.submit(9)


def test_failed_parquet_write_leaves_no_file(tmp_path):
    from gpuvgm._writers import parquet_output

    dst = tmp_path / "out.parquet"
    good = pa.table({"a": np.arange(5.0)})
    bad = pa.table({"b": np.arange(5)})  # another schema: the writer thread fails
    with pytest.raises(ValueError, match="schema"):
        with parquet_output(dst, good.schema, 1000) as write:
            write(good)
            write(bad)
            write(good)
    assert not dst.exists() and list(tmp_path.iterdir()) == []
    with parquet_output(dst, good.schema, 1000) as write:
        for _ in range(3):
            write(good)
    assert pq.read_table(dst).num_rows == 15
