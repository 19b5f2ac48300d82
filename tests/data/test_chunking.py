"""The fit and the transform do not depend on how the rows are cut into chunks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import five_modes, lognormal, rel_err

import gpuvgm


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(11)
    n = 150_001
    X = np.column_stack([five_modes(n, rng), lognormal(n, rng)])
    X[rng.random(n) < 0.03, 1] = np.nan
    return X


def fit(X, chunk_rows, **kw):
    model = gpuvgm.VGM(
        6, max_iter=25, tol=0.0, chunk_rows=chunk_rows, device="cpu", random_state=5, **kw
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        return model.fit(X)


@pytest.mark.parametrize("init_params", ["kmeans", "random", "k-means++"])
def test_parameters_equal_for_any_chunk_size(table, init_params):
    models = [fit(table, c, init_params=init_params) for c in (1000, 65536, len(table))]
    ref = models[-1]
    for m in models[:-1]:
        for name in ("weights_", "means_", "covariances_", "lower_bound_"):
            assert rel_err(getattr(m, name), getattr(ref, name)) <= 1e-10, name


def test_sampled_components_bit_identical_for_any_chunk_size(table):
    model = fit(table, len(table))
    encodings = []
    for chunk_rows in (1000, 65536, len(table)):
        model.set_params(chunk_rows=chunk_rows)
        encodings.append(model.transform(table))
    for enc in encodings[:-1]:
        np.testing.assert_array_equal(enc.component, encodings[-1].component)
        np.testing.assert_array_equal(enc.normalized, encodings[-1].normalized)
        np.testing.assert_array_equal(enc.n_clipped, encodings[-1].n_clipped)


def test_same_seed_same_model_and_components(table):
    a, b = fit(table, 50_000), fit(table, 50_000)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.transform(table).component, b.transform(table).component)
    c = gpuvgm.VGM(6, max_iter=25, tol=0.0, device="cpu", random_state=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        c.fit(table)
    assert not np.array_equal(a.transform(table).component, c.transform(table).component)


def test_two_threads_equal_one(table, monkeypatch):
    from gpuvgm import _parallel

    results = []
    for threads in ("1", "2"):
        monkeypatch.setenv("GPUVGM_NUM_THREADS", threads)
        assert _parallel.n_threads() == int(threads)
        results.append(fit(table, 65536))
    np.testing.assert_array_equal(results[0].means_, results[1].means_)
    np.testing.assert_array_equal(results[0].lower_bound_, results[1].lower_bound_)
