"""The backend contract (``gpuvgm._backends._api``): every backend satisfies the protocols and
refuses the same bad inputs with the same typed error and message.

The checks live once in ``_api`` and each backend calls them before it computes; this test proves
that no backend skips one or reorders them. The CUDA backend runs on the CuPy stand-in
(``tests/fakecupy``): every refusal here happens before a launch, so no kernel runs. A new backend
joins by adding an entry to ``BACKENDS``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import fakecupy
import numpy as np
import pytest

from gpuvgm._backends import _cuda, _cuda_memory, _numba, _numpy
from gpuvgm._backends._api import Backend
from gpuvgm._errors import DataError, DataTypeError
from gpuvgm._model import EStepParams, TransformParams
from gpuvgm._validation import MAX_COMPONENTS

# Typing-only proof that each module satisfies the protocol (mypy checks the assignments when it
# runs on the tests; at run time they are plain module references).
_NUMPY: Backend = _numpy
_CUDA: Backend = _cuda
_NUMBA: Backend = _numba


@pytest.fixture
def fake_cupy(monkeypatch):
    """The CuPy stand-in for this test only (no emulation library: nothing may launch)."""
    fakecupy.reset()
    _cuda._module.cache_clear()
    monkeypatch.setitem(sys.modules, "cupy", fakecupy)
    monkeypatch.setitem(sys.modules, "cupyx", fakecupy.cupyx)
    monkeypatch.setattr(_cuda, "cupy", fakecupy)
    monkeypatch.setattr(_cuda_memory, "cupy", fakecupy)
    yield
    _cuda._module.cache_clear()


BACKENDS = {"numpy": _numpy, "numba": _numba, "cuda": _cuda}


def _estep(n_cols: int = 2, k: int = 3, columns: Any = None) -> EStepParams:
    return EStepParams(
        columns=np.arange(n_cols, dtype=np.int64) if columns is None else np.asarray(columns),
        shift=np.zeros(n_cols),
        scale=np.ones(n_cols),
        means=np.tile(np.linspace(-1.0, 1.0, k), (n_cols, 1)),
        precisions=np.ones((n_cols, k)),
        log_consts=np.zeros((n_cols, k)),
    )


def _transform(estep: EStepParams) -> TransformParams:
    n_cols, k = estep.means.shape
    return TransformParams(
        estep=estep,
        means=estep.means.copy(),
        stds=np.ones((n_cols, k)),
        valid=np.ones((n_cols, k), dtype=bool),
        column_keys=np.arange(n_cols),
        seed=0,
        sample=False,
        clip=np.inf,
    )


X = np.zeros((10, 2))
COMP = np.zeros((10, 2), dtype=np.int32)

# (call, expected error, words of the message): each a single fault on otherwise good inputs.
CASES: dict[str, tuple[Callable[[Any], Any], type[Exception], str]] = {
    "moments-int": (lambda b: b.moments(X.astype(np.int64)), DataTypeError, "float32 or float64"),
    "moments-1d": (lambda b: b.moments(X[:, 0]), DataError, "2-D"),
    "estep-int": (
        lambda b: b.estep_stats(X.astype(np.int32), _estep()),
        DataTypeError,
        "float32 or float64",
    ),
    "estep-3d": (lambda b: b.estep_stats(X[None], _estep()), DataError, "2-D"),
    "estep-k": (
        lambda b: b.estep_stats(X, _estep(k=MAX_COMPONENTS + 1)),
        DataError,
        "components",
    ),
    "estep-column": (
        lambda b: b.estep_stats(X, _estep(columns=[0, 2])),
        DataError,
        "out of range",
    ),
    "estep-no-column": (
        lambda b: b.estep_stats(X, _estep(n_cols=0, columns=np.zeros(0, np.int64))),
        DataError,
        "non-empty",
    ),
    "assign-centers": (
        lambda b: b.assign_stats(X, np.zeros((3, 3)), _estep()),
        DataError,
        "centers",
    ),
    "assign-k": (
        lambda b: b.assign_stats(X, np.zeros((2, MAX_COMPONENTS + 1)), _estep()),
        DataError,
        "components",
    ),
    "log-resp-column": (
        lambda b: b.log_resp(X, _estep(columns=[-1, 0])),
        DataError,
        "out of range",
    ),
    "transform-int": (
        lambda b: b.transform(X.astype(np.int16), _transform(_estep()), 0),
        DataTypeError,
        "float32 or float64",
    ),
    "transform-column": (
        lambda b: b.transform(X[:, :1], _transform(_estep()), 0),
        DataError,
        "out of range",
    ),
    "inverse-component-dtype": (
        lambda b: b.inverse(X, COMP.astype(np.float64), _transform(_estep())),
        DataTypeError,
        "int32 or int64",
    ),
    "inverse-shape": (
        lambda b: b.inverse(X, COMP[:5], _transform(_estep())),
        DataError,
        "shape",
    ),
    "inverse-columns": (
        lambda b: b.inverse(X, COMP, _transform(_estep(n_cols=3))),
        DataError,
        "params describe 3 columns",
    ),
    "sample-seed": (lambda b: b.sample_candidates(X, -1, 0, 0, 0, 10), DataError, "seed"),
    "sample-offset": (lambda b: b.sample_candidates(X, 0, 0, 0, 2**63, 10), DataError, "offset"),
    "sample-limit": (lambda b: b.sample_candidates(X, 0, 0, 0, 0, 2**32), DataError, "limit"),
    "sample-int": (
        lambda b: b.sample_candidates(X.astype(np.int64), 0, 0, 0, 0, 10),
        DataTypeError,
        "float32 or float64",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_backend_refuses_the_same_inputs_the_same_way(fake_cupy, case):
    call, error, words = CASES[case]
    seen = {}
    for name, backend in BACKENDS.items():
        with pytest.raises(error, match=words) as info:
            call(backend)
        seen[name] = (type(info.value), str(info.value))
    assert len(set(seen.values())) == 1, seen


def test_errors_are_compatible_with_the_builtin_types():
    """A dtype fault is a TypeError, a shape or range fault a ValueError (gsplat's convention)."""
    assert issubclass(DataTypeError, TypeError)
    assert issubclass(DataError, ValueError)


@pytest.mark.parametrize("name", list(BACKENDS))
def test_every_backend_has_the_protocols_members(name):
    backend = BACKENDS[name]
    for member in (*Backend.__annotations__, *(m for m in vars(Backend) if not m.startswith("_"))):
        assert hasattr(backend, member), (name, member)
    for member in ("stage", "to_device", "to_host", "empty_cache", "cache_put"):
        assert callable(getattr(backend.memory, member)), (name, member)
