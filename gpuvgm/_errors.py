"""The exceptions and warnings gpuvgm raises.

Every error derives from :class:`GPUVGMError`; each also derives from the built-in exception a
scikit-learn user would catch for the same problem (``ValueError`` for bad values, ``TypeError``
for bad types), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class GPUVGMError(Exception):
    """Base class of every error raised by gpuvgm."""


class ParameterError(GPUVGMError, ValueError):
    """A constructor parameter is outside its allowed range or set."""


class DataError(GPUVGMError, ValueError):
    """The data cannot be fitted or transformed (empty, infinite, all null, wrong columns...)."""


class DataTypeError(GPUVGMError, TypeError):
    """A column or an argument has a type gpuvgm cannot use (e.g. a string column)."""


class NotFittedError(GPUVGMError, ValueError, AttributeError):
    """The model is used before :meth:`VGM.fit` (mirrors ``sklearn.exceptions.NotFittedError``)."""


class ModelFileError(GPUVGMError, ValueError):
    """A model file cannot be loaded: missing, truncated, corrupted (checksum), not a gpuvgm
    model, or written by a newer gpuvgm in a format version this one cannot read."""


class OutputError(GPUVGMError, OSError):
    """A destination cannot be written: read-only file system, no space left, no permission, a
    directory where a file is expected (or the reverse). The message names the destination;
    ``errno`` is the operating system's."""


class OverwriteError(DataError):
    """Writing would replace data that must not be replaced: an input of the same run (the
    same file, a file inside an input directory, or a directory holding an input), or an
    existing file that is not a gpuvgm output (pass ``overwrite=True`` / ``--force`` for the
    latter). The message names both paths."""


class BackendUnavailableError(GPUVGMError, RuntimeError):
    """The requested device cannot be used on this machine; the message says how to install it."""


class MissingDependencyError(GPUVGMError, ImportError):
    """An optional dependency (matplotlib, RDT, CTGAN) is not installed; the message names the
    extra that installs it (``pip install 'gpuvgm[plot]'``)."""


class DistributedError(GPUVGMError, RuntimeError):
    """A distributed (Dask) pass failed: workers were lost beyond what the scheduler could
    recover, or the cluster went away. The fit stops rather than return a model computed from
    part of the data."""


class ConvergenceWarning(UserWarning):
    """A column's variational fit stopped at ``max_iter`` before meeting ``tol``."""
