"""Reading ahead (``gpuvgm._parallel.read_ahead``): order, bounded memory, overlap, errors and
early close; and a streamed fit that reads ahead gives the model of the in-memory fit."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpuvgm import VGM, DataError
from gpuvgm._parallel import read_ahead


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
