"""gpuvgm: mode-specific normalization (per-column Dirichlet-process variational Gaussian
mixtures, as in CTGAN and RDT) on a billion rows, streamed, on the CPU or a CUDA GPU.

>>> import gpuvgm
>>> model = gpuvgm.VGM(n_components=10, random_state=0).fit(X)      # doctest: +SKIP
>>> enc = model.transform(X)                                          # doctest: +SKIP
>>> X_back = model.inverse_transform(enc)                             # doctest: +SKIP
"""

import logging

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
from ._estimator import VGM, Encoded, load
from ._version import __version__

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
