"""Parity with scikit-learn's BayesianGaussianMixture, term by term.

gpuvgm starts from the same initial responsibilities as scikit-learn: scikit-learn's own k-means
labels, passed as ``means_init`` (every row goes to its nearest center, which is how k-means
labels are defined), and both run the same number of iterations.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import COLUMN_KINDS, rel_err, rtol
from sklearn.cluster import KMeans
from sklearn.mixture import BayesianGaussianMixture

import gpuvgm

K = 10
N = 6000


@pytest.fixture(params=["numpy", "cpu"])
def device(request) -> str:
    """The NumPy reference backend and the compiled CPU backend, which must agree."""
    return request.param


def sklearn_fit(x: np.ndarray, max_iter: int, tol: float, seed: int = 0):
    bgm = BayesianGaussianMixture(
        n_components=K,
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=1e-3,
        max_iter=max_iter,
        tol=tol,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference's own ConvergenceWarning
        bgm.fit(x[:, None])
        # The same k-means scikit-learn ran inside fit (same RandomState stream).
        km = KMeans(n_clusters=K, n_init=1, random_state=np.random.RandomState(seed))
        km.fit(x[:, None])
    # k-means may return duplicate centers (6 distinct integers, 10 clusters) that differ by an
    # ulp; its labels break those ties towards the lowest index, so make duplicates exact.
    centers = km.cluster_centers_[:, 0].copy()
    for k in range(K):
        for j in range(k):
            if abs(centers[k] - centers[j]) <= 1e-9 * max(1.0, abs(centers[j])):
                centers[k] = centers[j]
                break
    # The premise of the comparison: nearest center (lowest index on ties) == k-means label.
    assert np.array_equal(np.argmin(np.abs(x[:, None] - centers), axis=1), km.labels_)
    return bgm, centers


@pytest.mark.parametrize("kind", sorted(COLUMN_KINDS))
def test_twenty_iterations_match_sklearn(kind, rng, device):
    x = COLUMN_KINDS[kind](N, rng)
    bgm, centers = sklearn_fit(x, max_iter=20, tol=0.0)
    model = gpuvgm.VGM(
        K, max_iter=20, tol=0.0, tol_scale="sum", means_init=centers, device=device, random_state=0
    )
    with pytest.warns(gpuvgm.ConvergenceWarning):
        model.fit(x)
    tol = rtol(np.float64, "parity")
    assert model.n_iter_[0] == bgm.n_iter_ == 20
    assert rel_err(model.lower_bounds_[0], bgm.lower_bounds_) <= tol
    assert rel_err(model.lower_bound_[0], bgm.lower_bound_) <= tol
    assert rel_err(model.weights_[0], bgm.weights_) <= tol
    assert rel_err(model.means_[0], bgm.means_[:, 0]) <= tol
    assert rel_err(model.covariances_[0], bgm.covariances_[:, 0, 0]) <= tol
    assert rel_err(model.mean_precision_[0], bgm.mean_precision_) <= tol
    assert rel_err(model.degrees_of_freedom_[0], bgm.degrees_of_freedom_) <= tol
    assert rel_err(model.weight_concentration_[0][0], bgm.weight_concentration_[0]) <= tol
    assert rel_err(model.weight_concentration_[1][0], bgm.weight_concentration_[1]) <= tol


def test_all_columns_in_one_pass_match_separate_sklearn_fits(rng, device):
    kinds = sorted(COLUMN_KINDS)
    X = np.column_stack([COLUMN_KINDS[k](N, rng) for k in kinds])
    refs = [sklearn_fit(X[:, j], max_iter=15, tol=0.0) for j in range(X.shape[1])]
    model = gpuvgm.VGM(
        K,
        max_iter=15,
        tol=0.0,
        tol_scale="sum",
        means_init=np.stack([c for _, c in refs]),
        device=device,
    )
    with pytest.warns(gpuvgm.ConvergenceWarning):
        model.fit(X)
    for j, (bgm, _) in enumerate(refs):
        assert rel_err(model.lower_bound_[j], bgm.lower_bound_) <= 1e-8
        assert rel_err(model.means_[j], bgm.means_[:, 0]) <= 1e-8
        assert rel_err(model.covariances_[j], bgm.covariances_[:, 0, 0]) <= 1e-8
        assert rel_err(model.weights_[j], bgm.weights_) <= 1e-8


def test_sum_tolerance_stops_at_the_same_iteration_as_sklearn(rng, device):
    x = COLUMN_KINDS["five_modes"](N, rng)
    bgm, centers = sklearn_fit(x, max_iter=400, tol=1e-3)
    assert bgm.converged_
    model = gpuvgm.VGM(
        K, max_iter=400, tol=1e-3, tol_scale="sum", means_init=centers, device=device
    ).fit(x)
    assert model.converged_[0]
    assert model.n_iter_[0] == bgm.n_iter_
    assert rel_err(model.lower_bound_[0], bgm.lower_bound_) <= 1e-8


def test_per_row_tolerance_is_the_sum_tolerance_divided_by_rows(rng, device):
    x = COLUMN_KINDS["lognormal"](N, rng)
    _, centers = sklearn_fit(x, max_iter=1, tol=0.0)
    by_sum = gpuvgm.VGM(
        K, max_iter=400, tol=1e-2, tol_scale="sum", means_init=centers, device=device
    ).fit(x)
    by_row = gpuvgm.VGM(
        K, max_iter=400, tol=1e-2 / N, tol_scale="per_row", means_init=centers, device=device
    ).fit(x)
    assert by_sum.converged_[0] and by_row.converged_[0]
    assert by_sum.n_iter_[0] == by_row.n_iter_[0]
    trace = by_row.lower_bounds_[0]
    # Stopped at the first iteration whose change per row fell below tol, not before.
    changes = np.abs(np.diff(trace)) / N
    assert changes[-1] < 1e-2 / N
    assert np.all(changes[:-1] >= 1e-2 / N)
