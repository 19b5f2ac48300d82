"""No leak: many fit + transform cycles do not grow the process's memory."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import gpuvgm
from gpuvgm._profiling import current_rss_bytes, peak_rss_bytes

pytestmark = pytest.mark.filterwarnings("ignore::gpuvgm.ConvergenceWarning")

CYCLES = 200
LIMIT_BYTES = 50 * 2**20


def test_fit_transform_cycles_do_not_grow_memory(tmp_path):
    rng = np.random.default_rng(0)
    X = np.column_stack(
        [
            np.concatenate([rng.normal(-3, 1, 1000), rng.normal(2, 0.5, 1000)]),
            rng.lognormal(0, 1, 2000),
            1.7e9 + rng.normal(0, 10, 2000),
        ]
    )
    X[rng.random(2000) < 0.05, 1] = np.nan
    path = tmp_path / "model.gpuvgm"

    def cycle(i: int) -> None:
        model = gpuvgm.VGM(5, max_iter=10, chunk_rows=700, device="cpu", random_state=i)
        enc = model.fit(X).transform(X)
        model.inverse_transform(enc)
        model.predict_proba(X)
        model.save(path)
        gpuvgm.load(path).transform(X)

    for i in range(10):  # warm up: thread pool, scratch buffers, imports, allocator arenas
        cycle(i)
    gc.collect()
    peak0, rss0 = peak_rss_bytes(), current_rss_bytes()
    for i in range(CYCLES):
        cycle(i)
    gc.collect()
    peak_growth = peak_rss_bytes() - peak0
    rss_growth = current_rss_bytes() - rss0
    assert peak_growth < LIMIT_BYTES, f"peak RSS grew {peak_growth / 2**20:.1f} MiB"
    assert rss_growth < LIMIT_BYTES, f"RSS grew {rss_growth / 2**20:.1f} MiB"
