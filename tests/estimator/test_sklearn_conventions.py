"""scikit-learn conventions: ``clone``, ``get_params``/``set_params``, ``repr``, not-fitted
errors, and the parts of ``check_estimator`` that apply to a per-column transformer.

``VGM`` is deliberately not a ``sklearn.base.BaseEstimator`` subclass (scikit-learn is not a
dependency of gpuvgm); it implements the protocol itself plus ``__sklearn_tags__`` (an
unsupervised transformer that accepts NaN as null) and ``__sklearn_is_fitted__``.

Checks of ``check_estimator`` that are expected to fail, and why (``EXPECTED_FAILED_CHECKS``;
``xfail_strict`` makes a check that starts passing fail the suite, so this list stays true):

- ``transform`` returns an :class:`gpuvgm.Encoded` (``normalized``, ``component``, ``null``) and
  not one array, by design (DESIGN.md §6): every check that subtracts, indexes or reads the
  ``shape``/``dtype`` of the transform output fails -- ``check_transformer_general``,
  ``check_transformer_preserve_dtypes``, ``check_pipeline_consistency``,
  ``check_estimators_pickle`` (pickling itself works: tested below), ``check_fit_idempotent``,
  ``check_methods_sample_order_invariance``, ``check_methods_subset_invariance`` (both
  properties are tested below on the arrays of ``Encoded``).
- ``n_iter_`` is per column, an array of shape (n_columns,), not a scalar:
  ``check_transformer_n_iter``.
- A 1-D array is one column (DESIGN.md §6), not an error: ``check_fit1d``; predicting on a 1-D
  array after fitting several columns says "X has 1 columns but the model was fitted on 3", not
  scikit-learn's "Reshape your data": ``check_fit2d_predict1d``; the same message is not
  scikit-learn's "X has 1 features, but ... is expecting 3": ``check_n_features_in_after_fitting``.
- ``gpuvgm.NotFittedError`` derives from ``ValueError`` and ``AttributeError`` like
  ``sklearn.exceptions.NotFittedError`` but cannot derive from it without making scikit-learn a
  dependency: ``check_estimators_unfitted`` (``check_is_fitted`` semantics are tested below).
- Complex data raises ``DataTypeError`` (a ``TypeError``: a dtype problem, STYLE.md), where the
  check wants a ``ValueError``: ``check_complex_data``.
- Sparse matrices and objects that only implement ``__array__`` are refused with a
  ``DataTypeError`` naming their type, not a message containing "sparse" nor a conversion:
  ``check_estimator_sparse_tag``, ``check_estimator_sparse_array``,
  ``check_estimator_sparse_matrix``, ``check_transformer_data_not_an_array``.

Skipped by scikit-learn itself: ``check_array_api_input`` (needs ``SCIPY_ARRAY_API=1``).
Every other check of the installed scikit-learn runs and passes.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.validation import check_is_fitted

import gpuvgm
from gpuvgm import NotFittedError, ParameterError

pytestmark = pytest.mark.filterwarnings("ignore::gpuvgm.ConvergenceWarning")

SKLEARN_1_6 = tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 6)

_ENCODED = "transform returns an Encoded (normalized, component, null), not one array"
_ONE_D = "a 1-D array is one column, by design"
_SPARSE = "sparse and __array__-only inputs raise DataTypeError naming their type"
EXPECTED_FAILED_CHECKS = {
    "check_transformer_general": _ENCODED,
    "check_transformer_preserve_dtypes": _ENCODED,
    "check_pipeline_consistency": _ENCODED,
    "check_estimators_pickle": _ENCODED + "; pickling itself is tested here",
    "check_fit_idempotent": _ENCODED,
    "check_methods_sample_order_invariance": _ENCODED + "; tested here on its arrays",
    "check_methods_subset_invariance": _ENCODED + "; tested here on its arrays",
    "check_transformer_n_iter": "n_iter_ is per column, shape (n_columns,)",
    "check_fit1d": _ONE_D,
    "check_fit2d_predict1d": _ONE_D + "; the error names the column counts instead",
    "check_n_features_in_after_fitting": "the column-count error uses gpuvgm's wording",
    "check_estimators_unfitted": "gpuvgm.NotFittedError cannot subclass scikit-learn's",
    "check_complex_data": "complex data raises DataTypeError, a TypeError (dtype problem)",
    "check_estimator_sparse_tag": _SPARSE,
    "check_estimator_sparse_array": _SPARSE,
    "check_estimator_sparse_matrix": _SPARSE,
    "check_transformer_data_not_an_array": _SPARSE,
}


def small_vgm(**kw):
    return gpuvgm.VGM(3, max_iter=10, device="cpu", random_state=0, **kw)


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    return np.column_stack([rng.normal(0, 1, 400), rng.normal(5, 2, 400)])


# ---------------------------------------------------------------------- check_estimator
if SKLEARN_1_6:
    from sklearn.utils.estimator_checks import parametrize_with_checks

    with warnings.catch_warnings():
        # "Estimator VGM does not inherit from sklearn.base.BaseEstimator": on purpose.
        warnings.filterwarnings("ignore", message=".*does not inherit from", category=UserWarning)
        _with_checks = parametrize_with_checks(
            [small_vgm()], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS
        )

    @_with_checks
    @pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
    def test_sklearn_check_estimator(estimator, check):
        check(estimator)

    def test_sklearn_tags():
        from sklearn.utils import get_tags

        tags = get_tags(gpuvgm.VGM())
        assert tags.transformer_tags is not None and tags.input_tags.allow_nan
        assert not tags.target_tags.required and tags.requires_fit


# ---------------------------------------------------------------------- parameters
def test_clone_gives_an_unfitted_copy_with_the_same_parameters(X):
    means = np.array([-1.0, 0.0, 1.0])
    model = small_vgm(means_init=means, clip=None).fit(X)
    copy = clone(model)
    assert type(copy) is gpuvgm.VGM and copy is not model
    np.testing.assert_array_equal(copy.means_init, means)  # clone deep-copies it
    assert copy.get_params().keys() == model.get_params().keys()
    assert not hasattr(copy, "means_") and not hasattr(copy, "_post")
    copy.fit(X)
    np.testing.assert_array_equal(copy.means_, model.means_)
    assert clone(gpuvgm.VGM()).get_params() == gpuvgm.VGM().get_params()


def test_get_and_set_params():
    model = gpuvgm.VGM()
    params = model.get_params()
    assert params == model.get_params(deep=False)
    assert params["n_components"] == 10 and params["weight_concentration_prior"] == 1e-3
    assert model.set_params(n_components=4, tol_scale="sum") is model
    assert model.n_components == 4 and model.get_params()["tol_scale"] == "sum"
    with pytest.raises(ParameterError, match="Invalid parameter 'colour'") as info:
        model.set_params(colour="blue")
    assert isinstance(info.value, ValueError)
    # Every constructor argument is a parameter, stored unchanged (no validation in __init__).
    assert gpuvgm.VGM(**params).get_params() == params
    assert gpuvgm.VGM(tol=-1.0).tol == -1.0


def test_readable_repr():
    assert repr(gpuvgm.VGM()) == "VGM()"
    assert repr(gpuvgm.VGM(4, device="cpu")) == "VGM(n_components=4, device='cpu')"
    text = repr(gpuvgm.VGM(means_init=np.array([1.0, 2.0]), random_state=3))
    assert text.startswith("VGM(means_init=array([1., 2.])") and "random_state=3" in text
    # Simple parameters read back.
    model = gpuvgm.VGM(5, tol=1e-3, tol_scale="sum", clip=None)
    assert eval(repr(model), {"VGM": gpuvgm.VGM}).get_params() == model.get_params()


def test_fit_returns_self_accepts_y_and_sets_feature_attributes(X):
    frame = pd.DataFrame(X, columns=["a", "b"])
    model = small_vgm()
    assert model.fit(frame, y=np.zeros(len(frame))) is model
    assert model.n_features_in_ == 2 and list(model.feature_names_in_) == ["a", "b"]
    model.fit(X)  # refitting on an array drops the names
    assert model.n_features_in_ == 2 and not hasattr(model, "feature_names_in_")


# ---------------------------------------------------------------------- fitted or not
def test_not_fitted_errors(X):
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)
    model = small_vgm()
    for call in (
        lambda: model.transform(X),
        lambda: model.predict(X),
        lambda: model.predict_proba(X),
        lambda: model.inverse_transform((X, np.zeros(X.shape, dtype=int))),
        lambda: model.save("never-written.gpuvgm"),
    ):
        with pytest.raises(NotFittedError, match="This VGM instance is not fitted yet"):
            call()
    assert not hasattr(model, "means_")  # fitted attributes do not exist before fit
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(model)
    model.fit(X)
    check_is_fitted(model)
    check_is_fitted(model, ["means_", "weights_", "n_iter_"])


def test_pickle_keeps_the_model(X):
    """Model files do not use pickle, but joblib/multiprocessing do: it must work."""
    model = small_vgm().fit(X)
    copy = pickle.loads(pickle.dumps(model))
    a, b = model.transform(X), copy.transform(X)
    np.testing.assert_array_equal(a.normalized, b.normalized)
    np.testing.assert_array_equal(a.component, b.component)


def test_sample_order_and_subset_invariance(X):
    """What check_methods_{sample_order,subset}_invariance test, on Encoded's arrays: with
    argmax selection a row's encoding depends only on the row (with "sample" it also depends on
    the row's index, which keys the sampler)."""
    model = small_vgm(component_selection="argmax").fit(X)
    full = model.transform(X)
    order = np.random.default_rng(1).permutation(len(X))
    shuffled = model.transform(X[order])
    np.testing.assert_array_equal(shuffled.normalized, full.normalized[order])
    np.testing.assert_array_equal(shuffled.component, full.component[order])
    part = model.transform(X[100:150])
    np.testing.assert_array_equal(part.normalized, full.normalized[100:150])
    np.testing.assert_array_equal(model.predict_proba(X[order]), model.predict_proba(X)[order])


@pytest.mark.skipif(not SKLEARN_1_6, reason="scikit-learn < 1.6 has no estimator tags")
def test_last_step_of_a_pipeline(X):
    pipe = make_pipeline(FunctionTransformer(np.log1p), small_vgm())
    pipe.fit(np.abs(X))
    enc = pipe.transform(np.abs(X))
    assert isinstance(enc, gpuvgm.Encoded) and enc.normalized.shape == X.shape
