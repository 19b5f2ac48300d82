"""Property tests (hypothesis).

1. Random mixtures, cut into random chunk sizes, give the same model (parameters to 1e-10 of
   the data's scale) and bit-identical sampled components; the same seed gives the same model.
2. Random malformed inputs -- dtypes (strings, bools, objects, complex, dates, float16, huge
   integers), shapes (0-D, 3-D, empty, no columns), NaN/inf patterns, all-null columns,
   magnitudes near the float64 limits (±1e300, 1.8e308) and tiny ones (1e-300, subnormals),
   mixed -- either fit with finite parameters or raise a ``GPUVGMError``: never another
   exception, never a NaN parameter. The same holds for transform-time and inverse-time input.

The number of cases each test tries is its ``max_examples``; ``CASES`` sums them (quoted in
the README's test section).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gpuvgm
from gpuvgm import GPUVGMError

EXAMPLES = {
    "chunking": 60,
    "malformed_fit": 1000,
    "transform_values": 300,
    "inverse_inputs": 300,
}
CASES = sum(EXAMPLES.values())

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

pytestmark = pytest.mark.filterwarnings("ignore::gpuvgm.ConvergenceWarning")


# ---------------------------------------------------------------------- 1. chunking
@st.composite
def mixtures(draw):
    """A table of 1-3 columns, each a random 1-4 mode Gaussian mixture with some nulls."""
    n = draw(st.integers(30, 1500))
    n_cols = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    cols = []
    for _ in range(n_cols):
        modes = draw(st.integers(1, 4))
        offset = draw(st.sampled_from([0.0, 1.7e9, -3e5]))
        spread = 10.0 ** draw(st.floats(-3, 3))
        means = offset + rng.normal(0, 5, modes) * spread
        stds = spread * 10.0 ** rng.uniform(-1, 0.5, modes)
        label = rng.integers(0, modes, n)
        x = rng.normal(means[label], stds[label])
        x[rng.random(n) < draw(st.sampled_from([0.0, 0.02, 0.2]))] = np.nan
        x[:8] = rng.normal(means[0], stds[0], 8)  # enough non-null values for any K below
        cols.append(x)
    return np.column_stack(cols)


def _scaled_err(a: np.ndarray, b: np.ndarray, scale) -> np.ndarray:
    """Per column, max |a - b| / (|b| + scale): relative, except near zero where the column's
    scale counts."""
    return np.max(np.abs(a - b) / (np.abs(b) + scale), axis=-1)


@settings(max_examples=EXAMPLES["chunking"], **SETTINGS)
@given(
    X=mixtures(),
    k=st.integers(1, 4),
    init=st.sampled_from(["kmeans", "k-means++", "random", "random_from_data"]),
    chunks=st.lists(st.integers(7, 1500), min_size=1, max_size=2),
    sample_size=st.sampled_from([8, 50, 100_000]),
)
def test_random_chunkings_give_the_same_model(X, k, init, chunks, sample_size):
    def fit(chunk_rows):
        return gpuvgm.VGM(
            k,
            max_iter=6,
            tol=0.0,
            init_params=init,
            init_sample_size=max(sample_size, k),
            chunk_rows=chunk_rows,
            device="cpu",
            random_state=12345,
        ).fit(X)

    ref = fit(len(X))
    again = fit(len(X))
    for name in ("weights_", "means_", "covariances_", "lower_bound_", "n_iter_"):
        assert np.array_equal(getattr(ref, name), getattr(again, name)), name  # same seed
    std = np.sqrt(np.nanvar(X, axis=0))  # (C,)
    # 1e-10, or the rounding of the pre-pass mean where it is coarser: different summation
    # orders round the mean of 1.7e9 +- 1e-3 differently by an ulp of 1.7e9 (2.4e-7), which is
    # 2.4e-4 standard deviations and moves the priors that much (README, Reproducibility).
    tol = 1e-10 + 100 * np.finfo(np.float64).eps * np.abs(np.nanmean(X, axis=0)) / std
    for chunk_rows in chunks:
        m = fit(chunk_rows)
        assert np.array_equal(m.n_iter_, ref.n_iter_)
        assert np.all(_scaled_err(m.weights_, ref.weights_, 1e-12) <= tol)
        assert np.all(_scaled_err(m.means_, ref.means_, std[:, None]) <= tol)
        assert np.all(_scaled_err(m.covariances_, ref.covariances_, 0.0) <= tol)
        assert np.all(_scaled_err(m.lower_bound_[:, None], ref.lower_bound_[:, None], 0.0) <= tol)
        # The sampled components are keyed by row index: bit-identical for any chunking.
        a = ref.transform(X)
        b = ref.set_params(chunk_rows=chunk_rows).transform(X)
        ref.set_params(chunk_rows=len(X))
        assert np.array_equal(a.component, b.component)
        assert np.array_equal(a.normalized, b.normalized, equal_nan=True)


# ---------------------------------------------------------------------- 2. malformed input
SPECIAL = [
    0.0,
    -0.0,
    1.0,
    np.nan,
    np.inf,
    -np.inf,
    1e300,
    -1e300,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    1e-300,
    5e-324,
    -5e-324,
    1e154,
    1e-154,
    2.0**53 + 1,
    1.7e9,
]
FLOAT_DTYPES = [np.float64, np.float32, np.float16]
INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
OTHER_DTYPES = [np.bool_, np.complex128, "U3", "S3", "datetime64[s]", "timedelta64[ms]"]


with np.errstate(over="ignore"):  # 1e300 is inf in float32 and float16: that is the point
    SPECIAL_BY_WIDTH = {
        w: [float(np.asarray(v, dtype=f"f{w // 8}")) for v in SPECIAL] for w in (16, 32, 64)
    }


def float_values(width: int = 64):
    return st.one_of(
        st.floats(width=width, allow_nan=True, allow_infinity=True),
        st.sampled_from(SPECIAL_BY_WIDTH[width]),
    )


@st.composite
def shapes(draw):
    ndim = draw(st.sampled_from([0, 1, 2, 2, 2, 3]))
    return tuple(draw(st.integers(0, 30 if i == 0 else 3)) for i in range(ndim))


@st.composite
def arrays(draw):
    shape = draw(shapes())
    kind = draw(st.sampled_from(["float", "float", "int", "other", "object", "mixture"]))
    if kind == "float":
        dtype = draw(st.sampled_from(FLOAT_DTYPES))
        width = np.dtype(dtype).itemsize * 8
        return draw(hnp.arrays(dtype, shape, elements=float_values(width)))
    if kind == "int":
        return draw(hnp.arrays(draw(st.sampled_from(INT_DTYPES)), shape))
    if kind == "other":
        dtype = np.dtype(draw(st.sampled_from(OTHER_DTYPES)))
        return draw(hnp.arrays(dtype, shape))
    if kind == "object":
        items = st.one_of(
            float_values(), st.integers(-(2**70), 2**70), st.none(), st.text(max_size=3)
        )
        flat = draw(st.lists(items, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(shape)
    # A plausible column at an extreme magnitude: a mixture scaled by 10**e, shifted, with
    # NaN/inf sprinkled in.
    n = draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 10.0 ** draw(st.integers(-320, 308))
    with np.errstate(over="ignore", invalid="ignore"):  # 1e308 * 3 is inf: that is the point
        x = rng.normal(size=(n, draw(st.integers(1, 2)))) * scale + draw(st.sampled_from(SPECIAL))
    for value in draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), max_size=3)):
        x.flat[draw(st.integers(0, x.size - 1))] = value
    return x


@st.composite
def frames(draw):
    n = draw(st.integers(0, 30))
    columns = {}
    for j in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["float", "Int64", "Float64", "bool", "object", "category"]))
        if kind == "float":
            values = draw(st.lists(float_values(), min_size=n, max_size=n))
            columns[f"c{j}"] = pd.Series(values, dtype=np.float64)
        elif kind == "Int64":
            values = draw(
                st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)
            )
            columns[f"c{j}"] = pd.array(values, dtype="Int64")
        elif kind == "Float64":
            values = draw(st.lists(st.none() | st.floats(-1e300, 1e300), min_size=n, max_size=n))
            columns[f"c{j}"] = pd.array(values, dtype="Float64")
        elif kind == "bool":
            columns[f"c{j}"] = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        elif kind == "object":
            values = draw(
                st.lists(st.none() | st.text(max_size=2) | st.floats(), min_size=n, max_size=n)
            )
            columns[f"c{j}"] = pd.Series(values, dtype=object)
        else:
            columns[f"c{j}"] = pd.Categorical(
                draw(st.lists(st.sampled_from([1.0, 2.0]), min_size=n, max_size=n))
            )
    return pd.DataFrame(columns, index=range(n)) if columns else pd.DataFrame(index=range(n))


@st.composite
def tables(draw):
    n = draw(st.integers(0, 30))
    typ = draw(
        st.sampled_from(
            [
                pa.float64(),
                pa.float32(),
                pa.int64(),
                pa.uint64(),
                pa.int8(),
                pa.null(),
                pa.string(),
                pa.bool_(),
            ]
        )
    )
    if pa.types.is_floating(typ):
        width = 32 if typ == pa.float32() else 64
        values = draw(st.lists(st.none() | float_values(width), min_size=n, max_size=n))
    elif pa.types.is_integer(typ):
        info = np.iinfo(typ.to_pandas_dtype())
        values = draw(
            st.lists(st.none() | st.integers(int(info.min), int(info.max)), min_size=n, max_size=n)
        )
    elif typ == pa.string():
        values = draw(st.lists(st.none() | st.text(max_size=3), min_size=n, max_size=n))
    elif typ == pa.bool_():
        values = draw(st.lists(st.none() | st.booleans(), min_size=n, max_size=n))
    else:
        values = [None] * n
    return pa.table({"a": pa.array(values, type=typ)})


ODD = st.sampled_from(
    [None, 3.0, "no-such-file.parquet", {"a": [1.0, 2.0]}, [[1.0, 2.0], [3.0]], [], [[]], b"\x00"]
)
INPUTS = st.one_of(
    arrays(), arrays(), frames(), tables(), ODD, st.lists(float_values(), max_size=20)
)


def _assert_fitted_finite(model: gpuvgm.VGM) -> None:
    for name in (
        "weights_",
        "means_",
        "covariances_",
        "precisions_",
        "mean_precision_",
        "degrees_of_freedom_",
        "lower_bound_",
    ):
        value = getattr(model, name)
        assert np.all(np.isfinite(value)), (name, value)
    assert np.all(model.covariances_ > 0) and np.all(model.weights_ >= 0)
    np.testing.assert_allclose(model.weights_.sum(axis=1), 1.0, rtol=1e-12)
    assert model.valid_components_.any(axis=1).all()


def _check_outputs(model: gpuvgm.VGM, X) -> None:
    """transform / inverse / predict_proba of the data the model was fitted on: finite for
    every non-null value. The fit accepted ``X`` (so it holds no infinity, and no null under
    ``null_policy="error"``): refusing it here would be a bug, so nothing is caught."""
    enc = model.transform(X)
    proba = model.predict_proba(X)
    present = ~enc.null
    assert np.all(np.isfinite(enc.normalized[present]))
    assert np.all(np.isnan(enc.normalized[enc.null]))
    n_valid = model.valid_components_.sum(axis=1)
    assert np.all((enc.component >= 0) == present)
    assert np.all(enc.component < n_valid[None, :])
    p = proba[present]  # (m, K)
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(axis=-1), 1.0)
    back = model.inverse_transform(enc)
    assert np.all(np.isfinite(back[present])) and np.all(np.isnan(back[enc.null]))


@settings(max_examples=EXAMPLES["malformed_fit"], **SETTINGS)
@given(
    X=INPUTS,
    k=st.integers(1, 4),
    null_policy=st.sampled_from(["ignore", "error"]),
    init=st.sampled_from(["kmeans", "random"]),
)
def test_malformed_input_fits_finite_or_raises_gpuvgm_error(X, k, null_policy, init):
    model = gpuvgm.VGM(
        k, max_iter=4, null_policy=null_policy, init_params=init, device="cpu", random_state=0
    )
    with warnings.catch_warnings():
        # Conversions the user asked for (complex -> float is refused, not warned about).
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow in x**2 of refused data
        try:
            model.fit(X)
        except GPUVGMError as exc:
            event(f"refused: {type(exc).__name__}")
            return
    event("fitted")
    _assert_fitted_finite(model)
    _check_outputs(model, X)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(3)
    X = np.column_stack(
        [
            np.concatenate([rng.normal(-3, 0.5, 300), rng.normal(4, 1.0, 300)]),
            rng.lognormal(0, 1, 600),
        ]
    )
    return {
        (sel, clip): gpuvgm.VGM(
            3, max_iter=20, component_selection=sel, clip=clip, device="cpu", random_state=0
        ).fit(X)
        for sel in ("sample", "argmax")
        for clip in (0.99, None)
    }


@settings(max_examples=EXAMPLES["transform_values"], **SETTINGS)
@given(
    values=hnp.arrays(
        np.float64, st.tuples(st.integers(0, 40), st.just(2)), elements=float_values()
    ),
    sel=st.sampled_from(["sample", "argmax"]),
    clip=st.sampled_from([0.99, None]),
)
def test_transform_of_any_finite_value_is_finite(fitted, values, sel, clip):
    """Values far outside the fitted data (up to ±1.8e308) still get a proper posterior (it
    saturates on the widest component) and a finite alpha (with clip); infinities are refused."""
    model = fitted[(sel, clip)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # alpha overflow without clip
        try:
            enc = model.transform(values)
        except GPUVGMError:
            assert np.isinf(values).any()
            return
        proba = model.predict_proba(values)
        label = model.predict(values)
    present = ~np.isnan(values)
    assert np.array_equal(~enc.null, present)
    p = proba[present]
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(axis=-1), 1.0)
    assert np.all((label >= 0) == present)
    assert np.all((enc.component >= 0) == present)
    if clip is not None:
        assert np.all(np.abs(enc.normalized[present]) <= clip)
    else:
        assert not np.isnan(enc.normalized[present]).any()


@settings(max_examples=EXAMPLES["inverse_inputs"], **SETTINGS)
@given(
    normalized=st.one_of(
        arrays(),
        hnp.arrays(
            np.float64, st.tuples(st.integers(0, 20), st.just(2)), elements=st.floats(-1, 1)
        ),
    ),
    component=st.one_of(
        arrays(),
        hnp.arrays(
            np.int64, st.tuples(st.integers(0, 20), st.just(2)), elements=st.integers(-1, 3)
        ),
    ),
    as_pair=st.booleans(),
)
def test_inverse_of_malformed_input_raises_gpuvgm_error(fitted, normalized, component, as_pair):
    model = fitted[("sample", 0.99)]
    if normalized.ndim == 2 and component.ndim == 2 and normalized.shape[0] != component.shape[0]:
        component = component[: normalized.shape[0]]
    arg = (normalized, component) if as_pair else normalized
    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            out = model.inverse_transform(arg)
        except GPUVGMError:
            return
    if not as_pair:  # an array of length 2 unpacks as (normalized, component): accepted
        assert len(normalized) == 2
        return
    a = np.asarray(normalized, dtype=np.float64)
    assert out.shape == a.shape
    small = ~np.isnan(a) & (np.abs(a) <= 1)
    assert np.all(np.isfinite(out[small]))
    assert np.all(np.isnan(out[np.isnan(a)]))
