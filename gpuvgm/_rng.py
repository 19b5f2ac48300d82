"""Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11), vectorised in NumPy.

A draw is a pure function of ``(seed, column, stream, global row index)``, so the sampled
components do not depend on the chunk size, the backend, the number of threads or of workers.
The word for row ``r`` of ``column`` is word ``r % 4`` of ``philox4x32_10(counter=(r // 4 low,
r // 4 high, column, stream), key=(seed low, seed high))``: with ``stream=0`` this is exactly the
sequence of cuRAND's ``curand(&state)`` after ``curand_init(seed, column, r, &state)`` with
``curandStatePhilox4_32_10_t``. The CUDA twin is ``philox4x32_10`` in ``kernels/vgm_math.cuh``.
"""

from __future__ import annotations

import numpy as np

from ._parallel import parallel_map

_MASK = np.uint64(0xFFFFFFFF)
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
_SHIFT = np.uint64(32)
_ROUNDS = 10
_BLOCK = 1 << 15  # counters per task: 128 Ki rows

# Streams: independent uses of the same (seed, column) pair.
STREAM_COMPONENT = 0  # component sampling in transform
STREAM_SAMPLE = 1  # the priorities of the initialisation sample


def philox4x32_10(
    c0: np.ndarray, c1: np.ndarray, c2: np.ndarray, c3: np.ndarray, k0: int, k1: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Philox4x32 with 10 rounds on arrays of 32-bit counters held in uint64.

    Returns the four output words (uint64 arrays holding 32-bit values).
    """
    for i in range(_ROUNDS):
        key0 = np.uint64((k0 + i * _W0) & 0xFFFFFFFF)
        key1 = np.uint64((k1 + i * _W1) & 0xFFFFFFFF)
        p0 = c0 * _M0
        p1 = c2 * _M1
        c0, c1, c2, c3 = (
            (p1 >> _SHIFT) ^ c1 ^ key0,
            p1 & _MASK,
            (p0 >> _SHIFT) ^ c3 ^ key1,
            p0 & _MASK,
        )
    return c0, c1, c2, c3


def _check_seed(seed: int) -> int:
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return seed


def random_words(seed: int, column: int, start: int, n: int, stream: int = 0) -> np.ndarray:
    """The 32-bit words for global rows ``start .. start + n - 1``, as uint32 of shape (n,)."""
    seed = _check_seed(seed)
    if n <= 0:
        return np.empty(0, dtype=np.uint32)
    q0 = start >> 2
    q1 = (start + n - 1) >> 2
    block = np.empty((q1 + 1 - q0, 4), dtype=np.uint32)  # 4 words per counter

    def fill(a: int, b: int) -> None:
        q = np.arange(q0 + a, q0 + b, dtype=np.uint64)
        c2 = np.full_like(q, np.uint64(column & 0xFFFFFFFF))
        c3 = np.full_like(q, np.uint64(stream & 0xFFFFFFFF))
        words = philox4x32_10(q & _MASK, q >> _SHIFT, c2, c3, seed & 0xFFFFFFFF, seed >> 32)
        for w in range(4):
            block[a:b, w] = words[w]

    # Counters are independent: blocks of them run on the thread pool (NumPy releases the GIL).
    nq = block.shape[0]
    parallel_map(fill, [(a, min(a + _BLOCK, nq)) for a in range(0, nq, _BLOCK)])
    offset = start & 3
    return block.reshape(-1)[offset : offset + n]


def uniform(seed: int, column: int, start: int, n: int, stream: int = 0) -> np.ndarray:
    """Uniform doubles in the open interval (0, 1): ``(word + 0.5) * 2**-32``, shape (n,)."""
    words = random_words(seed, column, start, n, stream)
    return (words.astype(np.float64) + 0.5) * 2.0**-32
