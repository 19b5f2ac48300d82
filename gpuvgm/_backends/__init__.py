"""Backends: where the O(rows x K) passes run.

A backend is a module that satisfies :class:`gpuvgm._backends._api.Backend` (its ``NAME``, the
seven passes, and a ``memory`` satisfying :class:`~gpuvgm._backends._api.Memory`) and calls the
shared argument checks of ``_api`` before it computes: ``"numba"`` (compiled CPU, the default on
a CPU), ``"numpy"`` (the readable reference twin) and ``"cupy"`` (CUDA). Only the CUDA backend
imports CuPy and only the compiled backend imports Numba, each only when it is asked for; no
backend imports another. Importing this package imports neither NumPy nor a backend, so
``gpuvgm info`` can say whether CUDA is usable without them.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING, cast

from .._errors import BackendUnavailableError

if TYPE_CHECKING:  # mypy checks here that each backend module satisfies the protocol
    from . import _cuda, _numba, _numpy
    from ._api import Backend

    _numpy_backend: Backend = _numpy
    _numba_backend: Backend = _numba
    _cuda_backend_module: Backend = _cuda

logger = logging.getLogger("gpuvgm")

_INSTALL_HINT = (
    "install CuPy for your CUDA version with the matching extra, "
    "`pip install 'gpuvgm[cuda12]'` (CUDA 12) or `pip install 'gpuvgm[cuda13]'` (CUDA 13), "
    "on a machine with an NVIDIA GPU and driver"
)


def _cuda_backend() -> Backend:
    """The CUDA backend module, or an error saying why it cannot be used."""
    if importlib.util.find_spec("cupy") is None:
        raise BackendUnavailableError(
            f"device='cuda' needs CuPy, which is not installed: {_INSTALL_HINT}"
        )
    try:
        from . import _cuda
    except ImportError as exc:  # the CUDA backend is not part of this build
        raise BackendUnavailableError(f"the CUDA backend could not be loaded ({exc})") from exc
    reason = _cuda.unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(f"device='cuda' but no usable GPU: {reason}; {_INSTALL_HINT}")
    return cast("Backend", _cuda)


def _cpu_backend() -> Backend:
    """The compiled CPU backend (Numba, a core dependency)."""
    try:
        from . import _numba
    except ImportError as exc:  # a broken Numba/llvmlite install
        raise BackendUnavailableError(
            f"device='cpu' needs Numba, which could not be imported ({exc}); "
            "reinstall it (`pip install numba`) or use device='numpy'"
        ) from exc
    return cast("Backend", _numba)


def get_backend(device: str) -> Backend:
    """The backend for ``device``: ``"cpu"`` (compiled), ``"numpy"`` (reference), ``"cuda"`` or
    ``"auto"`` (CUDA when usable, else the compiled CPU backend)."""
    if device == "numpy":
        from . import _numpy

        return cast("Backend", _numpy)
    if device == "cpu":
        return _cpu_backend()
    if device == "cuda":
        return _cuda_backend()
    try:
        return _cuda_backend()
    except BackendUnavailableError as exc:
        logger.debug("device='auto' uses the CPU: %s", exc)
        return _cpu_backend()
