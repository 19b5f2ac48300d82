"""gpuvgm: mode-specific normalization (per-column Dirichlet-process variational Gaussian
mixtures, as in CTGAN and RDT) on a billion rows, streamed, on the CPU or a CUDA GPU.

>>> import gpuvgm
>>> model = gpuvgm.VGM(n_components=10, random_state=0).fit(X)      # doctest: +SKIP
>>> enc = model.transform(X)                                          # doctest: +SKIP
>>> X_back = model.inverse_transform(enc)                             # doctest: +SKIP

Importing the package is cheap: the errors and the version are plain Python, and ``VGM``,
``Encoded`` and ``load`` (which bring in NumPy and pyarrow, 0.15 s of CPU) are imported on first
use (PEP 562), so ``gpuvgm --help`` and ``gpuvgm info`` start without them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._errors import (
    BackendUnavailableError,
    ConvergenceWarning,
    DataError,
    DataTypeError,
    DistributedError,
    GPUVGMError,
    MissingDependencyError,
    ModelFileError,
    NotFittedError,
    OutputError,
    OverwriteError,
    ParameterError,
)
from ._version import __version__

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ below
    from ._estimator import VGM, Encoded, load

logging.getLogger("gpuvgm").addHandler(logging.NullHandler())

__all__ = [
    "VGM",
    "BackendUnavailableError",
    "ConvergenceWarning",
    "DataError",
    "DataTypeError",
    "DistributedError",
    "Encoded",
    "GPUVGMError",
    "MissingDependencyError",
    "ModelFileError",
    "NotFittedError",
    "OutputError",
    "OverwriteError",
    "ParameterError",
    "__version__",
    "load",
]

_ESTIMATOR_NAMES = frozenset({"VGM", "Encoded", "load"})


def __getattr__(name: str) -> Any:
    """``VGM``, ``Encoded`` and ``load``, imported from the estimator on first access."""
    if name in _ESTIMATOR_NAMES:
        from . import _estimator

        value = getattr(_estimator, name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _ESTIMATOR_NAMES)
