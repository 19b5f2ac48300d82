"""gpuvgm.integrations.rdt.ClusterBasedNormalizer against RDT's ClusterBasedNormalizer.

The columns look like real ones: a multimodal column, a skewed (log-normal) one with 5 % nulls,
and an integer-valued column (int64 dtype, so RDT's dtype and rounding paths run).
"""

from __future__ import annotations

import inspect
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import five_modes, lognormal, rtol

from gpuvgm import DataTypeError, NotFittedError, ParameterError

rdt_numerical = pytest.importorskip("rdt.transformers.numerical")
RDTNormalizer = rdt_numerical.ClusterBasedNormalizer

from gpuvgm.integrations.rdt import (  # noqa: E402
    RDT_TAKES_MODEL_MISSING_VALUES as RT_TAKES_MMV,
)
from gpuvgm.integrations.rdt import ClusterBasedNormalizer, rdt_choice  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
N_ROWS = 4000
GENERATIONS = [None, "random", "from_column"]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    rng = np.random.default_rng(20261127)
    skewed = lognormal(N_ROWS, rng) * 40 + 100
    skewed[rng.random(N_ROWS) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "id": np.arange(N_ROWS),
            "multimodal": five_modes(N_ROWS, rng),
            "skewed": skewed,
            "count": rng.poisson(30, N_ROWS) + 10 * rng.integers(0, 3, N_ROWS),  # int64
        }
    )


def _rdt_fit(table: pd.DataFrame, column: str, **kw) -> RDTNormalizer:
    rdt_cbn = RDTNormalizer(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's ConvergenceWarning, RDT's guidance
        rdt_cbn.fit(table, column)
    return rdt_cbn


def _rdt_choice_loop(probs: np.ndarray, rs: np.random.RandomState) -> np.ndarray:
    """RDT's loop (rdt/transformers/numerical.py, ClusterBasedNormalizer._transform)."""
    out = np.zeros(len(probs), dtype=int)
    for i in range(len(probs)):
        p = probs[i] + 1e-6
        p = p / p.sum()
        out[i] = rs.choice(np.arange(probs.shape[1]), p=p)
    return out


@pytest.mark.parametrize("n_valid", [1, 2, 3, 7, 8, 9, 10, 17, 32])
def test_vectorised_draw_equals_numpy_choice_loop(n_valid):
    rng = np.random.default_rng(n_valid)
    rows = 600
    probs = np.concatenate(
        [
            rng.dirichlet(np.full(n_valid, 0.3), size=rows // 3),  # smooth posteriors
            np.eye(n_valid)[rng.integers(0, n_valid, rows // 3)],  # certain rows: the 1e-6 floor
            np.exp(-rng.exponential(40, (rows // 3, n_valid))),  # tiny, unnormalised
        ]
    )
    ref_state, our_state = np.random.RandomState(n_valid), np.random.RandomState(n_valid)
    expected = _rdt_choice_loop(probs, ref_state)
    got = rdt_choice(probs, our_state.random_sample(len(probs)))
    np.testing.assert_array_equal(got, expected)
    # ...and the generator is left where RDT's loop leaves it.
    assert ref_state.random_sample() == our_state.random_sample()


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("column", ["multimodal", "skewed", "count"])
def test_bit_for_bit_equal_to_rdt(table, column, generation):
    """In RDT-compatibility mode, transform and reverse_transform equal RDT's bit for bit.

    How the parameters are made identical: ``ClusterBasedNormalizer.from_rdt`` takes RDT's fitted
    state (null transformer, dtype, rounding, random states) and builds the gpuvgm mixture with
    ``VGM.from_sklearn(rdt._bgm_transformer)``, keeping RDT's means, standard deviations and valid
    components exactly; the normalized value and the decoding are RDT's float64 expressions on
    those. The posterior p(k | x) is computed by gpuvgm's backend and agrees with scikit-learn's
    to ~1e-12, not bitwise: the draw inverts a CDF at u, so it can only differ where u lies
    within that distance of a CDF step. The test measures that margin (the smallest distance
    between any row's uniform and its CDF steps) and requires it to be far larger than the
    posterior difference, so the exact equality below is explained, not lucky.
    """
    rdt_cbn = _rdt_fit(table, column, missing_value_generation=generation)
    ours = ClusterBasedNormalizer.from_rdt(rdt_cbn, device="cpu", rdt_compatible=True)

    # The margin argument of the docstring.
    bgm = rdt_cbn._bgm_transformer
    valid = rdt_cbn.valid_component_indicator
    x = table[column].fillna(table[column].mean()).to_numpy(dtype=np.float64)
    p_ref = bgm.predict_proba(x[:, None])[:, valid]
    p_ours = ours.model_.predict_proba(x)[:, 0, valid]
    posterior_diff = np.max(np.abs(p_ours - p_ref))
    u = np.random.RandomState(rdt_cbn.random_seed).random_sample(x.size)
    p = p_ref + 1e-6
    cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    margin = np.min(np.abs(cdf[:, :-1] - u[:, None])) if cdf.shape[1] > 1 else np.inf
    assert posterior_diff < 1e-9 and margin > 1e3 * posterior_diff, (posterior_diff, margin)

    for _ in range(2):  # the second call continues RDT's random stream
        expected = rdt_cbn.transform(table)
        got = ours.transform(table)
        assert list(got.columns) == list(expected.columns)
        assert got.dtypes.to_dict() == expected.dtypes.to_dict()
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
    back_expected = rdt_cbn.reverse_transform(expected)
    back = ours.reverse_transform(got)
    pd.testing.assert_frame_equal(back, back_expected, check_exact=True)


@pytest.mark.parametrize("column", ["multimodal", "skewed"])
def test_compatible_fit_finds_rdts_mixture(table, column):
    """Fitted by gpuvgm itself (scikit-learn's k-means start and stopping rule), the mixture is
    RDT's to ~1e-12, so the output is RDT's: same components, normalized to 1e-9."""
    rdt_cbn = _rdt_fit(table, column, missing_value_generation="from_column")
    ours = ClusterBasedNormalizer(
        missing_value_generation="from_column", device="cpu", rdt_compatible=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both stop at max_iter on these columns
        ours.fit(table, column)
    bgm = rdt_cbn._bgm_transformer
    assert ours.model_.n_iter_[0] == bgm.n_iter_
    np.testing.assert_array_equal(ours.valid_component_indicator, rdt_cbn.valid_component_indicator)
    np.testing.assert_allclose(ours.model_.means_[0], bgm.means_[:, 0], rtol=1e-9)
    np.testing.assert_allclose(ours.model_.weights_[0], bgm.weights_, rtol=1e-9, atol=1e-12)
    expected, got = rdt_cbn.transform(table), ours.transform(table)
    comp = f"{column}.component"
    np.testing.assert_array_equal(got[comp], expected[comp])
    np.testing.assert_allclose(
        got[f"{column}.normalized"], expected[f"{column}.normalized"], rtol=0, atol=1e-9
    )
    assert list(got.columns) == list(expected.columns)  # is_null only where there are nulls
    if f"{column}.is_null" in expected:
        pd.testing.assert_series_equal(got[f"{column}.is_null"], expected[f"{column}.is_null"])


@pytest.mark.parametrize("generation", GENERATIONS)
def test_default_mode_has_rdts_columns_and_round_trips(table, generation):
    column = "skewed"
    rdt_cbn = _rdt_fit(table, column, missing_value_generation=generation)
    ours = ClusterBasedNormalizer(missing_value_generation=generation, device="cpu", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        out = ours.fit_transform(table, column)
    expected = rdt_cbn.transform(table)
    assert list(out.columns) == list(expected.columns)
    assert out.dtypes.to_dict() == expected.dtypes.to_dict()
    assert ours.get_output_columns() == rdt_cbn.get_output_columns()
    norm, comp = out[f"{column}.normalized"], out[f"{column}.component"]
    assert norm.abs().max() <= 0.99
    assert comp.between(0, ours.valid_component_indicator.sum() - 1).all()
    assert (comp == comp.round()).all()
    # A pure function of the model and the data: the same output on every call.
    pd.testing.assert_frame_equal(ours.transform(table), out, check_exact=True)

    back = ours.reverse_transform(out)
    assert list(back.columns) == list(rdt_cbn.reverse_transform(expected).columns)
    x, y = table[column].to_numpy(), back[column].to_numpy()
    null = np.isnan(x)
    if generation == "from_column":
        np.testing.assert_array_equal(np.isnan(y), null)
    kept = ~null & ~np.isnan(y) & (norm.abs().to_numpy() < 0.99)  # clipped values cannot return
    assert kept.mean() > 0.85
    np.testing.assert_allclose(y[kept], x[kept], rtol=1e-12, atol=1e-9)


@pytest.fixture(scope="module")
def heavy_tail() -> pd.DataFrame:
    """A t(2) column with nulls: 0.1-1 % of its rows lie beyond RDT's 0.99 clip."""
    rng = np.random.default_rng(15)
    x = rng.standard_t(2, N_ROWS) * 15 + 5
    x[rng.random(N_ROWS) < 0.03] = np.nan
    return pd.DataFrame({"delay": x})


def test_default_clip_is_rdts_on_a_heavy_tail(heavy_tail):
    """Without vgm_params the integration clips as RDT does: bit for bit RDT's output and
    reverse (from RDT's mixture), and gpuvgm's own fit clips at 0.99 too."""
    rdt_cbn = _rdt_fit(heavy_tail, "delay", missing_value_generation="from_column")
    ours = ClusterBasedNormalizer.from_rdt(rdt_cbn, device="cpu", rdt_compatible=True)
    assert ours.model_.clip == 0.99
    expected, got = rdt_cbn.transform(heavy_tail), ours.transform(heavy_tail)
    assert expected["delay.normalized"].abs().max() == 0.99  # the tail is clipped
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    pd.testing.assert_frame_equal(
        ours.reverse_transform(got), rdt_cbn.reverse_transform(expected), check_exact=True
    )
    own = ClusterBasedNormalizer(missing_value_generation="from_column", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = own.fit_transform(heavy_tail, "delay")
    assert own.model_.clip == 0.99
    assert out["delay.normalized"].abs().max() == 0.99


@pytest.mark.parametrize("rdt_compatible", [False, True])
def test_clip_none_round_trips_a_heavy_tail_exactly(heavy_tail, rdt_compatible):
    """``vgm_params={"clip": None}`` reaches the transform and the reverse: every value of a
    t(2) column comes back to float64 rounding (1e-12 std), and its nulls as nulls."""
    ours = ClusterBasedNormalizer(
        missing_value_generation="from_column",
        device="cpu",
        rdt_compatible=rdt_compatible,
        vgm_params={"clip": None},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = ours.fit_transform(heavy_tail, "delay")
    assert ours.model_.clip is None
    assert out["delay.normalized"].abs().max() > 1  # beyond both RDT clips (0.99, then 1)
    back = ours.reverse_transform(out)["delay"].to_numpy()
    x = heavy_tail["delay"].to_numpy()
    null = np.isnan(x)
    np.testing.assert_array_equal(np.isnan(back), null)
    err = np.abs(back[~null] - x[~null]) / np.nanstd(x)
    assert err.max() <= rtol(np.float64, "twin"), err.max()


def test_clip_none_from_rdt_gives_rdts_unclipped_values(heavy_tail):
    """From RDT's mixture with clip=None: RDT's normalized values before its clip, and an exact
    reverse of them."""
    rdt_cbn = _rdt_fit(heavy_tail, "delay", missing_value_generation="from_column")
    ours = ClusterBasedNormalizer.from_rdt(
        rdt_cbn, device="cpu", rdt_compatible=True, vgm_params={"clip": None}
    )
    expected, got = rdt_cbn.transform(heavy_tail), ours.transform(heavy_tail)  # same draws
    comp = got["delay.component"].to_numpy().astype(int)
    np.testing.assert_array_equal(comp, expected["delay.component"].to_numpy())
    bgm, valid = rdt_cbn._bgm_transformer, rdt_cbn.valid_component_indicator
    means, stds = bgm.means_[:, 0][valid], np.sqrt(bgm.covariances_[:, 0, 0])[valid]
    x = heavy_tail["delay"].fillna(heavy_tail["delay"].mean()).to_numpy()
    unclipped = (x - means[comp]) / (4 * stds[comp])  # RDT's expression, without np.clip
    np.testing.assert_array_equal(got["delay.normalized"].to_numpy(), unclipped)
    kept = np.abs(unclipped) < 0.99
    np.testing.assert_array_equal(got["delay.normalized"][kept], expected["delay.normalized"][kept])
    back = ours.reverse_transform(got)["delay"].to_numpy()
    x = heavy_tail["delay"].to_numpy()
    np.testing.assert_array_equal(np.isnan(back), np.isnan(x))
    ok = ~np.isnan(x)
    assert np.max(np.abs(back[ok] - x[ok])) / np.nanstd(x) <= rtol(np.float64, "twin")


def test_integer_column_rounds_and_keeps_its_dtype(table):
    ours = ClusterBasedNormalizer(
        missing_value_generation=None, device="cpu", learn_rounding_scheme=True, random_state=1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        out = ours.fit_transform(table, "count")
    back = ours.reverse_transform(out)
    assert back["count"].dtype == table["count"].dtype
    assert np.mean(back["count"].to_numpy() == table["count"].to_numpy()) > 0.95


def test_enforce_min_max_values_clips_generator_output(table):
    ours = ClusterBasedNormalizer(
        missing_value_generation=None, device="cpu", enforce_min_max_values=True, random_state=2
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        ours.fit(table, "multimodal")
    n_valid = int(ours.valid_component_indicator.sum())
    generated = pd.DataFrame(
        {
            "multimodal.normalized": [1.7, -3.0, 0.2, np.nan],  # a generator's raw outputs
            "multimodal.component": [0.2, n_valid + 4.0, -2.0, 1.0],
        }
    )
    back = ours.reverse_transform(generated)["multimodal"].to_numpy()
    lo, hi = table["multimodal"].min(), table["multimodal"].max()
    assert np.all((back[:3] >= lo) & (back[:3] <= hi))
    assert np.isnan(back[3])


def test_pickles_and_plugs_into_hypertransformer(table):
    """CTGAN's joblib transform pickles the normalizer; RDT's HyperTransformer accepts it."""
    from rdt import HyperTransformer

    data = table[["id", "multimodal", "skewed"]]
    ht = HyperTransformer()
    ht.detect_initial_config(data)
    ht.update_transformers(
        {
            "multimodal": ClusterBasedNormalizer(device="cpu", rdt_compatible=True),
            "skewed": ClusterBasedNormalizer(missing_value_generation="from_column", device="cpu"),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = ht.fit_transform(data)
    assert {"multimodal.normalized", "multimodal.component", "skewed.is_null"} <= set(out.columns)
    back = ht.reverse_transform(out)
    np.testing.assert_array_equal(back["skewed"].isna(), data["skewed"].isna())

    fitted = ht.get_config()["transformers"]["skewed"]
    clone = pickle.loads(pickle.dumps(fitted))
    pd.testing.assert_frame_equal(clone.transform(data), fitted.transform(data), check_exact=True)


def test_bad_parameters_and_unfitted_use_raise_typed_errors(table):
    with pytest.raises(ParameterError, match="max_clusters"):
        ClusterBasedNormalizer(max_clusters=0)
    with pytest.raises(ParameterError, match="max_clusters"):
        ClusterBasedNormalizer(max_clusters=33)
    with pytest.raises(ParameterError, match="device"):
        ClusterBasedNormalizer(device="tpu")
    with pytest.raises(ParameterError, match="rdt_compatible"):
        ClusterBasedNormalizer(rdt_compatible="yes")
    with pytest.raises(ParameterError, match="n_components"):
        ClusterBasedNormalizer(vgm_params={"n_components": 4})
    with pytest.raises(ParameterError, match="not a VGM parameter"):
        ClusterBasedNormalizer(vgm_params={"max_iterations": 4})
    with pytest.raises(ParameterError, match="max_iter"):
        ClusterBasedNormalizer(vgm_params={"max_iter": -1})
    with pytest.raises(NotFittedError):
        ClusterBasedNormalizer().model_  # noqa: B018
    with pytest.raises(NotFittedError):
        ClusterBasedNormalizer.from_rdt(RDTNormalizer())
    assert "rdt_compatible=True" in repr(ClusterBasedNormalizer(rdt_compatible=True))


def test_missing_rdt_is_a_typed_error_naming_the_extra():
    script = (
        "import sys; sys.modules['rdt'] = None\n"
        "from gpuvgm import GPUVGMError\n"
        "try:\n"
        "    import gpuvgm.integrations.rdt\n"
        "except ImportError as exc:\n"
        "    assert isinstance(exc, GPUVGMError), type(exc)\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert "pip install 'gpuvgm[rdt]'" in out.stdout


@pytest.mark.gpu
def test_cuda_backend_gives_the_same_output(table):
    """Default mode: the same Philox draws on both backends; compatible mode: RDT's bits."""
    column = "skewed"
    rdt_cbn = _rdt_fit(table, column, missing_value_generation="from_column")
    outputs = {}
    for device in ("cpu", "cuda"):
        ours = ClusterBasedNormalizer.from_rdt(rdt_cbn, device=device, rdt_compatible=False)
        outputs[device] = ours.transform(table)
        assert ours.model_._backend().NAME == ("cupy" if device == "cuda" else "numpy")
    comp = f"{column}.component"
    np.testing.assert_array_equal(outputs["cuda"][comp], outputs["cpu"][comp])
    np.testing.assert_allclose(
        outputs["cuda"][f"{column}.normalized"],
        outputs["cpu"][f"{column}.normalized"],
        rtol=0,
        atol=1e-12,
    )
    compatible = ClusterBasedNormalizer.from_rdt(rdt_cbn, device="cuda", rdt_compatible=True)
    pd.testing.assert_frame_equal(
        compatible.transform(table), rdt_cbn.transform(table), check_exact=True
    )


# ---------------------------------------------------------------------- RDT as it was found
def test_rdts_name_lookups_still_return_rdts_class():
    """Importing the integration (this module did, and so does ``use_gpuvgm``) leaves RDT's
    registry alone: every lookup by name gives RDT's own classes, and gpuvgm's class is in none
    of RDT's lists (the caches are cleared first, so the lists are built after the import)."""
    import rdt.transformers as rt
    from rdt import HyperTransformer

    import gpuvgm.integrations.ctgan  # noqa: F401  # use_gpuvgm's module imports the class too

    for cached in (rt.get_class_by_transformer_name, rt.get_transformers_by_type):
        cached.cache_clear()
    by_name = rt.get_class_by_transformer_name()
    assert by_name["ClusterBasedNormalizer"] is RDTNormalizer
    listed = [*by_name.values(), *rt.TRANSFORMERS.values()]
    listed += [c for classes in rt.get_transformers_by_type().values() for c in classes]
    assert not [c for c in listed if c.__module__.startswith("gpuvgm")]
    path = "rdt.transformers.numerical.ClusterBasedNormalizer"
    assert rt.get_transformer_class(path) is RDTNormalizer
    # ...while gpuvgm's class is still found by its own full path, as any transformer is.
    ours = rt.get_transformer_class("gpuvgm.integrations.rdt.ClusterBasedNormalizer")
    assert ours is ClusterBasedNormalizer

    data = pd.DataFrame({"a": np.linspace(0, 1, 50), "b": np.arange(50) % 7 * 1.5})
    ht = HyperTransformer()
    ht.detect_initial_config(data)
    ht.update_transformers_by_sdtype("numerical", transformer_name="ClusterBasedNormalizer")
    chosen = ht.get_config()["transformers"]
    assert {type(t) for t in chosen.values()} == {RDTNormalizer}


def _rdt_parameters() -> list[inspect.Parameter]:
    return list(inspect.signature(RDTNormalizer.__init__).parameters.values())[1:]


def test_constructor_takes_the_installed_rdts_arguments_in_rdts_order():
    """The installed RDT's parameters, same names, kinds, defaults and positions, come first;
    gpuvgm's own follow. A positional call means the same to both classes."""
    ours = list(inspect.signature(ClusterBasedNormalizer.__init__).parameters.values())[1:]
    theirs = _rdt_parameters()
    assert [(p.name, p.kind, p.default) for p in ours[: len(theirs)]] == [
        (p.name, p.kind, p.default) for p in theirs
    ]
    rest = {p.name for p in ours[len(theirs) :]}
    assert {"device", "random_state", "rdt_compatible", "vgm_params"} <= rest
    # The arguments of every RDT the [rdt] extra allows (rdt>=1.10): rdt 1.10.0 to 1.22 have
    # exactly these six (model_missing_values first), 2.0 the last five.
    every = {
        "model_missing_values",
        "learn_rounding_scheme",
        "enforce_min_max_values",
        "max_clusters",
        "weight_threshold",
        "missing_value_generation",
    }
    assert {p.name for p in theirs} <= every <= {p.name for p in ours}

    # Each argument has RDT's effect: both classes print the same, built the same way.
    positional = [True, True, 7, 0.01, "from_column"]
    if RT_TAKES_MMV:
        positional = [None, *positional]
    assert repr(ClusterBasedNormalizer(*positional)) == repr(RDTNormalizer(*positional))
    keywords = {"max_clusters": 4, "missing_value_generation": None, "weight_threshold": 0.1}
    assert repr(ClusterBasedNormalizer(**keywords)) == repr(RDTNormalizer(**keywords))


@pytest.mark.parametrize(("flag", "generation"), [(True, "from_column"), (False, "random")])
def test_deprecated_model_missing_values_works_as_in_rdt_1(table, flag, generation):
    with pytest.warns(FutureWarning, match="model_missing_values"):
        ours = ClusterBasedNormalizer(model_missing_values=flag, missing_value_generation=None)
    assert ours.missing_value_generation == generation
    if RT_TAKES_MMV:  # the installed RDT still has it: the same outcome
        with pytest.warns(FutureWarning, match="model_missing_values"):
            theirs = RDTNormalizer(model_missing_values=flag, missing_value_generation=None)
        assert theirs.missing_value_generation == generation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.fit(table, "skewed")
        out = ours.transform(table)
    assert ("skewed.is_null" in out) == flag
    with pytest.raises(ParameterError, match="model_missing_values"):
        ClusterBasedNormalizer(model_missing_values="yes")


# ---------------------------------------------------------------------- non-numeric columns
SECRET = "s3cr3t-customer-42"


@pytest.mark.parametrize(
    ("values", "dtype_text"),
    [
        (pd.Series([SECRET, "b", None] * 10), "dtype object"),
        (pd.Series([SECRET, "b", None] * 10, dtype="string"), "dtype string"),
        (pd.Series([1.5, SECRET, None] * 10, dtype=object), "dtype object"),
        (pd.Series(pd.Categorical([SECRET, "b", "c"] * 10)), "dtype category"),
        (pd.Series(pd.date_range("2020-01-01", periods=30)), "dtype datetime64"),
    ],
)
def test_non_numeric_column_is_a_typed_error_naming_column_and_dtype(values, dtype_text):
    data = pd.DataFrame({"amount": np.arange(30.0), "who": values})
    with pytest.raises(DataTypeError) as info:
        ClusterBasedNormalizer(device="cpu").fit(data, "who")
    message = str(info.value)
    assert "'who'" in message and dtype_text in message
    assert SECRET not in message and "2020" not in message  # the data stays out of the message
    assert isinstance(info.value, TypeError)  # still what pandas' error was


def test_numbers_in_an_object_column_still_fit_as_in_rdt(table):
    data = pd.DataFrame({"v": pd.Series(list(table["skewed"]), dtype=object)})
    ours = ClusterBasedNormalizer(device="cpu", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = ours.fit_transform(data, "v")
    assert list(out.columns) == ["v.normalized", "v.component"]


def test_transforming_a_string_column_after_fitting_numbers_is_a_typed_error(table):
    ours = ClusterBasedNormalizer(device="cpu", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.fit(table, "multimodal")
    bad = pd.DataFrame({"multimodal": [SECRET] * 5})
    with pytest.raises(DataTypeError, match="'multimodal' has dtype object") as info:
        ours.transform(bad)
    assert SECRET not in str(info.value)


def test_use_gpuvgm_and_undo_leave_rdts_lookups_alone(monkeypatch):
    """``use_gpuvgm`` patches CTGAN's module only (a stand-in here: CTGAN is optional), RDT's
    lookups give RDT's class while the patch is on and after ``undo()``, which puts CTGAN's
    normalizer back."""
    import types

    import rdt.transformers as rt

    from gpuvgm.integrations.ctgan import use_gpuvgm

    package, module = types.ModuleType("ctgan"), types.ModuleType("ctgan.data_transformer")
    module.ClusterBasedNormalizer = RDTNormalizer
    package.data_transformer = module
    monkeypatch.setitem(sys.modules, "ctgan", package)
    monkeypatch.setitem(sys.modules, "ctgan.data_transformer", module)

    def rdt_lookup():
        rt.get_class_by_transformer_name.cache_clear()
        return rt.get_class_by_transformer_name()["ClusterBasedNormalizer"]

    patch = use_gpuvgm(device="cpu", rdt_compatible=True)
    assert module.ClusterBasedNormalizer().rdt_compatible is True  # CTGAN now builds gpuvgm's
    assert isinstance(module.ClusterBasedNormalizer(), ClusterBasedNormalizer)
    assert rdt_lookup() is RDTNormalizer
    patch.undo()
    assert module.ClusterBasedNormalizer is RDTNormalizer
    assert rdt_lookup() is RDTNormalizer
