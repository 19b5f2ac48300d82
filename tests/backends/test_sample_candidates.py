"""``sample_candidates`` of the NumPy backend against the counter-based generator itself.

The candidates of the initialisation sample are the rows whose Philox word (``_rng.random_words``
on the sample stream, keyed by the global row) does not exceed a limit; the CUDA twin is checked
against this function in ``test_sample_kernel_emulated.py`` (host emulation) and
``test_cuda_gpu.py`` (GPU).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gpuvgm import _rng
from gpuvgm._backends import _numpy as ref

SEED = (1 << 40) + 99
KEY = 0xFFFFFFFF
STREAM = _rng.STREAM_SAMPLE


def _chunk(n_rows: int, n_cols: int, dtype=np.float64, order: str = "C") -> np.ndarray:
    rng = np.random.default_rng(n_rows + n_cols)
    data = rng.normal(size=(n_rows, n_cols))
    data[rng.random(data.shape) < 0.2] = np.nan
    return np.asarray(data.astype(dtype), order=order)


@pytest.mark.parametrize("n_rows", [1, 7, 1_000, 50_001])
@pytest.mark.parametrize("offset", [0, 3, 2**32 - 5, 2**34 - 2])
@pytest.mark.parametrize("limit", [0, 2**20, 2**31, 2**32 - 1])
def test_rows_and_words_are_the_generators(n_rows, offset, limit):
    chunk = _chunk(n_rows, 2)
    rows, words, values = ref.sample_candidates(chunk, SEED, KEY, STREAM, offset, limit)
    all_words = _rng.random_words(SEED, KEY, offset, n_rows, STREAM)
    expected = np.array([i for i in range(n_rows) if int(all_words[i]) <= limit], dtype=np.int64)
    assert rows.dtype == np.int64 and words.dtype == np.uint32 and values.dtype == np.float64
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_array_equal(words, all_words[expected])
    np.testing.assert_array_equal(values, chunk[expected])
    assert values.shape == (expected.size, 2)


def test_the_limit_is_inclusive():
    words = _rng.random_words(SEED, KEY, 10, 500, STREAM)
    limit = int(np.sort(words)[4])  # the fifth smallest word
    rows, got, _ = ref.sample_candidates(_chunk(500, 1), SEED, KEY, STREAM, 10, limit)
    assert rows.size == 5 and got.max() == limit
    assert ref.sample_candidates(_chunk(500, 1), SEED, KEY, STREAM, 10, limit - 1)[0].size == 4


def test_values_are_float64_copies_with_their_nulls():
    chunk = _chunk(2_000, 3, np.float32, "F")
    rows, _, values = ref.sample_candidates(chunk, SEED, KEY, STREAM, 0, 2**30)
    assert values.dtype == np.float64 and values.shape == (rows.size, 3)
    np.testing.assert_array_equal(np.isnan(values), np.isnan(chunk[rows]))
    np.testing.assert_array_equal(values, chunk[rows].astype(np.float64))
    assert np.isnan(values).any()  # nulls are kept: the caller drops them per column


def test_keys_and_streams_select_different_rows():
    chunk = _chunk(10_000, 1)
    base = ref.sample_candidates(chunk, SEED, KEY, STREAM, 0, 2**28)[0]
    for seed, key, stream in [(SEED + 1, KEY, STREAM), (SEED, 5, STREAM), (SEED, KEY, 0)]:
        other = ref.sample_candidates(chunk, seed, key, stream, 0, 2**28)[0]
        assert not np.array_equal(base, other)


def test_candidates_do_not_depend_on_chunking():
    chunk = _chunk(20_000, 2)
    offset, limit = 2**32 - 777, 2**29
    whole = ref.sample_candidates(chunk, SEED, KEY, STREAM, offset, limit)
    cuts = [0, 1, 777, 778, 12_345, 20_000]
    parts = [
        ref.sample_candidates(chunk[a:b], SEED, KEY, STREAM, offset + a, limit)
        for a, b in itertools.pairwise(cuts)
    ]
    np.testing.assert_array_equal(
        np.concatenate([p[0] + a for p, a in zip(parts, cuts, strict=False)]), whole[0]
    )
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole[1])
    np.testing.assert_array_equal(np.concatenate([p[2] for p in parts]), whole[2])


def test_an_empty_chunk_has_no_candidates():
    rows, words, values = ref.sample_candidates(np.empty((0, 4)), SEED, KEY, STREAM, 5, 2**32 - 1)
    assert rows.shape == (0,) and words.shape == (0,) and values.shape == (0, 4)
    assert rows.dtype == np.int64 and words.dtype == np.uint32


@pytest.mark.parametrize(
    ("seed", "offset", "limit", "match"),
    [
        (SEED, 0, -1, "limit"),
        (SEED, 0, 2**32, "limit"),
        (SEED, -1, 0, "offset"),
        (2**64, 0, 0, "seed"),
        (-1, 0, 0, "seed"),
    ],
)
def test_out_of_range_arguments_are_refused(seed, offset, limit, match):
    with pytest.raises(ValueError, match=match):
        ref.sample_candidates(_chunk(10, 1), seed, KEY, STREAM, offset, limit)
