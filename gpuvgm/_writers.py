"""Writers: encoded chunks to Arrow tables in the documented layouts, and atomic file output.

Writers know Arrow and NumPy, not the mixture (DESIGN.md §4).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from ._parallel import WriteBehind

LAYOUTS = ("rdt", "compact", "ctgan")


def _smallest_int(n_values: int) -> type:
    for dtype in (np.int8, np.int16, np.int32):
        if n_values <= np.iinfo(dtype).max:
            return dtype
    return np.int64


def encoded_table(
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


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; rename it to ``dst`` only on success.

    An interrupted or failed write leaves no file at ``dst`` (and any previous one intact).
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dst)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def parquet_output(
    dst: str | os.PathLike, empty_schema: pa.Schema, row_group_rows: int
) -> Iterator[Callable[[pa.Table], None]]:
    """Yield ``write(table)`` appending to a Parquet file that appears at ``dst`` only once
    complete (:func:`atomic_path`); the first table fixes the schema, and a run that writes no
    table still leaves a valid empty file with ``empty_schema``."""
    import pyarrow.parquet as pq

    with atomic_path(dst) as tmp:
        writer: pq.ParquetWriter | None = None

        def write(table: pa.Table) -> None:
            nonlocal writer
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table, row_group_size=row_group_rows)

        # Encoding and writing a chunk (pyarrow releases the GIL) overlaps computing the next.
        behind = WriteBehind(write)
        try:
            yield behind.submit
            behind.finish()
            if writer is None:
                writer = pq.ParquetWriter(tmp, empty_schema)
        except BaseException:
            behind.abort()
            raise
        finally:
            if writer is not None:
                writer.close()
