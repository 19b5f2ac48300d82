"""The one place that knows every kind of input: :func:`make_source` wraps what the user passed
(array, DataFrame, Arrow, dataset, reader, Parquet/CSV path(s), Dask collection) as a
:class:`~gpuvgm._sources.Source`. Above the sources, nothing branches on the kind of input.

Its own module, beside ``_sources`` and ``_dask_source``, so that neither of those imports the
other's kinds (the Dask source subclasses :class:`~gpuvgm._sources.Source`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ._dask_source import DaskSource
from ._errors import DataError, DataTypeError
from ._files import CSV_SUFFIXES, CSVSource, ParquetSource, expand_paths
from ._sources import (
    ArraySource,
    ArrowSource,
    DatasetSource,
    PandasSource,
    ReaderSource,
    Source,
    is_dask_collection,
    is_path_like,
)


def make_source(X: Any, columns: Sequence[Any] | None = None) -> Source:
    """Wrap ``X`` (array, DataFrame, Arrow table, path(s), Dask collection) as a
    :class:`Source`."""
    if isinstance(X, Source):
        return X
    if is_dask_collection(X):
        return DaskSource(X, columns)
    if is_path_like(X):
        paths = expand_paths(X)
        csv = [p for p in paths if p.name.lower().endswith(CSV_SUFFIXES)]
        if csv and len(csv) != len(paths):
            raise DataError("mixing CSV and Parquet files in one input is not supported.")
        return CSVSource(paths, columns) if csv else ParquetSource(paths, columns)
    if isinstance(X, (pa.Table, pa.RecordBatch)):
        return ArrowSource(X, columns)
    if isinstance(X, pa.RecordBatchReader):
        return ReaderSource(X, columns)
    module = type(X).__module__.split(".")[0]
    if module == "pandas":
        return PandasSource(X, columns)
    if module == "pyarrow" and hasattr(X, "get_fragments"):  # a pyarrow.dataset.Dataset
        return DatasetSource(X, columns)
    if X is None:
        raise DataError("X is None; expected an array, a DataFrame, a table or file path(s).")
    if isinstance(X, np.ndarray) or isinstance(X, (list, tuple)):
        return ArraySource(X, columns)
    raise DataTypeError(
        f"cannot read data of type {type(X).__name__}; pass a NumPy array, a pandas DataFrame, "
        "a pyarrow Table or Parquet/CSV path(s)."
    )
