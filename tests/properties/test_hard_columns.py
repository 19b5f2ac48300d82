"""Columns that break naive implementations: large offsets, tiny variances, heavy tails,
constants and nulls. Finite parameters, a sensible mixture, and an exact round trip."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gpuvgm

N = 40_000


def columns(rng):
    t = rng.standard_t(2, N)
    x_nulls = rng.normal(50, 5, N)
    x_nulls[rng.random(N) < 0.05] = np.nan
    return {
        "timestamp": 1.7e9 + rng.normal(0, 10, N),
        "tiny_variance": 3.0 + rng.normal(0, 1e-6, N),
        "student_t2": t,
        "constant": np.full(N, 42.5),
        "nulls_5pct": x_nulls,
    }


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(2026)
    cols = columns(rng)
    X = np.column_stack(list(cols.values()))
    model = gpuvgm.VGM(10, max_iter=200, device="cpu", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        model.fit(X)
    return list(cols), X, model


def test_parameters_are_finite_and_describe_the_data(fitted):
    names, X, model = fitted
    for attr in ("weights_", "means_", "covariances_", "lower_bound_"):
        assert np.all(np.isfinite(getattr(model, attr))), attr
    assert np.all(model.covariances_ > 0)
    np.testing.assert_allclose(model.weights_.sum(axis=1), 1.0, rtol=1e-12)
    for j in range(len(names)):
        x = X[:, j][~np.isnan(X[:, j])]
        # The mixture's mean is the data's mean: the variational posterior shrinks each
        # component towards m0 and the stick-breaking weights carry +1 pseudo-counts, a bias of
        # O(K / N) spreads (2.5e-4 here; measured up to 9e-5). A frame-conversion error (shift
        # or scale applied twice, or in float32) is orders of magnitude larger.
        mix_mean = float(model.weights_[j] @ model.means_[j])
        spread = max(x.std(), 1e-3)  # reg_covar=1e-6 sets a floor of 1e-3 on sigma
        assert abs(mix_mean - x.mean()) <= model.n_components / N * spread, names[j]
        # Valid components sit inside the data range.
        valid = model.valid_components_[j]
        lo, hi = x.min() - spread, x.max() + spread
        assert np.all((model.means_[j][valid] >= lo) & (model.means_[j][valid] <= hi)), names[j]
    # Heavy tails need several components; a constant column needs one.
    assert model.valid_components_[names.index("student_t2")].sum() >= 2
    assert model.valid_components_[names.index("constant")].sum() == 1


def test_round_trip_is_exact_to_float64_precision(fitted):
    names, X, model = fitted
    model.set_params(clip=0.99)
    enc = model.transform(X)
    back = model.inverse_transform(enc)
    for j, name in enumerate(names):
        x = X[:, j]
        null = np.isnan(x)
        np.testing.assert_array_equal(enc.null[:, j], null)
        assert np.all(np.isnan(back[null, j]))
        clipped = np.abs(enc.normalized[:, j]) >= 0.99
        assert enc.n_clipped[j] == np.count_nonzero(clipped & ~null), name
        ok = ~null & ~clipped
        # float64 arithmetic: exact to a few ulps of the value (or 1e-12 std on tiny values);
        # an alpha computed in float32 would miss this by 1e5.
        bound = max(1e-12 * np.nanstd(x), 4 * np.finfo(float).eps * np.nanmax(np.abs(x)))
        err = np.abs(back[ok, j] - x[ok])
        assert err.max() <= bound, (name, err.max(), bound)


def test_unclipped_round_trip_is_exact_on_every_row(fitted):
    _, X, model = fitted
    model.set_params(clip=None)  # unclipped codes (|alpha| may exceed 1) decode only then
    try:
        enc = model.transform(X)
        back = model.inverse_transform(enc)
    finally:
        model.set_params(clip=0.99)
    assert np.all(enc.n_clipped == 0)
    ok = ~np.isnan(X)
    bound = np.maximum(
        1e-12 * np.nanstd(X, axis=0), 4 * np.finfo(float).eps * np.nanmax(np.abs(X), axis=0)
    )
    assert np.all(np.abs(back - X)[ok] <= (bound[None, :] * np.ones_like(X))[ok])


@pytest.mark.filterwarnings("ignore::gpuvgm.ConvergenceWarning")
def test_shifted_data_fits_like_centered_data():
    """The working frame makes a +1.7e9 offset invisible to the fit."""
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(-20, 2, 5000), rng.normal(15, 4, 5000)])
    kw = dict(n_components=5, max_iter=100, device="cpu", random_state=1)
    a = gpuvgm.VGM(**kw).fit(x)
    b = gpuvgm.VGM(**kw).fit(x + 1.7e9)
    np.testing.assert_allclose(b.means_ - 1.7e9, a.means_, atol=1e-5)
    np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=1e-6)
    np.testing.assert_allclose(b.weights_, a.weights_, rtol=1e-6, atol=1e-12)
