"""Backends: where the O(rows x K) passes run.

A backend is a module that satisfies :class:`gpuvgm._backends._api.Backend` (its ``NAME``, the
seven passes, and a ``memory`` satisfying :class:`~gpuvgm._backends._api.Memory`) and calls the
shared argument checks of ``_api`` before it computes. Only the CUDA backend imports CuPy, and
only when it is asked for; no backend imports another.
"""

from __future__ import annotations

import importlib.util
import logging
from types import ModuleType
from typing import TYPE_CHECKING

from .._errors import BackendUnavailableError
from ._api import Backend

if TYPE_CHECKING:  # mypy checks here that each backend module satisfies the protocol
    from . import _cuda, _numpy

    _numpy_backend: Backend = _numpy
    _cuda_backend_module: Backend = _cuda

logger = logging.getLogger("gpuvgm")

_INSTALL_HINT = (
    "install CuPy for your CUDA version with the matching extra, "
    "`pip install 'gpuvgm[cuda12]'` (CUDA 12) or `pip install 'gpuvgm[cuda13]'` (CUDA 13), "
    "on a machine with an NVIDIA GPU and driver"
)


def _cuda_backend() -> ModuleType:
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
    return _cuda


# ModuleType, not Backend, until the estimator's annotations say Backend (issue 11's estimator
# split): a module is a Backend (checked above), but a Backend is not a ModuleType.
def get_backend(device: str) -> ModuleType:
    """The backend module for ``device`` (``"cpu"``, ``"cuda"`` or ``"auto"``), a
    :class:`~gpuvgm._backends._api.Backend`."""
    if device == "cpu":
        from . import _numpy

        return _numpy
    if device == "cuda":
        return _cuda_backend()
    try:
        backend = _cuda_backend()
    except BackendUnavailableError as exc:
        logger.debug("device='auto' uses the CPU: %s", exc)
        from . import _numpy

        return _numpy
    return backend
