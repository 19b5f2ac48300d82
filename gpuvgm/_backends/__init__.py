"""Backends: where the O(rows x K) passes run.

A backend is a module with the same functions (``moments``, ``estep_stats``, ``assign_stats``,
``log_resp``, ``transform``, ``inverse``) and a ``NAME``. Only the CUDA backend imports CuPy, and
only when it is asked for.
"""

from __future__ import annotations

import importlib.util
import logging
from types import ModuleType

from .._errors import BackendUnavailableError

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


def get_backend(device: str) -> ModuleType:
    """The backend module for ``device`` (``"cpu"``, ``"cuda"`` or ``"auto"``)."""
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
