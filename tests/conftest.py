"""Shared fixtures and the tolerance table. CuPy is never imported here: GPU tests import it
themselves and skip when it (or a GPU) is missing."""

from __future__ import annotations

import numpy as np
import pytest

#: The one tolerance table (STYLE.md): relative, keyed by the dtype the arithmetic runs in and
#: by what is compared. ``"twin"``: a kernel against its reference twin (the same formulas in the
#: same order; only the rounding of float compute differs). ``"parity"``: gpuvgm against another
#: implementation (scikit-learn, RDT), whose order of operations differs.
RTOL = {
    "twin": {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-6},
    "parity": {np.dtype(np.float64): 1e-8, np.dtype(np.float32): 1e-4},
}


def rtol(dtype, against: str) -> float:
    """The relative tolerance for arithmetic in ``dtype`` compared ``against`` a twin or a
    reference implementation (:data:`RTOL`)."""
    return RTOL[against][np.dtype(dtype)]


def rel_err(a, b) -> float:
    """Largest relative difference, relative to max(|b|, tiny)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def five_modes(n: int, rng: np.random.Generator) -> np.ndarray:
    parts = [(-5, 1.0), (0, 0.5), (3, 0.3), (8, 2.0), (15, 1.0)]
    x = np.concatenate([rng.normal(m, s, n // 5 + 1) for m, s in parts])[:n]
    return rng.permutation(x)


def overlapping(n: int, rng: np.random.Generator) -> np.ndarray:
    x = np.concatenate([rng.normal(0, 1.0, n // 2 + 1), rng.normal(0.8, 1.5, n // 2 + 1)])[:n]
    return rng.permutation(x)


def lognormal(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.lognormal(mean=1.0, sigma=0.8, size=n)


def integers(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 6, size=n).astype(np.float64)


COLUMN_KINDS = {
    "five_modes": five_modes,
    "overlapping": overlapping,
    "lognormal": lognormal,
    "integers": integers,
}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261126)


def pytest_collection_modifyitems(config, items):
    """Skip ``gpu`` tests unless CuPy sees a GPU (checked once, lazily)."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    reason = None
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            reason = "no CUDA device visible"
    except Exception as exc:  # ImportError, or CUDA driver errors on a GPU-less machine
        reason = f"CuPy/GPU unavailable: {type(exc).__name__}: {exc}"
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))
