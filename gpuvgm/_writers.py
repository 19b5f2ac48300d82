"""Writers: atomic file output, one Parquet file or a directory of part files.

Writers know Arrow and NumPy, not the mixture (DESIGN.md §4).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pyarrow as pa

from ._errors import DataError
from ._parallel import WriteBehind, io_pool, n_threads


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


#: Names of the part files of a directory output: zero-padded, so sorted names are row order.
PART_NAME = "part-{:06d}.parquet"
_PART = re.compile(r"^part-\d{6,}\.parquet$")
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


def is_directory_output(dst: str | os.PathLike) -> bool:
    """Whether ``dst`` names a directory of part files rather than one Parquet file: it exists
    as a directory, ends with a separator, or has no Parquet suffix."""
    text = os.fspath(dst)
    return (
        Path(text).is_dir()
        or text.endswith(("/", os.sep))
        or not Path(text).name.lower().endswith(_PARQUET_SUFFIXES)
    )


@contextlib.contextmanager
def atomic_directory(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``dst``; put it at ``dst`` only on success.

    An existing ``dst`` is replaced only when it is empty or holds nothing but part files (an
    earlier output); anything else there is refused, never deleted. An interrupted or failed
    write leaves ``dst`` as it was.
    """
    dst = Path(dst)
    if dst.exists():
        if not dst.is_dir():
            raise DataError(f"output {str(dst)!r} exists and is not a directory.")
        foreign = [p.name for p in dst.iterdir() if not _PART.match(p.name)]
        if foreign:
            raise DataError(
                f"output directory {str(dst)!r} holds other files ({foreign[0]!r}, ...); "
                "refusing to replace it: choose an empty or new directory."
            )
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        yield tmp
        if dst.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
            os.replace(dst, old / "previous")
            try:
                os.replace(tmp, dst)
            except BaseException:
                os.replace(old / "previous", dst)  # put the earlier output back
                os.rmdir(old)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class _PartWriter:
    """Tables to part files written in parallel on the I/O pool: a part collects consecutive
    tables until it holds ``rows_per_file`` rows, then is encoded and written by one I/O thread
    while the next parts fill. At most ``max(2, threads)`` parts are held at once (the
    submitter waits), so memory stays bounded."""

    def __init__(self, folder: Path, rows_per_file: int, row_group_rows: int):
        self.folder = folder
        self.rows_per_file = rows_per_file
        self.row_group_rows = row_group_rows
        self.schema: pa.Schema | None = None
        self.tables: list[pa.Table] = []
        self.rows = 0
        self.index = 0
        self.slots = threading.BoundedSemaphore(max(2, n_threads()))
        self.futures: list[Future] = []

    def _write(self, index: int, tables: list[pa.Table]) -> None:
        import pyarrow.parquet as pq

        try:
            table = pa.concat_tables(tables)
            pq.write_table(
                table, self.folder / PART_NAME.format(index), row_group_size=self.row_group_rows
            )
        finally:
            self.slots.release()

    def _check(self) -> None:
        for f in self.futures:
            if f.done() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
        self.futures = [f for f in self.futures if not f.done()]

    def _flush(self) -> None:
        if not self.tables:
            return
        self.slots.acquire()
        self.futures.append(io_pool().submit(self._write, self.index, self.tables))
        self.index += 1
        self.tables, self.rows = [], 0

    def write(self, table: pa.Table) -> None:
        self._check()
        if self.schema is None:
            self.schema = table.schema
        elif not table.schema.equals(self.schema):
            raise ValueError(
                f"table schema does not match the output's schema:\n{table.schema}\n"
                f"vs\n{self.schema}"
            )
        self.tables.append(table)
        self.rows += table.num_rows
        if self.rows >= self.rows_per_file:
            self._flush()

    def finish(self, empty_schema: pa.Schema) -> None:
        if self.index == 0 and not self.tables:
            self.tables = [empty_schema.empty_table()]  # a valid, empty dataset
        self._flush()
        for f in self.futures:
            f.result()  # raises the first failure
        self.futures = []

    def abort(self) -> None:
        for f in self.futures:
            f.cancel()
        for f in self.futures:
            if not f.cancelled():
                with contextlib.suppress(BaseException):
                    f.result()


@contextlib.contextmanager
def parquet_output(
    dst: str | os.PathLike,
    empty_schema: pa.Schema,
    row_group_rows: int,
    rows_per_file: int | None = None,
) -> Iterator[Callable[[pa.Table], None]]:
    """Yield ``write(table)`` appending to the Parquet output at ``dst``, which appears only
    once complete (:func:`atomic_path`, :func:`atomic_directory`); the first table fixes the
    schema, and a run that writes no table still leaves a valid empty output with
    ``empty_schema``.

    ``dst`` with a Parquet suffix is one file, written by one writer thread behind the caller;
    otherwise (:func:`is_directory_output`) a directory of part files
    ``part-000000.parquet``, ... of about ``rows_per_file`` rows each (default
    ``row_group_rows``), encoded in parallel on the I/O threads.
    """
    if is_directory_output(dst):
        with atomic_directory(dst) as folder:
            parts = _PartWriter(folder, rows_per_file or row_group_rows, row_group_rows)
            try:
                yield parts.write
                parts.finish(empty_schema)
            except BaseException:
                parts.abort()
                raise
        return
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
