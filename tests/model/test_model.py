"""The model layer's mathematics, term by term, against scikit-learn's ``BayesianGaussianMixture``.

The fit-level parity tests (``test_sklearn_parity.py``) compare whole fits; these compare each
host function on the same responsibilities, so a regression names the formula: the M-step
(Bishop 10.58-10.63), the E-step constants C_k, the lower bound, the stick-breaking weights and
the conversion between the working frame and data units. The working frame here is deliberately
not the data's (shifted and scaled), so a conversion error cannot cancel out.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rtol
from sklearn.mixture import BayesianGaussianMixture

from gpuvgm import _model
from gpuvgm._model import Priors, Stats

TOL = rtol(np.float64, "parity")


def _case(k: int, seed: int):
    """Data (offset by 1e4, as a frame test needs), random responsibilities, scikit-learn
    after one M-step on them, and gpuvgm's priors and statistics of the same."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(-3, 0.5, 300), rng.normal(4, 2.0, 700)]) + 1e4
    log_resp = np.log(rng.dirichlet(np.ones(k), size=x.size))  # (n, K)
    est = BayesianGaussianMixture(
        n_components=k,
        covariance_type="full",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=1e-3,
        reg_covar=1e-6,
    )
    X = x[:, None]
    est._check_parameters(X)
    est._m_step(X, log_resp)
    est._set_parameters(est._get_parameters())  # weights_ and precisions_
    # A working frame that is not the data's own: shifted off the mean, scaled off the std.
    shift, scale = np.array([x.mean() + 0.37]), np.array([x.std() * 1.9])
    priors = Priors.from_data_units(
        shift=shift,
        scale=scale,
        weight_concentration=1e-3,
        mean_precision=float(est.mean_precision_prior_),
        degrees_of_freedom=float(est.degrees_of_freedom_prior_),
        mean=np.asarray(est.mean_prior_, dtype=np.float64),
        covariance=np.array([float(np.ravel(est.covariance_prior_)[0])]),
        reg_covar=1e-6,
    )
    resp = np.exp(log_resp)
    xw = (x - shift[0]) / scale[0]
    stats = Stats.zeros(1, k)
    stats.nk[0], stats.s1[0], stats.s2[0] = resp.sum(0), resp.T @ xw, resp.T @ (xw * xw)
    stats.h[0] = float(np.sum(resp * log_resp))
    stats.count[0] = x.size
    return x, log_resp, est, priors, stats


@pytest.mark.parametrize("k", [1, 3, 10])
def test_m_step_matches_sklearn_in_data_units(k):
    _, _, est, priors, stats = _case(k, seed=k)
    post = _model.m_step(stats, priors)
    means, covariances = _model.data_units(post, priors)
    np.testing.assert_allclose(post.a[0], est.weight_concentration_[0], rtol=TOL)
    np.testing.assert_allclose(post.b[0], est.weight_concentration_[1], rtol=TOL)
    np.testing.assert_allclose(post.mean_precision[0], est.mean_precision_, rtol=TOL)
    np.testing.assert_allclose(post.degrees_of_freedom[0], est.degrees_of_freedom_, rtol=TOL)
    np.testing.assert_allclose(means[0], est.means_[:, 0], rtol=TOL)
    np.testing.assert_allclose(covariances[0], est.covariances_[:, 0, 0], rtol=TOL)
    np.testing.assert_allclose(_model.mixture_weights(post)[0], est.weights_, rtol=TOL)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_estep_constants_give_sklearns_weighted_log_prob(k):
    """l_k(x') = C_k - 0.5 prec_k (x' - m_k)^2 in the working frame is scikit-learn's
    weighted log probability less the frame's Jacobian, log(scale)."""
    x, _, est, priors, stats = _case(k, seed=10 + k)
    post = _model.m_step(stats, priors)
    p = _model.estep_params(post, priors, np.array([0]))
    xw = (x - p.shift[0]) / p.scale[0]
    ours = p.log_consts[0] - 0.5 * p.precisions[0] * (xw[:, None] - p.means[0]) ** 2  # (n, K)
    ref = est._estimate_weighted_log_prob(x[:, None]) + np.log(p.scale[0])
    np.testing.assert_allclose(ours, ref, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_lower_bound_matches_sklearn(k):
    _, log_resp, est, priors, stats = _case(k, seed=20 + k)
    post = _model.m_step(stats, priors)
    ours = _model.lower_bound(stats.h, post, priors)[0]
    ref = est._compute_lower_bound(log_resp, None)
    np.testing.assert_allclose(ours, ref, rtol=TOL)


def test_frame_round_trip_is_exact():
    _, _, _, priors, stats = _case(5, seed=30)
    post = _model.m_step(stats, priors)
    means, covariances = _model.data_units(post, priors)
    back_means, back_cov = _model.from_data_units(means, covariances, priors)
    # Data units hold the 1e4 offset: a few ulps of it, in working units, is what survives.
    ulp = 4 * np.finfo(float).eps * abs(priors.shift[0]) / priors.scale[0]
    np.testing.assert_allclose(back_means, post.means, rtol=0, atol=ulp)
    np.testing.assert_allclose(back_cov, post.covariances, rtol=1e-14)


def test_stats_add_and_scale():
    """Chunks reduce with ``+`` (sums of disjoint row sets) and a sample stands in for all rows
    with ``scaled`` (every extensive quantity times the factor)."""
    _, _, _, _, stats = _case(4, seed=40)
    twice = stats + stats
    scaled = stats.scaled(2.0)
    for name in ("nk", "s1", "s2", "h", "count"):
        np.testing.assert_array_equal(getattr(twice, name), 2 * getattr(stats, name))
        np.testing.assert_allclose(getattr(scaled, name), getattr(twice, name), rtol=1e-15)
