"""Mode-specific normalization against RDT's ClusterBasedNormalizer and scikit-learn.

The mixture parameters are taken from the reference (``VGM.from_sklearn``), so the comparison
isolates the transform: posteriors, the normalized value for a component, the decoding, and the
distribution of the sampled components.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import five_modes, lognormal
from rdt.transformers.numerical import ClusterBasedNormalizer
from scipy import stats

import gpuvgm


@pytest.fixture(params=["numpy", "cpu"])
def device(request) -> str:
    """The NumPy reference backend and the compiled CPU backend, which must agree."""
    return request.param


@pytest.fixture
def fitted_rdt(rng):
    x = np.concatenate([five_modes(3000, rng), lognormal(1000, rng) * 3 + 20])
    data = pd.DataFrame({"amount": x})
    cbn = ClusterBasedNormalizer(
        max_clusters=10, weight_threshold=0.005, missing_value_generation=None
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cbn.fit(data, "amount")
    return x, data, cbn


def test_predict_proba_equals_sklearn(fitted_rdt, device):
    x, _, cbn = fitted_rdt
    bgm = cbn._bgm_transformer
    model = gpuvgm.VGM.from_sklearn(bgm, device=device)
    ours = model.predict_proba(x)[:, 0, :]
    ref = bgm.predict_proba(x[:, None])
    np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(model.predict(x)[:, 0], bgm.predict(x[:, None]))
    np.testing.assert_array_equal(model.valid_components_[0], cbn.valid_component_indicator)


def test_normalized_value_and_decoding_equal_rdt(fitted_rdt, device):
    x, data, cbn = fitted_rdt
    model = gpuvgm.VGM.from_sklearn(
        cbn._bgm_transformer, columns=["amount"], device=device, random_state=7
    )
    enc = model.transform(x)
    # RDT's formula for the component gpuvgm chose, with RDT's own parameters.
    bgm = cbn._bgm_transformer
    valid = cbn.valid_component_indicator
    means = bgm.means_[:, 0][valid]
    stds = np.sqrt(bgm.covariances_[:, 0, 0])[valid]
    c = enc.component[:, 0]
    expected = np.clip((x - means[c]) / (4 * stds[c]), -0.99, 0.99)
    np.testing.assert_allclose(enc.normalized[:, 0], expected, rtol=1e-12, atol=1e-12)

    # RDT's output decodes identically through gpuvgm and through RDT.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rdt_out = cbn.transform(data)
    back_rdt = cbn.reverse_transform(rdt_out)["amount"].to_numpy()
    back_ours = model.inverse_transform(
        (rdt_out["amount.normalized"].to_numpy(), rdt_out["amount.component"].to_numpy())
    )[:, 0]
    np.testing.assert_allclose(back_ours, back_rdt, rtol=1e-12, atol=1e-9)


def test_sampled_components_follow_the_posterior(fitted_rdt, device):
    x, _, cbn = fitted_rdt
    xs = np.tile(x, 25)  # 100 000 draws
    model = gpuvgm.VGM.from_sklearn(cbn._bgm_transformer, device=device, random_state=3)
    comp = model.transform(xs).component[:, 0]
    valid = model.valid_components_[0]
    p = model.predict_proba(xs)[:, 0, valid] + 1e-6  # RDT's floor
    p /= p.sum(axis=1, keepdims=True)
    expected = p.sum(axis=0)
    var = (p * (1 - p)).sum(axis=0)  # Poisson-binomial variance of each count
    counts = np.bincount(comp, minlength=valid.sum())
    z = (counts - expected) / np.sqrt(var)
    # Bonferroni over components at a 1e-6 family-wise level: no flaky failures.
    bound = stats.norm.isf(1e-6 / (2 * valid.sum()))
    assert np.all(np.abs(z) < bound), (counts, expected)
    # ...and the draw depends on each row's posterior, not only on the weights.
    assert np.mean(comp == np.argmax(p, axis=1)) > 0.9


def test_argmax_selection_picks_the_most_probable_valid_component(fitted_rdt, device):
    x, _, cbn = fitted_rdt
    model = gpuvgm.VGM.from_sklearn(
        cbn._bgm_transformer, device=device, component_selection="argmax"
    )
    comp = model.transform(x).component[:, 0]
    p = model.predict_proba(x)[:, 0, model.valid_components_[0]]
    np.testing.assert_array_equal(comp, np.argmax(p, axis=1))
