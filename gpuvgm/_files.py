"""File sources: Parquet and CSV files streamed chunk by chunk in a stable order (sorted file
lists, directories in natural order), every file checked unchanged at the start of each pass,
Parquet row groups decoded in parallel on the I/O threads within a byte budget."""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pyarrow as pa

from ._errors import DataError, DataTypeError
from ._parallel import io_pool, n_threads
from ._sources import (
    Source,
    _chunk_dtype,
    _conform,
    _select,
    read_error,
    unify_schema,
)

_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".tsv")

#: Decoded bytes of Parquet row groups read in parallel at most (bounded memory).
PARQUET_BYTES_IN_FLIGHT = 256 << 20


def _read_row_group(path: Path, metadata: Any, index: int, names: Sequence[str]) -> pa.Table:
    import pyarrow.parquet as pq

    # A reader per call (the footer is passed in, not parsed again): no reader is shared
    # between threads.
    with pq.ParquetFile(path, metadata=metadata, pre_buffer=False) as f:
        return f.read_row_group(index, columns=list(names), use_threads=False)


def _parquet_batches(
    path: Path, f: Any, names: Sequence[str], chunk_rows: int
) -> Iterator[pa.RecordBatch | pa.Table]:
    """The rows of the open Parquet file ``f``, in order, in pieces of at most ``chunk_rows``.

    A single pyarrow reader decodes one column on one thread. When the file has several row
    groups small enough, up to one per I/O thread are decoded at once (within
    :data:`PARQUET_BYTES_IN_FLIGHT`) and handed over in order; otherwise the file is streamed by
    record batches.
    """
    meta = f.metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    row_bytes = 8 * max(len(names), 1)
    in_flight = min(
        n_threads(), PARQUET_BYTES_IN_FLIGHT // max(1, max(sizes, default=0) * row_bytes)
    )
    if len(sizes) < 2 or in_flight < 2:
        yield from f.iter_batches(batch_size=chunk_rows, columns=list(names))
        return
    pending: deque[Future] = deque()
    submitted = 0
    try:
        while submitted < len(sizes) or pending:
            while submitted < len(sizes) and len(pending) < in_flight:
                pending.append(io_pool().submit(_read_row_group, path, meta, submitted, names))
                submitted += 1
            table = pending.popleft().result()
            for start in range(0, table.num_rows, chunk_rows):
                yield table.slice(start, chunk_rows)
    finally:
        for future in pending:  # stopped early: drop the reads not started
            future.cancel()


def _identity(path: Path) -> tuple[int, int, int, int]:
    """What tells a file from its replacement: device, inode, size, modification time (ns)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise read_error(path, exc) from None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class _FileSource(Source):
    """Files that every pass reads again: a pass first checks that none was replaced or
    rewritten since the source was opened, since the passes of one fit would otherwise mix two
    data sets (statistics of the old rows, iterations over the new ones) without a word."""

    paths: list[Path]
    _identities: list[tuple[int, int, int, int]]

    def _remember_files(self) -> None:
        self._identities = [_identity(p) for p in self.paths]

    def _check_files(self) -> None:
        for path, before in zip(self.paths, self._identities, strict=True):
            if _identity(path) != before:
                raise DataError(
                    f"{path}: the file changed after it was opened (its size, modification time "
                    "or inode differ); the passes over it would mix two data sets. Run again "
                    "once the file is final."
                )


class ParquetSource(_FileSource):
    """One or more Parquet files, streamed by record batches in sorted file order."""

    def __init__(self, paths: Sequence[Path], columns: Sequence[str] | None = None):
        import pyarrow.parquet as pq

        if not paths:
            raise DataError("no Parquet files to read.")
        self.paths = list(paths)
        self._remember_files()
        try:
            schema = pq.read_schema(self.paths[0])
        except (pa.ArrowException, OSError) as exc:
            raise read_error(self.paths[0], exc) from None
        self.columns = _select(schema.names, columns, f"{self.paths[0]}")
        self._schemas: list[tuple[str, pa.Schema]] = []
        n_rows = 0
        for path in self.paths:
            try:
                meta = pq.read_metadata(path)
                self._schemas.append((str(path), meta.schema.to_arrow_schema()))
            except (pa.ArrowException, OSError) as exc:
                raise read_error(path, exc) from None
            n_rows += meta.num_rows
        # One dtype for every file, decided before any is read (unify_schema).
        unified = unify_schema(self._schemas, self.columns)
        self._dtype = _chunk_dtype([unified.field(c).type for c in self.columns])
        self.named = True
        self.n_rows = n_rows

    def _tables(self, chunk_rows: int, names: Sequence[str]) -> Iterator[tuple[int, Any]]:
        import pyarrow.parquet as pq

        self._check_files()
        extra = [n for n in names if n not in self.columns]
        target = unify_schema(self._schemas, self.columns, extra)
        offset = 0
        for path in self.paths:
            try:
                # No read-ahead of whole row groups: it buys nothing on local disks and holds
                # ~200 MB of buffers (measured on a 20M-row file); memory stays bounded.
                with pq.ParquetFile(path, pre_buffer=False) as f:
                    _select(f.schema_arrow.names, names, str(path))
                    for batch in _parquet_batches(path, f, names, chunk_rows):
                        yield offset, _conform(batch, target)
                        offset += batch.num_rows
            except (pa.ArrowException, OSError) as exc:
                raise read_error(path, exc) from None

    def describe(self) -> str:
        return f"{len(self.paths)} Parquet file(s)"


class CSVSource(_FileSource):
    """One or more CSV files, streamed with pyarrow's CSV reader; every column read as float64."""

    def __init__(self, paths: Sequence[Path], columns: Sequence[str] | None = None):
        self.paths = list(paths)
        self._remember_files()
        headers = [(path, _csv_header(path)) for path in self.paths]
        self.columns = _select(headers[0][1], columns, f"{self.paths[0]}")
        for path, names in headers[1:]:
            _select(names, self.columns, f"{path}")
        self.named = True
        self.n_rows = None

    def _tables(self, chunk_rows: int, names: Sequence[str]) -> Iterator[tuple[int, Any]]:
        import pyarrow.csv as pacsv

        self._check_files()
        # ~8 bytes of text per value and column: a block holds about chunk_rows rows.
        block = int(min(max(chunk_rows * 8 * max(len(names), 1), 1 << 20), 1 << 30))
        convert = pacsv.ConvertOptions(
            include_columns=list(names),
            column_types={c: pa.float64() for c in self.columns},
        )
        offset = 0
        for path in self.paths:
            try:
                with pacsv.open_csv(
                    path, read_options=pacsv.ReadOptions(block_size=block), convert_options=convert
                ) as reader:
                    for batch in reader:
                        yield offset, batch
                        offset += batch.num_rows
            except pa.ArrowInvalid as exc:
                if re.search(r"Expected \d+ columns", str(exc)):
                    raise DataError(
                        f"{path}: a row has a different number of fields than the header "
                        f"(a ragged CSV): {exc}"
                    ) from None
                raise DataTypeError(f"{path}: {exc}") from None
            except (pa.ArrowException, OSError) as exc:
                raise read_error(path, exc) from None

    def describe(self) -> str:
        return f"{len(self.paths)} CSV file(s)"


def _csv_header(path: Path) -> list[str]:
    """The column names of a CSV file (its header row), as pyarrow reads them."""
    import pyarrow.csv as pacsv

    try:
        with pacsv.open_csv(path) as reader:
            return reader.schema.names
    except pa.ArrowInvalid as exc:
        if "Empty CSV" in str(exc):
            raise DataError(f"{path}: the CSV file is empty (no header row).") from None
        if re.search(r"Expected \d+ columns", str(exc)):
            raise DataError(
                f"{path}: a row has a different number of fields than the header (a ragged "
                f"CSV): {exc}"
            ) from None
        raise read_error(path, exc) from None
    except (pa.ArrowException, OSError) as exc:
        raise read_error(path, exc) from None


def _natural_key(name: str) -> list[str | int]:
    """Sort key comparing runs of digits as numbers: ``part.2`` before ``part.10`` (Dask and
    pyarrow number part files without zero padding)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def expand_paths(spec: Any) -> list[Path]:
    """The files ``spec`` names: files as given, directories' Parquet/CSV files in natural
    order of their relative paths."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                (
                    q
                    for q in p.rglob("*")
                    if q.is_file()
                    and q.name.lower().endswith(_PARQUET_SUFFIXES + CSV_SUFFIXES)
                    # as pyarrow's discovery: skip hidden/temporary/metadata files and folders
                    and not any(c.startswith((".", "_")) for c in q.relative_to(p).parts)
                ),
                key=lambda q: _natural_key(q.relative_to(p).as_posix()),
            )
            if not found:
                raise DataError(f"directory {str(p)!r} holds no Parquet or CSV files.")
            paths.extend(found)
        elif p.exists():
            paths.append(p)
        else:
            raise DataError(f"file {str(p)!r} does not exist.")
    return paths
