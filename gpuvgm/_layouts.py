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

LAYOUTS = ("full", "rdt", "rdt_random", "compact", "ctgan")

#: The layouts whose null rows hold the encoding of the column's fill value (its mean), as RDT's
#: ``ClusterBasedNormalizer`` writes them; the caller transforms the fill value for those rows.
RDT_LAYOUTS = ("rdt", "rdt_random")


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
    null_column: Sequence[bool] | None = None,
) -> pa.Table:
    """One chunk of encoded values as a table (arrays of shape (n_rows, n_columns)).

    Layouts (the README's "Layouts" section says the same, with examples)
    -------
    ``"full"``: ``<col>.normalized`` (float64, null for a null), ``<col>.component`` (int32,
    -1 for a null), ``<col>.is_null`` (bool). Exact and self-describing; gpuvgm's default.
    ``"rdt"``: RDT's ``ClusterBasedNormalizer(missing_value_generation="from_column")`` output,
    dtypes and all: ``<col>.normalized`` and ``<col>.component`` (float64), and, for a column
    whose ``null_column`` entry is true (it had nulls when fitted: RDT adds the column only
    then), ``<col>.is_null`` (float64, 1.0 for a null). A null row holds the encoding of the
    column's fill value (RDT: the mean), computed by the caller: no Parquet nulls, no -1.
    ``"rdt_random"``: RDT's output with ``missing_value_generation="random"`` (RDT's default)
    or None: the two float64 columns only; a null is the mean's encoding and cannot be told
    from a value.
    ``"compact"``: ``<col>.normalized`` (float32, null for a null) and ``<col>.component`` in
    the smallest integer type that holds the column's valid components (-1 for a null).
    ``"ctgan"``: CTGAN's DataTransformer layout, ``<col>.normalized`` (float32, 0 for a null)
    then one float32 column ``<col>.component_<i>`` per valid component holding the one-hot
    code (all zero for a null).
    """
    arrays: dict[str, pa.Array] = {}
    for j, name in enumerate(columns):
        alpha, comp, is_null = normalized[:, j], component[:, j], null[:, j]
        if layout == "full":
            arrays[f"{name}.normalized"] = pa.array(alpha, mask=is_null)
            arrays[f"{name}.component"] = pa.array(comp.astype(np.int32))
            arrays[f"{name}.is_null"] = pa.array(is_null)
        elif layout in RDT_LAYOUTS:
            # The caller encoded the fill value for null rows: every entry is a number.
            arrays[f"{name}.normalized"] = pa.array(np.asarray(alpha, dtype=np.float64))
            arrays[f"{name}.component"] = pa.array(comp.astype(np.float64))
            if layout == "rdt" and (null_column is None or null_column[j]):
                arrays[f"{name}.is_null"] = pa.array(is_null.astype(np.float64))
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


def encoded_schema(
    columns: Sequence[str],
    n_valid: np.ndarray,
    layout: str,
    null_column: Sequence[bool] | None = None,
) -> pa.Schema:
    """The schema of :func:`encode`'s tables."""
    e = np.empty((0, len(columns)))
    empty = encode(e, e.astype(np.int32), e.astype(bool), columns, n_valid, layout, null_column)
    return empty.schema


def write_encoded(
    chunks: Iterable[tuple[tuple[np.ndarray, ...], pa.Table | None]],
    write: Callable[[pa.Table], None],
    columns: Sequence[str],
    n_valid: np.ndarray,
    layout: str,
    progress: Callable[[str, int], None] | None,
    null_column: Sequence[bool] | None = None,
) -> tuple[int, np.ndarray]:
    """Encode and ``write`` every chunk ``((normalized, component, null, n_clipped),
    passed-through columns or None)``, those columns first; ``(rows, n_clipped)``."""
    rows, n_clipped = 0, np.zeros(len(columns), dtype=np.int64)
    for (normalized, component, null, clipped), passed in chunks:
        table = encode(normalized, component, null, columns, n_valid, layout, null_column)
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


def _codes(column: Any) -> np.ndarray:
    """An Arrow component column as int64, nulls as -1; a float column (the "rdt" layouts, a
    generator's output) is rounded first, as RDT's ``reverse_transform`` rounds it."""
    import pyarrow.compute as pc

    if pa.types.is_floating(column.type):
        codes = np.round(column.to_numpy(zero_copy_only=False))
        return np.where(np.isnan(codes), -1, codes).astype(np.int64)
    return np.asarray(pc.fill_null(column, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _decoded_columns(
    available: set[str], src: Any, columns: Sequence[str], n_valid: np.ndarray
) -> tuple[list[str], list[list[str] | None]]:
    """The columns to read, and per model column its one-hot columns (None: an index column).
    A ``<col>.is_null`` column, where there is one, is read too."""
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
        if f"{name}.is_null" in available:
            needed.append(f"{name}.is_null")
    return needed, onehot


def decode_batches(
    src: str | os.PathLike, columns: Sequence[str], n_valid: np.ndarray, chunk_rows: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(normalized, component)`` of shape (n, n_columns) per batch of an encoded Parquet file
    (or directory of part files), in row order; NaN ``normalized`` for nulls.

    The layout is recognised from the column names: ``<col>.normalized`` with
    ``<col>.component`` (``"full"``, ``"rdt"``, ``"rdt_random"``, ``"compact"``) or with
    ``<col>.component_<i>`` (``"ctgan"``; the largest entry wins, so a generator's soft outputs
    decode too, and a row of zeros is a null). A row is null where ``normalized`` is null, the
    component is null or -1, or ``<col>.is_null`` (bool, or RDT's float: ``> 0.5``) says so; the
    "rdt_random" layout marks no null, so its null rows decode to the column mean.
    """
    import pyarrow.parquet as pq

    paths = expand_paths(src)  # a file, or a directory of part files in row order
    try:
        available = set(pq.read_schema(paths[0]).names)
    except (pa.ArrowException, OSError) as exc:
        raise read_error(paths[0], exc) from None
    needed, onehot = _decoded_columns(available, src, columns, n_valid)
    flagged = set(needed)

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
                comp[:, j] = _codes(batch.column(f"{name}.component"))
            else:
                codes = np.column_stack(
                    [batch.column(c).to_numpy(zero_copy_only=False) for c in code_columns]
                )
                comp[:, j] = np.argmax(codes, axis=1)
                alpha[~(codes > 0).any(axis=1), j] = np.nan
            if f"{name}.is_null" in flagged:
                flag = batch.column(f"{name}.is_null").cast(pa.float64())
                is_null = flag.to_numpy(zero_copy_only=False) > 0.5  # RDT's threshold
                alpha[is_null, j] = np.nan
                comp[is_null, j] = -1
        alpha[comp < 0] = np.nan
        yield alpha, comp
