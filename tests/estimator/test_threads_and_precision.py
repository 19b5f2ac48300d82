"""The ``n_jobs`` and ``compute_dtype`` parameters: what they change (threads, precision) and
what they must not (the fitted model, beyond the float32 bound)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import five_modes, rtol

import gpuvgm
from gpuvgm import _parallel
from gpuvgm._errors import ParameterError


def _fit(x, **kw):
    model = gpuvgm.VGM(5, max_iter=30, tol=0.0, random_state=3, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        return model.fit(x)


@pytest.fixture(scope="module")
def data():
    x = five_modes(60_000, np.random.default_rng(11))
    return np.stack([x, 3.0 * x[::-1] + 7.0], axis=1)


@pytest.mark.parametrize("device", ["cpu", "numpy"])
def test_one_and_two_jobs_fit_and_transform_identically(data, device):
    one, two = _fit(data, device=device, n_jobs=1), _fit(data, device=device, n_jobs=2)
    assert one.fit_report_["cpu"]["threads"] == 1
    assert two.fit_report_["cpu"]["threads"] == 2
    for name in ("means_", "weights_", "covariances_", "lower_bound_"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name), err_msg=name)
    a, b = one.transform(data), two.transform(data)
    np.testing.assert_array_equal(a.component, b.component)
    np.testing.assert_array_equal(a.normalized, b.normalized)


def test_float32_compute_within_the_float32_bound_of_float64(data):
    f64 = _fit(data, device="cpu")
    f32 = _fit(data, device="cpu", compute_dtype="float32")
    assert f64.fit_report_["compute_dtype"] == "float64"  # the CPU default
    assert f32.fit_report_["compute_dtype"] == "float32"
    tol = rtol(np.float32, "parity")
    spread = data.std(axis=0)[:, None]
    np.testing.assert_allclose(f32.means_ / spread, f64.means_ / spread, rtol=0, atol=tol)
    np.testing.assert_allclose(f32.weights_, f64.weights_, rtol=0, atol=tol)
    np.testing.assert_allclose(f32.lower_bound_, f64.lower_bound_, rtol=tol)
    # float64 compute is the default, not a no-op: the float32 fit differs in its last digits
    assert not np.array_equal(f32.means_, f64.means_)
    explicit = _fit(data, device="cpu", compute_dtype="float64")
    np.testing.assert_array_equal(explicit.means_, f64.means_)


@pytest.mark.parametrize(
    "params",
    [
        {"n_jobs": 0},
        {"n_jobs": 1.5},
        {"n_jobs": "2"},
        {"n_jobs": True},
        {"compute_dtype": "float16"},
        {"compute_dtype": np.float32},  # the names, as get_params and model files keep them
        {"compute_dtype": "float32", "device": "numpy"},
    ],
)
def test_bad_values_are_parameter_errors(data, params):
    key = "n_jobs" if "n_jobs" in params else "compute_dtype"
    with pytest.raises(ParameterError, match=key):
        _fit(data[:200], **params)


def test_n_jobs_follows_scikit_learn(monkeypatch):
    cores = _parallel.cores()
    assert _parallel.resolve_n_jobs(3) == 3
    assert _parallel.resolve_n_jobs(-1) == cores
    assert _parallel.resolve_n_jobs(-2) == max(1, cores - 1)
    assert _parallel.resolve_n_jobs(-10_000) == 1
    monkeypatch.setenv("GPUVGM_NUM_THREADS", "1")
    assert _parallel.resolve_n_jobs(None) == 1
    with _parallel.threads(2):
        assert _parallel.n_threads() == 2  # n_jobs wins over the environment
        assert _parallel.parallel_map(_parallel.n_threads, [(), ()]) == [2, 2]
    assert _parallel.n_threads() == 1


def test_parameters_survive_save_and_load(data, tmp_path):
    model = _fit(data[:5000], device="cpu", compute_dtype="float32", n_jobs=1)
    model.save(tmp_path / "m.gpuvgm")
    loaded = gpuvgm.load(tmp_path / "m.gpuvgm")
    assert loaded.compute_dtype == "float32" and loaded.n_jobs == 1
