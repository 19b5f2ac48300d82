"""The initialisation sample's candidate kernel (``kernels/sample.cu``) on the host emulation.

Built into the same emulation library as the other kernels
(``tests/backends/test_kernels_emulated.py``) and compared, after the sort by row the CUDA backend
does on the device, with the NumPy twin ``_numpy.sample_candidates`` and with ``_rng.random_words``
directly: the same rows, the same words to the bit, the same values. The emulation's threads really
run at the same time; built with ThreadSanitizer (``tests/emulation/sample_tsan.cpp``), a counter
bumped without the atomic is reported on every run.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _helpers.emulation import BLOCK, CXX, GRID_X, KERNELS, check_rc, library, ptr

from gpuvgm import _rng
from gpuvgm._backends import _numpy as ref

pytestmark = pytest.mark.skipif(
    shutil.which(CXX) is None,
    reason=f"{CXX} (a C++20 compiler) is not installed: the kernel emulation tests need it",
)

TSAN_DRIVER = Path(__file__).resolve().parents[1] / "emulation" / "sample_tsan.cpp"
TSAN_FLAGS = ("-std=c++20", "-O1", "-g", "-fsanitize=thread", "-pthread", "-Wall", "-Wextra")
SEED = (1 << 40) + 2024  # both halves of the Philox key in use
KEY = 0xFFFFFFFF  # _Reservoir's column key: one priority stream shared by all columns
ROWS = (1, 255, 257, 100_003)
# 2**32 - 5 and 2**34 - 5: the global row crosses 2**32, then the block counter's high word flips.
OFFSETS = (0, 3, 2**32 - 5, 2**34 - 5)
# "kth": the chunk's 10th smallest word (its largest for a shorter chunk), so that a row sits
# exactly on the limit and the comparison must be <=.
LIMITS = (0, "kth", 2**31, 2**32 - 1)
CASES = [
    (n, offset, limit, 1 + 2 * (i % 2), (np.float32, np.float64)[(i // 2) % 2])
    for i, (n, offset, limit) in enumerate(itertools.product(ROWS, OFFSETS, LIMITS))
]
CASE_IDS = [f"n{n}-off{o}-lim{lim}-c{c}-{np.dtype(t).name}" for n, o, lim, c, t in CASES]


def make_chunk(seed: int, n_rows: int, n_cols: int, dtype, order: str = "C") -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.normal(100.0, 30.0, (n_rows, n_cols))
    data[rng.random(data.shape) < 0.1] = np.nan
    return np.asarray(data.astype(dtype), order=order)


def resolve_limit(limit, seed: int, column_key: int, stream: int, offset: int, n: int) -> int:
    if limit != "kth":
        return int(limit)
    words = np.sort(_rng.random_words(seed, column_key, offset, n, stream))
    return int(words[min(9, n - 1)])


def emu_raw(lib, n_rows, seed, column_key, stream, offset, limit, grid_x=GRID_X, block=BLOCK):
    """The kernel's outputs as it leaves them: ``(rows, words)`` in the atomics' order."""
    rows = np.full(n_rows, -1, dtype=np.int64)
    words = np.zeros(n_rows, dtype=np.uint32)
    count = np.zeros(1, dtype=np.uint64)
    check_rc(lib.emu_sample_candidates(
        n_rows, seed, column_key & 0xFFFFFFFF, stream & 0xFFFFFFFF, offset, limit, grid_x, block,
        ptr(rows), ptr(words), ptr(count),
    ))  # fmt: skip
    m = int(count[0])
    assert m <= n_rows, f"the counter ran past the capacity: {m} > {n_rows}"
    return rows[:m], words[:m]


def emu_sample_candidates(lib, chunk, seed, column_key, stream, offset, limit, **grid):
    """What ``_cuda.sample_candidates`` does with the kernel's output: sort by row, gather."""
    rows, words = emu_raw(lib, chunk.shape[0], seed, column_key, stream, offset, limit, **grid)
    order = np.argsort(rows)
    rows, words = rows[order], words[order]
    return rows, words, np.asarray(chunk[rows], dtype=np.float64)


def assert_candidates_equal(got, want) -> None:
    for g, w, name in zip(got, want, ("rows", "words", "values"), strict=True):
        assert g.dtype == w.dtype, name
        np.testing.assert_array_equal(g, w, err_msg=name)  # NaN where NaN: nulls stay nulls


@pytest.fixture(scope="module")
def lib():
    return library()


@pytest.mark.parametrize(("n_rows", "offset", "limit", "n_cols", "dtype"), CASES, ids=CASE_IDS)
def test_sample_candidates(lib, n_rows, offset, limit, n_cols, dtype):
    stream = _rng.STREAM_SAMPLE
    chunk = make_chunk(n_rows + offset % 1000, n_rows, n_cols, dtype, "CF"[n_rows % 2])
    on_a_word = limit == "kth"
    limit = resolve_limit(limit, SEED, KEY, stream, offset, n_rows)
    raw_rows, _ = emu_raw(lib, n_rows, SEED, KEY, stream, offset, limit)
    assert np.unique(raw_rows).size == raw_rows.size, "a row was appended twice"
    got = emu_sample_candidates(lib, chunk, SEED, KEY, stream, offset, limit)
    want = ref.sample_candidates(chunk, SEED, KEY, stream, offset, limit)
    assert_candidates_equal(got, want)
    # And against the generator itself, independently of the twin.
    all_words = _rng.random_words(SEED, KEY, offset, n_rows, stream)
    expected_rows = np.flatnonzero(all_words <= limit)
    np.testing.assert_array_equal(got[0], expected_rows)
    np.testing.assert_array_equal(got[1], all_words[expected_rows])
    if limit == 2**32 - 1:
        assert got[0].size == n_rows
    if n_rows == ROWS[-1] and 0 < limit < 2**32 - 1:
        assert 0 < got[0].size < n_rows  # the limit selects: neither none nor all
    if on_a_word:
        assert limit in got[1] and got[0].size >= min(10, n_rows)


@pytest.mark.parametrize(
    ("seed", "column_key", "stream", "offset"),
    [
        (0, 0, 0, 0),
        (12345, 3, 0, 5),  # the transform's stream: a stream swapped with the key would differ
        (2**64 - 1, 2**32 - 1, 1, 2**45 + 3),
        ((1 << 40) + 7, 999, 7, 2**34 - 4 * 300),  # the high counter word flips mid-chunk
    ],
)
@pytest.mark.parametrize(("grid_x", "block"), [(1, 32), (3, BLOCK), (7, 256)])
def test_sample_candidates_keys_and_grids(lib, seed, column_key, stream, offset, grid_x, block):
    n_rows, limit = 5_000, 2**30
    chunk = make_chunk(seed % 1000, n_rows, 2, np.float64)
    args = (seed, column_key, stream, offset, limit)
    got = emu_sample_candidates(lib, chunk, *args, grid_x=grid_x, block=block)
    assert_candidates_equal(got, ref.sample_candidates(chunk, *args))
    words = _rng.random_words(seed, column_key, offset, n_rows, stream)
    np.testing.assert_array_equal(got[1], words[got[0]])
    assert 0 < got[0].size < n_rows


def test_sample_candidates_do_not_depend_on_chunking(lib):
    """Split anywhere, the candidates of the parts (rows shifted) are those of the whole."""
    chunk = make_chunk(5, 30_001, 3, np.float32)
    offset, limit = 2**32 - 1_000, 2**29
    whole = emu_sample_candidates(lib, chunk, SEED, KEY, 1, offset, limit)
    parts = [(0, 999), (999, 1_000), (1_000, 17_777), (17_777, 30_001)]
    got = [
        emu_sample_candidates(lib, chunk[a:b], SEED, KEY, 1, offset + a, limit) for a, b in parts
    ]
    rows = np.concatenate([g[0] + a for g, (a, _) in zip(got, parts, strict=True)])
    assert_candidates_equal(
        (rows, np.concatenate([g[1] for g in got]), np.concatenate([g[2] for g in got])), whole
    )


def _tsan_run(kernel_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Build ``emulation/sample_tsan.cpp`` with ThreadSanitizer against ``kernel_dir``; run it."""
    exe = tmp_path / "sample_tsan"
    cmd = [CXX, *TSAN_FLAGS, f"-I{kernel_dir}", str(TSAN_DRIVER), "-o", str(exe)]
    built = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if built.returncode != 0:
        if "tsan" in built.stderr.lower():  # no ThreadSanitizer runtime for this compiler
            pytest.skip(f"{CXX} cannot build with -fsanitize=thread:\n{built.stderr[-2000:]}")
        pytest.fail(f"building the race check failed:\n{' '.join(cmd)}\n{built.stderr}")
    env = {**os.environ, "TSAN_OPTIONS": "exitcode=66 halt_on_error=0"}
    done = subprocess.run([str(exe)], capture_output=True, text=True, check=False, env=env)
    if "FATAL: ThreadSanitizer" in done.stderr:  # e.g. a kernel whose memory layout TSan refuses
        pytest.skip(f"ThreadSanitizer cannot run here:\n{done.stderr[-2000:]}")
    return done


def test_no_data_race_under_thread_sanitizer(tmp_path):
    """The append is race-free: ThreadSanitizer sees the block's concurrent threads and reports
    a counter bumped without atomicAdd on every run (the outputs alone show it only sometimes)."""
    done = _tsan_run(KERNELS, tmp_path)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-6000:]}"


def test_plain_increment_is_caught_by_thread_sanitizer(tmp_path):
    """The check above can fail: with ``(*count)++`` in place of the atomic, a race is reported."""
    kernels = tmp_path / "kernels"
    shutil.copytree(KERNELS, kernels)
    source = (kernels / "sample.cu").read_text()
    assert source.count("atomicAdd(count, 1ULL)") == 1
    (kernels / "sample.cu").write_text(source.replace("atomicAdd(count, 1ULL)", "(*count)++"))
    done = _tsan_run(kernels, tmp_path)
    assert done.returncode != 0
    assert "ThreadSanitizer: data race" in done.stderr
