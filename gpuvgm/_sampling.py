"""The initialisation sample: a bottom-k reservoir of each column, its seeding frame, and the
NaN-padded rectangle that lets a sample be read as a data source.

The reservoir asks a backend for its candidate rows, so it runs where the chunk is; the caller
passes the backend (this module imports none).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from . import _rng


class _Sampler(Protocol):
    """The one backend function the reservoir calls (see ``gpuvgm._backends._api.Backend``)."""

    def sample_candidates(
        self, chunk: Any, seed: int, column_key: int, stream: int, offset: int, limit: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class Reservoir:
    """A uniform sample without replacement of each column's non-null values, in one pass.

    Bottom-k sampling: every row gets a priority from the counter-based generator keyed by its
    global index, and the k rows with the smallest priorities are kept, so the sample does not
    depend on the chunking. Priorities are ``(32-bit word << 32) | (row mod 2**32)``: unique, so
    ties cannot make the result order-dependent. The bottom k of a union is the bottom k of the
    parts' bottom k, so reservoirs of different rows (Dask partitions) merge with ``+``.
    """

    _COLUMN_KEY = 0xFFFFFFFF  # one priority stream shared by all columns

    def __init__(self, n_columns: int, size: int, seed: int):
        self.size = size
        self.seed = seed
        self.keys = [np.empty(0, dtype=np.uint64) for _ in range(n_columns)]
        self.values = [np.empty(0) for _ in range(n_columns)]

    def add(self, offset: int, chunk: Any, backend: _Sampler) -> None:
        """Offer the rows of ``chunk`` (global rows ``offset ..``; on ``backend``'s device)."""
        # Once every column's sample is full, only rows whose word does not exceed the largest
        # kept word can enter: a few per chunk. The backend selects them where the chunk is.
        limit = 0xFFFFFFFF
        if all(k.size >= self.size for k in self.keys):
            limit = max(int(k.max()) >> 32 for k in self.keys)
        rows, words, values = backend.sample_candidates(
            chunk, self.seed, self._COLUMN_KEY, _rng.STREAM_SAMPLE, offset, limit
        )
        prio = (words.astype(np.uint64) << np.uint64(32)) | (
            (rows.astype(np.uint64) + np.uint64(offset)) & np.uint64(0xFFFFFFFF)
        )
        for j in range(values.shape[1]):
            ok = ~np.isnan(values[:, j])
            self._merge(j, prio[ok], values[ok, j])

    def _merge(self, j: int, keys: np.ndarray, values: np.ndarray) -> None:
        """Keep the bottom k of column ``j``'s sample and the rows ``(keys, values)``."""
        keys = np.concatenate([self.keys[j], keys])
        values = np.concatenate([self.values[j], values])
        if keys.size > self.size:
            sel = np.argpartition(keys, self.size - 1)[: self.size]
            keys, values = keys[sel], values[sel]
        self.keys[j], self.values[j] = keys, values

    def sample(self, j: int) -> np.ndarray:
        """Column ``j``'s sample, ordered by priority (independent of the chunking)."""
        return self.values[j][np.argsort(self.keys[j])]

    def __add__(self, other: Reservoir) -> Reservoir:
        """The sample of both reservoirs' rows."""
        out = Reservoir(len(self.keys), self.size, self.seed)
        for j in range(len(self.keys)):
            out.keys[j], out.values[j] = self.keys[j], self.values[j]
            out._merge(j, other.keys[j], other.values[j])
        return out


def seeding_frame(sample: np.ndarray) -> tuple[np.ndarray, float]:
    """``(sample - ref, ref)`` with ``ref`` the sample's median: the frame k-means and k-means++
    make their discrete choices in.

    Not the working frame: its shift is the pre-pass mean, whose last bit depends on the
    summation order (the chunking), and a near-tie in k-means++ or at a k-means boundary would
    then pick differently for different chunk sizes. The sample, and so this frame, does not
    depend on the chunking.
    """
    ref = float(np.median(sample)) if sample.size else 0.0
    return sample - ref, ref


def pad_columns(samples: Sequence[np.ndarray]) -> np.ndarray:
    """Per-column samples of different sizes as one (max size, n_columns) float64 array, padded
    with NaN (a null: the passes skip it)."""
    sizes = [s.size for s in samples]
    matrix = np.full((max(sizes, default=0), len(samples)), np.nan)
    for j, s in enumerate(samples):
        matrix[: s.size, j] = s
    return matrix
