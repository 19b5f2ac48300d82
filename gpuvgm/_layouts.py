"""Layouts: how encoded values are laid out as Parquet columns, written (:func:`encode`) and
read back (:func:`decode_batches`) side by side.

Layouts know Arrow and NumPy, not the mixture (DESIGN.md §4).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ._errors import DataError
from ._files import expand_paths
from ._parallel import read_ahead
from ._sources import read_error

LAYOUTS = ("rdt", "compact", "ctgan")


def _smallest_int(n_values: int) -> type:
    for dtype in (np.int8, np.int16, np.int32):
        if n_values <= np.iinfo(dtype).max:
            return dtype
    return np.int64


def encode(
    normalized: np.ndarray,
    component: np.ndarray,
    null: np.ndarray,
    columns: Sequence[str],
    n_valid: np.ndarray,
    layout: str,
) -> pa.Table:
    """One chunk of encoded values as a table.

    Layouts
    -------
    ``"rdt"``: ``<col>.normalized`` (float64), ``<col>.component`` (int32, -1 for nulls),
    ``<col>.is_null`` (bool) -- RDT's ClusterBasedNormalizer columns plus the null mask.
    ``"compact"``: ``<col>.normalized`` (float32) and ``<col>.component`` in the smallest
    integer type that holds the column's valid components (-1 for nulls).
    ``"ctgan"``: CTGAN's DataTransformer layout, ``<col>.normalized`` then one float32 column
    ``<col>.component_<i>`` per valid component holding the one-hot code (all zero for nulls).
    """
    arrays: dict[str, pa.Array] = {}
    for j, name in enumerate(columns):
        alpha, comp, is_null = normalized[:, j], component[:, j], null[:, j]
        if layout == "rdt":
            arrays[f"{name}.normalized"] = pa.array(alpha, mask=is_null)
            arrays[f"{name}.component"] = pa.array(comp.astype(np.int32))
            arrays[f"{name}.is_null"] = pa.array(is_null)
        elif layout == "compact":
            arrays[f"{name}.normalized"] = pa.array(alpha.astype(np.float32), mask=is_null)
            arrays[f"{name}.component"] = pa.array(comp.astype(_smallest_int(int(n_valid[j]))))
        elif layout == "ctgan":
            arrays[f"{name}.normalized"] = pa.array(
                np.where(is_null, 0.0, alpha).astype(np.float32)
            )
            for i in range(int(n_valid[j])):
                arrays[f"{name}.component_{i}"] = pa.array((comp == i).astype(np.float32))
        else:
            raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    return pa.table(arrays)


def encoded_schema(columns: Sequence[str], n_valid: np.ndarray, layout: str) -> pa.Schema:
    """The schema of :func:`encode`'s tables."""
    e = np.empty((0, len(columns)))
    return encode(e, e.astype(np.int32), e.astype(bool), columns, n_valid, layout).schema


def write_encoded(
    chunks: Iterable[tuple[tuple[np.ndarray, ...], pa.Table | None]],
    write: Callable[[pa.Table], None],
    columns: Sequence[str],
    n_valid: np.ndarray,
    layout: str,
    progress: Callable[[str, int], None] | None,
) -> tuple[int, np.ndarray]:
    """Encode and ``write`` every chunk ``((normalized, component, null, n_clipped),
    passed-through columns or None)``, those columns first; ``(rows, n_clipped)``."""
    rows, n_clipped = 0, np.zeros(len(columns), dtype=np.int64)
    for (normalized, component, null, clipped), passed in chunks:
        table = encode(normalized, component, null, columns, n_valid, layout)
        if passed is not None:
            for name in reversed(passed.column_names):
                table = table.add_column(0, name, passed.column(name))
        write(table)
        rows += len(normalized)
        n_clipped += clipped
        if progress is not None:
            progress("transform", len(normalized))
    return rows, n_clipped


def decoded_table(columns: Sequence[str], x: np.ndarray | None = None) -> pa.Table:
    """Decoded values of shape (n, n_columns) as float64 columns, null where NaN (``x`` None:
    an empty table, for its schema)."""
    if x is None:
        x = np.empty((0, len(columns)))
    return pa.table({c: pa.array(x[:, j], mask=np.isnan(x[:, j])) for j, c in enumerate(columns)})


def _fill_null(column: Any, value: int) -> np.ndarray:
    """An Arrow integer column as int64, nulls replaced by ``value``."""
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(column, value).to_numpy(zero_copy_only=False), dtype=np.int64)


def _decoded_columns(
    available: set[str], src: Any, columns: Sequence[str], n_valid: np.ndarray
) -> tuple[list[str], list[list[str] | None]]:
    """The columns to read, and per model column its one-hot columns (None: an index column)."""
    needed: list[str] = []
    onehot: list[list[str] | None] = []
    for j, name in enumerate(columns):
        if f"{name}.normalized" not in available:
            raise DataError(
                f"{src} has no column {name + '.normalized'!r}; is it the "
                "output of transform_parquet for this model?"
            )
        if f"{name}.component" in available:
            needed += [f"{name}.normalized", f"{name}.component"]
            onehot.append(None)
        else:
            names = [f"{name}.component_{i}" for i in range(int(n_valid[j]))]
            missing = [c for c in names if c not in available]
            if missing:
                raise DataError(f"{src} has neither {name + '.component'!r} nor {missing[0]!r}.")
            needed += [f"{name}.normalized", *names]
            onehot.append(names)
    return needed, onehot


def decode_batches(
    src: str | os.PathLike, columns: Sequence[str], n_valid: np.ndarray, chunk_rows: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(normalized, component)`` of shape (n, n_columns) per batch of an encoded Parquet file
    (or directory of part files), in row order; NaN ``normalized`` for nulls.

    The layout is recognised from the column names: ``<col>.normalized`` with
    ``<col>.component`` (``"rdt"``, ``"compact"``) or with ``<col>.component_<i>``
    (``"ctgan"``; the largest entry wins, so a generator's soft outputs decode too, and a row of
    zeros is a null).
    """
    import pyarrow.parquet as pq

    paths = expand_paths(src)  # a file, or a directory of part files in row order
    try:
        available = set(pq.read_schema(paths[0]).names)
    except (pa.ArrowException, OSError) as exc:
        raise read_error(paths[0], exc) from None
    needed, onehot = _decoded_columns(available, src, columns, n_valid)

    def batches() -> Iterator[pa.RecordBatch]:
        for path in paths:
            try:
                with pq.ParquetFile(path, pre_buffer=False) as f:
                    yield from f.iter_batches(batch_size=chunk_rows, columns=needed)
            except (pa.ArrowException, OSError) as exc:
                raise read_error(path, exc) from None

    for batch in read_ahead(batches()):
        n = batch.num_rows
        alpha = np.empty((n, len(columns)))
        comp = np.empty((n, len(columns)), dtype=np.int64)
        for j, name in enumerate(columns):
            a = batch.column(f"{name}.normalized").cast(pa.float64())
            alpha[:, j] = a.to_numpy(zero_copy_only=False)
            code_columns = onehot[j]
            if code_columns is None:
                comp[:, j] = _fill_null(batch.column(f"{name}.component"), -1)
            else:
                codes = np.column_stack(
                    [batch.column(c).to_numpy(zero_copy_only=False) for c in code_columns]
                )
                comp[:, j] = np.argmax(codes, axis=1)
                alpha[~(codes > 0).any(axis=1), j] = np.nan
        alpha[comp < 0] = np.nan
        yield alpha, comp
