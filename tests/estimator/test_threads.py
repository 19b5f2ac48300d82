"""BLAS held to one thread inside gpuvgm's passes (its own threads are the parallelism), and
the caller's setting restored afterwards.

What is held is every BLAS library loaded when a pass starts: NumPy's, which its matrix products
use. A library loaded during a fit (SciPy's own OpenBLAS, with the special functions of the
first M-step, which call no BLAS) is not gpuvgm's to limit, so the checks follow the libraries
loaded before the fit."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import five_modes
from threadpoolctl import threadpool_info, threadpool_limits

import gpuvgm


def _blas() -> dict[str, int]:
    """Threads of each loaded BLAS library, by its file."""
    return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


@pytest.fixture
def blas_at_two():
    """The BLAS libraries loaded now, set to two threads around the test (so that one thread
    is a change to see); yields a function giving their thread counts."""
    before = set(_blas())
    if not before:
        pytest.skip("threadpoolctl finds no BLAS library in this process")
    with threadpool_limits(limits=2, user_api="blas"):
        assert set(_blas().values()) == {2}
        yield lambda: {n for path, n in _blas().items() if path in before}


@pytest.mark.parametrize("device", ["numpy", "cpu"])
def test_a_fit_holds_blas_to_one_thread_and_restores_it(device, rng, blas_at_two):
    X = np.column_stack([five_modes(1200, rng), five_modes(1200, rng)])
    seen: list[set[int]] = []
    model = gpuvgm.VGM(5, max_iter=5, device=device, random_state=0)
    with pytest.warns(gpuvgm.ConvergenceWarning):
        model.fit(X, progress=lambda phase, rows: seen.append(blas_at_two()))
    assert seen, "progress was never called"
    assert all(threads == {1} for threads in seen), seen
    assert blas_at_two() == {2}


@pytest.mark.parametrize("n_tasks", [1, 3])
def test_parallel_map_tasks_run_with_blas_held(n_tasks, blas_at_two):
    """The NumPy backend's passes (E-step, transform) run their blocks through parallel_map,
    one block included."""
    from gpuvgm._parallel import parallel_map

    assert parallel_map(lambda i: blas_at_two(), [(i,) for i in range(n_tasks)]) == [{1}] * n_tasks
    assert blas_at_two() == {2}


def test_overlapping_holds_restore_the_setting_when_the_last_one_leaves(blas_at_two):
    """Two holds (two passes on different threads, say) that leave in the order they entered,
    not nested: the setting stays at one thread until the last leaves, then returns to what it
    was. (Entered here on one thread: the count does not depend on which thread holds.)"""
    from gpuvgm._parallel import one_blas_thread

    one_blas_thread.__enter__()  # A enters
    one_blas_thread.__enter__()  # B enters
    assert blas_at_two() == {1}
    one_blas_thread.__exit__(None, None, None)  # A leaves first
    assert blas_at_two() == {1}, "B still runs: BLAS must stay at one thread"
    one_blas_thread.__exit__(None, None, None)  # B leaves
    assert blas_at_two() == {2}
