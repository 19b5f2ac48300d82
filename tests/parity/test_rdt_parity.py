"""Mode-specific normalization against RDT's ClusterBasedNormalizer and scikit-learn.

The mixture parameters are taken from the reference (``VGM.from_sklearn``), so the comparison
isolates the transform: posteriors, the normalized value for a component, the decoding, and the
distribution of the sampled components.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import five_modes, lognormal, rtol
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


# ---------------------------------------------------------------------- the "rdt" layouts
# RDT's output for each missing_value_generation, and the gpuvgm layout that writes it.
RDT_LAYOUT = {"from_column": "rdt", "random": "rdt_random", None: "rdt_random"}


@pytest.fixture
def with_nulls(rng):
    x = np.concatenate([five_modes(3000, rng), lognormal(1000, rng) * 3 + 20])
    x[rng.random(x.size) < 0.06] = np.nan
    return pd.DataFrame({"amount": x})


def _fit_rdt(data, generation):
    cbn = ClusterBasedNormalizer(missing_value_generation=generation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cbn.fit(data, "amount")
    return cbn


@pytest.mark.parametrize("generation", list(RDT_LAYOUT))
def test_rdt_layout_is_rdts_output(with_nulls, tmp_path, device, generation):
    """On the same data and the same mixture (``from_sklearn``), the written Parquet is what
    RDT's ``transform`` returns: the same columns in the same order, all float64, no Parquet
    nulls, ``is_null`` equal to RDT's; every row, null rows included, holds RDT's encoding of
    its (mean-filled) value for the component gpuvgm drew, and RDT's own ``reverse_transform``
    decodes the file as it decodes its own output."""
    cbn = _fit_rdt(with_nulls, generation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = cbn.transform(with_nulls)
    model = gpuvgm.VGM.from_sklearn(  # RDT's clip, whatever gpuvgm's default
        cbn._bgm_transformer, columns=["amount"], device=device, random_state=5, clip=0.99
    )
    dst = tmp_path / "enc.parquet"
    model.transform_parquet(with_nulls, dst, layout=RDT_LAYOUT[generation])
    table = pq.read_table(dst)
    assert all(table.column(c).null_count == 0 for c in table.column_names)
    got = table.to_pandas()
    assert list(got.columns) == list(expected.columns)
    assert got.dtypes.to_dict() == expected.dtypes.to_dict()  # float64 throughout
    if "amount.is_null" in expected:
        pd.testing.assert_series_equal(got["amount.is_null"], expected["amount.is_null"])

    # RDT's arithmetic for gpuvgm's component, on RDT's fill value for the nulls.
    x = with_nulls["amount"].to_numpy()
    filled = np.where(np.isnan(x), cbn.null_transformer._missing_value_replacement, x)
    bgm, valid = cbn._bgm_transformer, cbn.valid_component_indicator
    means, stds = bgm.means_[:, 0][valid], np.sqrt(bgm.covariances_[:, 0, 0])[valid]
    comp = got["amount.component"].to_numpy()
    assert np.array_equal(comp, np.round(comp)) and comp.min() >= 0 and comp.max() < valid.sum()
    c = comp.astype(int)
    ref = np.clip((filled - means[c]) / (4 * stds[c]), -0.99, 0.99)
    # 1e-12 relative: the fill is scikit-learn's mean of the filled column, RDT's is pandas'.
    np.testing.assert_allclose(got["amount.normalized"], ref, rtol=rtol(np.float64, "twin"))
    # The components follow the posterior as RDT's draws do (a coarse check; the draw itself is
    # compared by distribution in test_sampled_components_follow_the_posterior).
    share = np.bincount(c, minlength=valid.sum()) / c.size
    ref_share = np.bincount(expected["amount.component"].astype(int), minlength=valid.sum())
    np.testing.assert_allclose(share, ref_share / c.size, atol=0.03)

    back_ours = cbn.reverse_transform(got)["amount"].to_numpy()
    back_rdt = cbn.reverse_transform(expected)["amount"].to_numpy()
    kept = np.abs(got["amount.normalized"].to_numpy()) < 0.99
    if generation == "from_column":
        np.testing.assert_array_equal(np.isnan(back_ours), np.isnan(x))
        kept &= ~np.isnan(x)
        np.testing.assert_allclose(back_ours[kept], x[kept], rtol=1e-12, atol=1e-9)
    assert np.isnan(back_ours).sum() == np.isnan(back_rdt).sum() or generation == "random"


def test_rdt_layout_stores_rdts_values_bit_for_bit(with_nulls, tmp_path):
    """Where gpuvgm reproduces RDT's numbers exactly (``rdt_compatible=True``), the "rdt"
    layout keeps every bit: RDT's own output, through the layout's encoder and Parquet, reads
    back identical to the frame RDT returned."""
    from gpuvgm._layouts import encode
    from gpuvgm.integrations.rdt import ClusterBasedNormalizer as Ours

    cbn = _fit_rdt(with_nulls, "from_column")
    ours = Ours.from_rdt(cbn, device="cpu", rdt_compatible=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = cbn.transform(with_nulls)
        out = ours.transform(with_nulls)
    pd.testing.assert_frame_equal(out, expected, check_exact=True)  # gpuvgm's numbers are RDT's
    cols = ["amount.normalized", "amount.component", "amount.is_null"]
    normalized, component, is_null = (out[[c]].to_numpy() for c in cols)
    table = encode(normalized, component, is_null > 0.5, ["amount"], np.array([9]), "rdt")
    pq.write_table(table, tmp_path / "rdt.parquet")
    pd.testing.assert_frame_equal(
        pq.read_table(tmp_path / "rdt.parquet").to_pandas(), expected, check_exact=True
    )


def test_rdt_layout_of_a_fitted_model_follows_rdts_null_rules(tmp_path, rng):
    """A gpuvgm fit knows what RDT knows: a column with nulls in fit gets ``is_null``, one
    without does not (RDT's guidance "Extra column not created"), and a null is encoded as the
    column's mean, RDT's fill value, to the rounding of the mean."""
    a = five_modes(4000, rng)
    a[::40] = np.nan
    data = pd.DataFrame({"a": a, "b": lognormal(4000, rng)})
    model = gpuvgm.VGM(6, device="cpu", random_state=1, max_iter=30, clip=0.99)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        model.fit(data)
    model.transform_parquet(data, tmp_path / "enc.parquet", layout="rdt")
    got = pq.read_table(tmp_path / "enc.parquet").to_pandas()
    expected_columns = []
    for name in ("a", "b"):
        cbn = _fit_rdt(data[[name]].rename(columns={name: "amount"}), "from_column")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = cbn.transform(data[[name]].rename(columns={name: "amount"}))
        expected_columns += [c.replace("amount", name) for c in out.columns]
    assert list(got.columns) == expected_columns  # a.is_null only
    np.testing.assert_array_equal(got["a.is_null"], np.isnan(a).astype(float))

    mean = np.nanmean(a)
    valid = model.valid_components_[0]
    means, stds = model.means_[0][valid], np.sqrt(model.covariances_[0][valid])
    null = np.isnan(a)
    c = got["a.component"].to_numpy()[null].astype(int)
    ref = np.clip((mean - means[c]) / (4 * stds[c]), -0.99, 0.99)
    np.testing.assert_allclose(got["a.normalized"][null], ref, rtol=rtol(np.float64, "twin"))
    assert len(np.unique(c)) >= 1 and (got["a.component"] == got["a.component"].round()).all()

    # A saved model keeps what the layout needs (the pre-pass statistics): the same file.
    model.save(tmp_path / "m.gpuvgm")
    gpuvgm.load(tmp_path / "m.gpuvgm").transform_parquet(
        data, tmp_path / "again.parquet", layout="rdt"
    )
    assert pq.read_table(tmp_path / "again.parquet").equals(pq.read_table(tmp_path / "enc.parquet"))

    back = model.inverse_parquet(tmp_path / "enc.parquet", tmp_path / "back.parquet")
    assert back["rows"] == 4000
    decoded = pq.read_table(tmp_path / "back.parquet").column("a").to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(np.isnan(decoded), null)


@pytest.mark.parametrize("generation", ["from_column", "random"])
def test_rdts_own_output_decodes_with_gpuvgm(with_nulls, tmp_path, generation):
    """The other direction: RDT's output saved as Parquet decodes through ``inverse_parquet``
    to what RDT's ``reverse_transform`` gives (nulls from ``is_null``, as RDT restores them)."""
    cbn = _fit_rdt(with_nulls, generation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = cbn.transform(with_nulls)
    out.to_parquet(tmp_path / "rdt.parquet")
    model = gpuvgm.VGM.from_sklearn(
        cbn._bgm_transformer, columns=["amount"], device="cpu", clip=0.99
    )
    model.inverse_parquet(tmp_path / "rdt.parquet", tmp_path / "back.parquet")
    ours = pq.read_table(tmp_path / "back.parquet").column("amount").to_numpy(zero_copy_only=False)
    x = with_nulls["amount"].to_numpy()
    if generation == "from_column":
        ref = cbn.reverse_transform(out)["amount"].to_numpy()
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(x))
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-9, equal_nan=True)
    else:  # no null indicator: a null decodes to the mean's encoding, a number
        assert not np.isnan(ours).any()
        bgm, valid = cbn._bgm_transformer, cbn.valid_component_indicator
        means, stds = bgm.means_[:, 0][valid], np.sqrt(bgm.covariances_[:, 0, 0])[valid]
        c = out["amount.component"].to_numpy().astype(int)
        ref = out["amount.normalized"].to_numpy() * 4 * stds[c] + means[c]
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-9)
