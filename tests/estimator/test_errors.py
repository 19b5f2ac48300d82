"""Every bad input raises a typed error that names the column and the problem."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import gpuvgm
from gpuvgm import DataError, DataTypeError, GPUVGMError, NotFittedError, ParameterError

# The small fits here stop early on purpose; their convergence is tested elsewhere.
pytestmark = pytest.mark.filterwarnings("ignore::gpuvgm.ConvergenceWarning")


def fitted(X, **kw):
    return gpuvgm.VGM(3, max_iter=5, tol=1e-2, device="cpu", random_state=0, **kw).fit(X)


@pytest.fixture
def frame(rng):
    return pd.DataFrame({"price": rng.normal(10, 2, 500), "age": rng.normal(40, 9, 500)})


def test_errors_are_gpuvgm_errors_and_builtin_errors():
    assert issubclass(DataError, GPUVGMError) and issubclass(DataError, ValueError)
    assert issubclass(DataTypeError, GPUVGMError) and issubclass(DataTypeError, TypeError)
    assert issubclass(ParameterError, ValueError) and issubclass(NotFittedError, ValueError)


@pytest.mark.parametrize(
    "empty", [np.empty((0, 2)), np.empty(0), pd.DataFrame({"a": pd.Series([], dtype=float)})]
)
def test_empty_input(empty):
    with pytest.raises(DataError, match="empty"):
        fitted(empty)


def test_all_null_column(frame):
    frame["price"] = np.nan
    with pytest.raises(DataError, match=r"column 'price' is entirely null"):
        fitted(frame)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_values_name_column_and_row(frame, value):
    frame.loc[123, "age"] = value
    message = r"column 'age' holds an infinite value \(first at row 123\)"
    with pytest.raises(DataError, match=message):
        fitted(frame, chunk_rows=100)


def test_infinite_values_at_transform(frame):
    model = fitted(frame)
    frame.loc[7, "price"] = np.inf
    with pytest.raises(DataError, match=r"column 'price' .* row 7"):
        model.transform(frame)


def test_non_numeric_columns(frame):
    frame["city"] = ["Paris"] * len(frame)
    with pytest.raises(DataTypeError, match=r"column 'city' has dtype object"):
        fitted(frame)
    with pytest.raises(DataTypeError, match="not numeric"):
        fitted(np.array([["a", "b"], ["c", "d"]]))
    # Selecting the numeric columns works.
    model = gpuvgm.VGM(3, max_iter=50, device="cpu").fit(frame, columns=["price"])
    assert model.n_features_in_ == 1


def test_fewer_rows_than_components():
    with pytest.raises(
        DataError,
        match=r"column '0' has 2 non-null values, fewer than "
        r"n_components=3",
    ):
        fitted(np.array([1.0, 2.0, np.nan]))


def test_transform_before_fit():
    model = gpuvgm.VGM()
    for call in (model.transform, model.predict, model.predict_proba):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            call(np.zeros(4))
    with pytest.raises(NotFittedError):
        model.inverse_transform((np.zeros((2, 1)), np.zeros((2, 1), dtype=int)))


def test_different_columns_at_transform(frame):
    model = fitted(frame)
    with pytest.raises(DataError, match="X has 1 columns but the model was fitted on 2"):
        model.transform(frame[["price"]])
    with pytest.raises(
        DataError,
        match=r"column 0 is 'age' but the model was fitted with "
        r"'price'",
    ):
        model.transform(frame[["age", "price"]])
    with pytest.raises(DataError, match="X has 3 columns"):
        model.transform(np.zeros((4, 3)))


def test_null_policy_error_names_the_row(frame):
    frame.loc[42, "price"] = np.nan
    with pytest.raises(DataError, match=r"column 'price' holds a null \(first at row 42\)"):
        fitted(frame, null_policy="error")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"n_components": 0},
            r"The 'n_components' parameter of VGM must be an int in the range "
            r"\[1, 32\]. Got 0 instead.",
        ),
        ({"n_components": 2.5}, "'n_components' parameter"),
        ({"tol": -1.0}, r"The 'tol' parameter of VGM must be a float in the range \[0, inf\)"),
        ({"tol_scale": "mean"}, r"must be a str among \{'per_row', 'sum'\}"),
        ({"component_selection": "max"}, "'component_selection' parameter"),
        ({"weight_threshold": 1.5}, "'weight_threshold' parameter"),
        ({"device": "tpu"}, "'device' parameter"),
        ({"clip": 0}, "'clip' parameter"),
        ({"reg_covar": float("nan")}, "'reg_covar' parameter"),
        ({"random_state": -3}, "'random_state' parameter"),
        ({"init_params": "spectral"}, "'init_params' parameter"),
        ({"means_init": [1.0, 2.0]}, r"'means_init' parameter must be finite with shape \(3,\)"),
        ({"covariance_prior": [1.0, 2.0, 3.0]}, r"'covariance_prior' parameter must be"),
        ({"init_sample_size": 2}, "'init_sample_size' parameter"),
    ],
)
def test_invalid_parameters(params, message, frame):
    with pytest.raises(ParameterError, match=message):
        gpuvgm.VGM(3, device="cpu").set_params(**params).fit(frame)


def test_unknown_parameter_name():
    with pytest.raises(ParameterError, match="Invalid parameter 'n_comp'"):
        gpuvgm.VGM().set_params(n_comp=3)


def test_inverse_transform_checks_its_input(frame):
    model = fitted(frame)
    enc = model.transform(frame)
    n_valid = model.valid_components_.sum(axis=1)
    comp = enc.component.copy()
    comp[17, 1] = n_valid[1]
    with pytest.raises(DataError, match=r"column 'age': component .* at row 17 is out of range"):
        model.inverse_transform((enc.normalized, comp))
    with pytest.raises(DataError, match=r"shape \(n_rows, 2\)"):
        model.inverse_transform((enc.normalized[:, :1], enc.component[:, :1]))
    with pytest.raises(DataError, match="Encoded or a"):
        model.inverse_transform(enc.normalized)


def test_unreadable_inputs():
    with pytest.raises(DataTypeError, match="cannot read data of type"):
        gpuvgm.VGM().fit({"a": [1, 2, 3]})
    with pytest.raises(DataError, match="does not exist"):
        gpuvgm.VGM().fit("/nonexistent/file.parquet")


def test_cuda_without_a_gpu_says_how_to_install(frame):
    from gpuvgm._backends import _cuda_backend

    try:
        _cuda_backend()
    except gpuvgm.BackendUnavailableError:
        pass
    else:
        pytest.skip("a usable GPU is present")
    with pytest.raises(gpuvgm.BackendUnavailableError, match=r"gpuvgm\[cuda12\].*gpuvgm\[cuda13\]"):
        gpuvgm.VGM(3, device="cuda").fit(frame)
    # device="auto" falls back to the CPU.
    assert gpuvgm.VGM(3, max_iter=50, device="auto").fit(frame).backend_ == "numba"


def test_inverse_transform_refuses_alpha_beyond_the_clip(frame):
    model = fitted(frame, clip=0.99)  # CTGAN's clip (gpuvgm's default is none)
    enc = model.transform(frame)
    alpha = enc.normalized.copy()
    alpha[9, 0] = 1.5  # a clipping model writes |alpha| <= 0.99; CTGAN's tanh stays in [-1, 1]
    with pytest.raises(
        DataError, match=r"column 'price': normalized value 1.5 at row 9 is outside"
    ):
        model.inverse_transform((alpha, enc.component))
    alpha[9, 0] = 1.0
    model.inverse_transform((alpha, enc.component))
    model.set_params(clip=None)  # unclipped codes may go anywhere
    alpha[9, 0] = 7.0
    assert np.isfinite(model.inverse_transform((alpha, enc.component))).all()
