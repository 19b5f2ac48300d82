"""The counter-based generator against Random123's known answers and randomgen's Philox."""

from __future__ import annotations

import numpy as np
import pytest
from randomgen import Philox

from gpuvgm import _rng

# Known-answer vectors of philox4x32_10 from Random123's kat_vectors.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("ctr", "key", "expected"), KAT)
def test_known_answers(ctr, key, expected):
    c = [np.array([v], dtype=np.uint64) for v in ctr]
    out = _rng.philox4x32_10(*c, *key)
    assert tuple(int(w[0]) for w in out) == expected


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 12345, 2**64 - 1])
@pytest.mark.parametrize("column", [0, 5, 2**31])
def test_words_equal_randomgen_philox4x32(seed, column):
    start, n = 1000, 64
    ours = _rng.random_words(seed, column, start, n)
    # randomgen's counter is one 128-bit integer (word 0 lowest) and is incremented before
    # each block is generated, hence the -1.
    counter = (start // 4) + (column << 64) - 1
    ref = Philox(key=seed, counter=counter, number=4, width=32).random_raw(n)
    # random_raw returns each 32-bit output in a uint64
    np.testing.assert_array_equal(ours, ref.astype(np.uint32))


def test_words_do_not_depend_on_how_rows_are_split():
    whole = _rng.random_words(42, 3, 5, 1001)
    parts = np.concatenate(
        [_rng.random_words(42, 3, 5 + a, b - a) for a, b in [(0, 1), (1, 7), (7, 500), (500, 1001)]]
    )
    np.testing.assert_array_equal(whole, parts)


def test_uniforms_are_uniform_and_in_the_open_interval():
    u = _rng.uniform(9, 0, 0, 200_000)
    assert u.min() > 0 and u.max() < 1
    hist = np.bincount((u * 20).astype(int), minlength=20)
    expected = u.size / 20
    chi2 = ((hist - expected) ** 2 / expected).sum()
    assert chi2 < 60  # 19 degrees of freedom: p < 1e-6 beyond this


def test_streams_and_columns_are_distinct():
    a = _rng.random_words(1, 0, 0, 100, stream=0)
    b = _rng.random_words(1, 0, 0, 100, stream=1)
    c = _rng.random_words(1, 1, 0, 100, stream=0)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
