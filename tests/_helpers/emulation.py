"""Building and calling the CUDA kernels on the CPU (host emulation), and the cases and checks
the kernel tests share (``tests/backends/test_kernels_emulated.py``, ``test_cuda_host_code.py``,
``test_cuda_gpu.py``, ``test_sample_kernel_emulated.py``).

``kernels/*.cu`` are compiled unchanged by g++ with ``cuda_emulation.h`` (one OS thread
per CUDA thread, real barriers and warp shuffles, blocks one at a time, warp 0 first between
barriers) into a shared library (``tests/emulation/shim.cpp``) that launches them over a grid of
several blocks. The parameter tables come from the CUDA backend's own packers, so these tests
check what a GPU would be fed. No GPU and no CuPy needed; skipped only without a C++20 compiler.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import itertools
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from gpuvgm._backends import _cuda
from gpuvgm._model import EStepParams, Stats, TransformParams

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ROOT / "kernels"
EMULATION = Path(__file__).resolve().parents[1] / "emulation"
SHIM = EMULATION / "shim.cpp"
CXX = os.environ.get("CXX", "g++")
# -ffp-contract=off: the host rounds a * b + c twice, as NumPy does and as the kernels' exact paths
# ask for on the GPU. -fno-gnu-unique: the emulated __shared__ arrays (static locals of inline
# functions) would otherwise be one object across every loaded build of the library, so a second
# build (the one without barriers) would read the first one's shared memory.
CXXFLAGS = (
    "-std=c++20", "-O2", "-fPIC", "-shared", "-pthread", "-ffp-contract=off", "-fno-gnu-unique",
    "-Wall", "-Wextra", "-Wno-unknown-pragmas",
)  # fmt: skip
# Small grids of several blocks: rows straddle blocks and every thread loops (grid stride).
GRID_X = 3
BLOCK = 128

i64 = ctypes.c_longlong
u64 = ctypes.c_ulonglong
vp = ctypes.c_void_p
c_int = ctypes.c_int
c_double = ctypes.c_double
c_float = ctypes.c_float

_SIGNATURES = {
    "emu_estep_stats": [vp, c_int, c_int, i64, i64, i64, vp, c_int, c_int, vp, c_int, c_int, vp],
    "emu_assign_stats": [vp, c_int, i64, i64, i64, vp, c_int, c_int, vp, c_int, c_int, vp],
    "emu_log_resp": [vp, c_int, i64, i64, i64, vp, c_int, c_int, vp, c_int, c_int, vp],
    "emu_moments": [vp, c_int, i64, i64, i64, vp, c_int, c_int, c_int, vp, vp, vp],
    "emu_transform": [
        vp, c_int, i64, i64, i64, vp, c_int, c_int, vp, vp, u64, i64, c_int, c_double, c_float,
        c_int, c_int, vp, vp, vp, vp,
    ],
    "emu_inverse": [
        vp, c_int, i64, i64, vp, c_int, i64, i64, i64, c_int, vp, c_int, vp, c_int, c_int, vp,
    ],
    "emu_philox_words": [u64, u64, ctypes.c_uint, u64, i64, vp],
    "emu_sample_candidates": [
        i64, u64, u64, ctypes.c_uint, i64, ctypes.c_uint, c_int, c_int, vp, vp, vp,
    ],
}  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Building and calling the emulated kernels
# ------------------------------------------------------------------------------------------------


def _compiler_id() -> str:
    out = subprocess.run([CXX, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else CXX


@functools.cache
def library(defines: tuple[str, ...] = ()) -> ctypes.CDLL:
    """Build (once per source hash, cached on disk) and load the emulation library."""
    sources = sorted(p for p in KERNELS.iterdir() if p.suffix in {".cu", ".cuh"})
    digest = hashlib.sha256()
    for path in [*sources, EMULATION / "cuda_emulation.h", SHIM]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(" ".join((*CXXFLAGS, *defines, _compiler_id())).encode())
    cache = Path(os.environ.get("GPUVGM_EMU_CACHE", Path(tempfile.gettempdir()) / "gpuvgm-emu"))
    lib_path = cache / f"libgpuvgm_emu_{digest.hexdigest()[:20]}.so"
    if not lib_path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = lib_path.with_name(f"{lib_path.name}.{os.getpid()}.tmp")
        cmd = [CXX, *CXXFLAGS, *defines, f"-I{KERNELS}", str(SHIM), "-o", str(tmp)]
        built = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if built.returncode != 0:
            pytest.fail(f"building the kernel emulation failed:\n{' '.join(cmd)}\n{built.stderr}")
        os.replace(tmp, lib_path)  # atomic: concurrent sessions never load a half-written file
    lib = ctypes.CDLL(str(lib_path))
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = None if name == "emu_philox_words" else c_int
    return lib


def ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def element_strides(a: np.ndarray) -> tuple[int, int]:
    return a.strides[0] // a.itemsize, a.strides[1] // a.itemsize


def check_rc(rc: int) -> None:
    assert rc == 0, "the emulation library has no instance for this dtype or K"


def emu_estep_stats(lib, chunk, params: EStepParams, compute, grid_x=GRID_X) -> Stats:
    k = params.n_components
    cols = np.ascontiguousarray(params.columns, dtype=np.int64)
    table = _cuda._estep_table(params)
    out = np.zeros((cols.size, 3 * k + 3))
    rs, cs = element_strides(chunk)
    check_rc(lib.emu_estep_stats(
        ptr(chunk), chunk.itemsize, np.dtype(compute).itemsize, chunk.shape[0], rs, cs, ptr(cols),
        cols.size, k, ptr(table), grid_x, BLOCK, ptr(out),
    ))  # fmt: skip
    return _cuda._stats_from_table(out, k)


def emu_assign_stats(lib, chunk, centers, params: EStepParams) -> Stats:
    k = centers.shape[1]
    cols = np.ascontiguousarray(params.columns, dtype=np.int64)
    table = _cuda._assign_table(centers, params)
    out = np.zeros((cols.size, 3 * k + 3))
    rs, cs = element_strides(chunk)
    check_rc(lib.emu_assign_stats(
        ptr(chunk), chunk.itemsize, chunk.shape[0], rs, cs, ptr(cols), cols.size, k, ptr(table),
        GRID_X, BLOCK, ptr(out),
    ))  # fmt: skip
    return _cuda._stats_from_table(out, k)


def emu_log_resp(lib, chunk, params: EStepParams) -> np.ndarray:
    k = params.n_components
    cols = np.ascontiguousarray(params.columns, dtype=np.int64)
    table = _cuda._estep_table(params)
    out = np.zeros((chunk.shape[0], cols.size, k))
    rs, cs = element_strides(chunk)
    check_rc(lib.emu_log_resp(
        ptr(chunk), chunk.itemsize, chunk.shape[0], rs, cs, ptr(cols), cols.size, k, ptr(table),
        GRID_X, BLOCK, ptr(out),
    ))  # fmt: skip
    return out


def emu_moments(lib, chunk):
    """The CUDA backend's two passes and host reductions, on the emulated kernels."""
    n_cols = chunk.shape[1]
    cols = np.arange(n_cols, dtype=np.int64)
    rs, cs = element_strides(chunk)
    sums = np.zeros((GRID_X, n_cols, 5))
    args = (ptr(chunk), chunk.itemsize, chunk.shape[0], rs, cs, ptr(cols), n_cols, GRID_X, BLOCK)
    check_rc(lib.emu_moments(*args, ptr(sums), None, None))
    reduced = _cuda._reduce_moment_partials(sums)
    count = reduced[:, 0]
    mean = np.where(count > 0, reduced[:, 1] / np.maximum(count, 1.0), 0.0)
    m2 = np.zeros((GRID_X, n_cols))
    check_rc(lib.emu_moments(*args, None, ptr(mean), ptr(m2)))
    return _cuda._moments_from_partials(reduced, m2.sum(axis=0), mean)


def emu_transform(lib, chunk, params: TransformParams, row_offset, margin=_cuda.SAMPLE_MARGIN):
    """``(normalized, component, null, n_clipped, n_fallback)``."""
    k = params.estep.n_components
    cols = np.ascontiguousarray(params.estep.columns, dtype=np.int64)
    table, info = _cuda._transform_tables(params)
    n = chunk.shape[0]
    normalized = np.empty((n, cols.size))
    component = np.empty((n, cols.size), dtype=np.int32)
    null = np.empty((n, cols.size), dtype=bool)
    counts = np.zeros((cols.size, 2), dtype=np.uint64)
    rs, cs = element_strides(chunk)
    check_rc(lib.emu_transform(
        ptr(chunk), chunk.itemsize, n, rs, cs, ptr(cols), cols.size, k, ptr(table), ptr(info),
        params.seed, row_offset, int(params.sample), params.clip, margin, GRID_X, BLOCK,
        ptr(normalized), ptr(component), ptr(null), ptr(counts),
    ))  # fmt: skip
    counts = counts.astype(np.int64)
    return normalized, component, null, counts[:, 0], counts[:, 1]


def emu_inverse(lib, normalized, component, params: TransformParams) -> np.ndarray:
    table, n_valid = _cuda._inverse_table(params)
    k = table.shape[1] // 2
    n, n_cols = normalized.shape
    out = np.empty((n, n_cols))
    ars, acs = element_strides(normalized)
    crs, ccs = element_strides(component)
    check_rc(lib.emu_inverse(
        ptr(normalized), normalized.itemsize, ars, acs, ptr(component), component.itemsize, crs,
        ccs, n, n_cols, ptr(table), k, ptr(n_valid), GRID_X, BLOCK, ptr(out),
    ))  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------------
# Data: columns drawn from a known mixture, in data units far from the working frame
# ------------------------------------------------------------------------------------------------


def make_case(seed, n_rows, n_cols, k, dtype, order, null_fraction=0.05):
    """``(chunk, params)``: the chunk has one extra column, params select the others shuffled."""
    rng = np.random.default_rng(seed)
    means = np.sort(rng.uniform(-2.0, 2.0, (n_cols, k)), axis=1)
    stds = rng.uniform(0.05, 1.0, (n_cols, k))  # down to 5 % of the column: narrow modes
    weights = rng.dirichlet(np.ones(k), n_cols)
    precisions = 1.0 / stds**2
    # C_k as the E-step would have it: log weight - 0.5 log(2 pi) + 0.5 log precision.
    log_consts = np.log(weights) - 0.5 * np.log(2.0 * np.pi) + 0.5 * np.log(precisions)
    shift = rng.uniform(-1000.0, 1000.0, n_cols)
    scale = rng.uniform(0.5, 5.0, n_cols)
    label = np.stack([rng.choice(k, n_rows, p=w) for w in weights], axis=1)  # (n, C)
    cols_idx = np.arange(n_cols)[None, :]
    xw = means[cols_idx, label] + rng.standard_normal((n_rows, n_cols)) * stds[cols_idx, label]
    data = np.empty((n_rows, n_cols + 1))
    positions = rng.permutation(n_cols + 1)[:n_cols]
    data[:, positions] = shift + scale * xw
    data[:, np.setdiff1d(np.arange(n_cols + 1), positions)] = rng.standard_normal((n_rows, 1))
    data[rng.random(data.shape) < null_fraction] = np.nan
    chunk = np.asarray(data.astype(dtype), order=order)
    params = EStepParams(
        columns=positions.astype(np.int64),
        shift=shift,
        scale=scale,
        means=means,
        precisions=precisions,
        log_consts=log_consts,
    )
    return chunk, params


def make_transform_params(params: EStepParams, seed, sample, clip) -> TransformParams:
    rng = np.random.default_rng(seed + 1)
    n_cols, k = params.means.shape
    valid = rng.random((n_cols, k)) < 0.7
    valid[np.arange(n_cols), rng.integers(0, k, n_cols)] = True  # at least one per column
    scale = params.scale[:, None]
    return TransformParams(
        estep=params,
        means=params.means * scale + params.shift[:, None],
        stds=scale / np.sqrt(params.precisions),
        valid=valid,
        column_keys=rng.integers(0, 1000, n_cols),
        seed=(1 << 40) + 12345 + seed,  # both halves of the Philox key in use
        sample=sample,
        clip=clip,
    )


ROWS = (1, 255, 256, 257, 100_003)
# Every (rows, columns, K) combination; dtype and memory order alternate over them so that each
# of the four (dtype, order) pairs meets both column counts, both K and the large chunk.
CASES = [
    (n, c, k, (np.float32, np.float64)[i % 2], "CF"[(i // 2) % 2])
    for i, (n, c, k) in enumerate(itertools.product(ROWS, (1, 7), (1, 10)))
]
CASE_IDS = [f"n{n}-c{c}-k{k}-{np.dtype(t).name}-{o}" for n, c, k, t, o in CASES]


# ------------------------------------------------------------------------------------------------
# Statistics compared relative to each one's natural scale in its column
# ------------------------------------------------------------------------------------------------


def assert_stats_close(got: Stats, want: Stats, rtol: float) -> None:
    np.testing.assert_array_equal(got.count, want.count)
    count = want.count[:, None]
    # |S1_k| <= sqrt(N_k S2_k) (Cauchy-Schwarz): the scale S1's cancellation cannot hide under.
    s1_scale = np.sqrt(np.maximum(want.nk * want.s2, 0.0))
    # Relative to the statistic, or to 1 % of the column's rows when it is smaller: a float l_k
    # of magnitude 40 is 2e-6 off, which a component holding 1e-3 of one row cannot absorb, and
    # need not (the M-step divides its sums by nk + 10 eps).
    floor = 1e-2 * count
    checks = {
        "nk": (got.nk, want.nk, np.abs(want.nk) + floor),
        "s1": (got.s1, want.s1, s1_scale + floor),
        "s2": (got.s2, want.s2, np.abs(want.s2) + floor),
        # H and log_prob enter the lower bound, a sum of O(1) terms per row: per-row absolute
        # errors are what count (a float log of s = 1 +- 1 ulp is 1e-7 off where H is 0).
        "h": (got.h, want.h, np.abs(want.h) + want.count),
        "log_prob": (got.log_prob, want.log_prob, np.abs(want.log_prob) + want.count),
    }
    for name, (g, w, scale) in checks.items():
        err = np.abs(g - w)
        bad = err > rtol * scale
        assert not bad.any(), (
            f"{name}: max error / scale = {np.max(err / np.where(scale > 0, scale, 1)):.3g} "
            f"> rtol {rtol:g}"
        )
