"""Writers: atomic file output, one Parquet file or a directory of part files.

Writers know Arrow and NumPy, not the mixture (DESIGN.md §4).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pyarrow as pa

from ._errors import GPUVGMError, OutputError, OverwriteError
from ._parallel import WriteBehind, io_pool, n_threads

logger = logging.getLogger("gpuvgm")


# ---------------------------------------------------------------------- destinations
def _input_paths(inputs: Any) -> list[str]:
    """The file and directory names an input spec holds: a path, a list of paths, or an object
    with a ``paths`` attribute (file sources); anything else (in-memory data) holds none."""
    if inputs is None:
        return []
    if isinstance(inputs, (str, os.PathLike)):
        return [os.fspath(inputs)]
    paths = getattr(inputs, "paths", None)
    if paths is not None:
        return _input_paths(list(paths))
    if isinstance(inputs, (list, tuple)):
        return [os.fspath(p) for p in inputs if isinstance(p, (str, os.PathLike))]
    return []


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)  # hard links and bind mounts too
    except OSError:
        return False


def _read_from_directory(dst: str) -> bool:
    """Whether an output named ``dst`` inside an input directory would be read as part of it
    (a Parquet/CSV file, or a directory of part files); a model file or an image would not."""
    name = Path(dst).name.lower()
    return name.endswith(_DATA_SUFFIXES) or not Path(name).suffix or dst.endswith(("/", os.sep))


def check_destination(dst: str | os.PathLike, inputs: Any) -> None:
    """Refuse an output that would replace or sit inside one of ``inputs``.

    Both sides are resolved (``realpath``: symbolic links, ``..``, relative spellings; hard links
    by ``samefile``). Raises :class:`OverwriteError` naming both paths when ``dst`` is an input,
    lies inside an input directory where reading the directory would pick it up (a Parquet or
    CSV file, a directory of part files), or is a directory that holds an input.
    """
    text = os.fspath(dst)
    d = Path(os.path.realpath(text))
    for src in _input_paths(inputs):
        s = Path(os.path.realpath(src))
        if d == s or _same_file(text, src):
            problem = "is the input"
        elif s.is_dir() and d.is_relative_to(s) and _read_from_directory(text):
            problem = "lies inside the input directory"
        elif s.is_relative_to(d):
            problem = "is a directory that holds the input"
        else:
            continue
        raise OverwriteError(
            f"the output {text!r} {problem} {src!r}; writing it would destroy the input. "
            "Choose an output outside the inputs."
        )


_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "it is a directory, a file is expected",
    errno.ENOTDIR: "a parent of it is not a directory",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EEXIST: "a file is in the way",
}


def output_error(dst: str | os.PathLike, exc: OSError) -> OutputError:
    """``exc`` (raised while writing ``dst``) as an :class:`OutputError` naming ``dst``."""
    if isinstance(exc, OutputError):
        return exc
    code = exc.errno
    if code is None:  # pyarrow's IO errors carry the code in the text: "[errno 28] ..."
        found = re.search(r"\[errno (\d+)\]", str(exc), re.IGNORECASE)
        code = int(found.group(1)) if found else None
    reason = _REASONS.get(code, "") if code is not None else ""
    error = OutputError(
        f"cannot write {os.fspath(dst)!r}: {reason or 'the write failed'} "
        f"({type(exc).__name__}: {exc})."
    )
    error.errno = code
    return error


@contextlib.contextmanager
def writing(dst: str | os.PathLike) -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into an :class:`OutputError` naming ``dst``."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, GPUVGMError):
            raise
        raise output_error(dst, exc) from exc


# Temporary names beside a destination carry who wrote them, so that the leftovers of a killed
# run (SIGKILL, power loss) can be told from the files of a run still going:
# ``.<name>.gpuvgm-<host>-<pid>-<random>.tmp`` (``.old`` for a directory being replaced).
TEMP_MARK = "gpuvgm"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"


def temp_prefix(dst: str | os.PathLike) -> str:
    """The prefix of this process's temporary names beside ``dst``."""
    return f".{Path(dst).name}.{TEMP_MARK}-{_host()}-{os.getpid()}-"


def _stale_pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"^\.{re.escape(name)}\.{TEMP_MARK}-(?P<host>.+)-(?P<pid>\d+)-[A-Za-z0-9_]+\."
        r"(?P<kind>tmp|old)$"
    )


def _pid_alive(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return True  # never reap what this process may be writing
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(dst: str | os.PathLike) -> list[Path]:
    """Remove the temporary files a killed gpuvgm run left beside ``dst``; return them.

    Only names stamped with this host whose process no longer exists are touched (a stamp of
    another host, of a live process, or an unstamped name is left alone). A directory output
    killed between moving the earlier output aside and putting the new one in place left
    ``dst`` missing: the earlier output is put back first.
    """
    dst = Path(dst)
    pattern = _stale_pattern(dst.name)
    host = _host()
    removed: list[Path] = []
    try:
        entries = list(dst.parent.iterdir())
    except OSError:
        return removed
    for entry in sorted(entries):
        m = pattern.match(entry.name)
        if m is None or m["host"] != host or _pid_alive(int(m["pid"])):
            continue
        try:
            if m["kind"] == "old" and (entry / "previous").exists() and not dst.exists():
                os.replace(entry / "previous", dst)  # undo the half-done replacement
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as exc:
            logger.warning("cannot remove the leftover temporary %s: %s", entry, exc)
            continue
        logger.info("removed %s, left by gpuvgm process %s (no longer running)", entry, m["pid"])
        removed.append(entry)
    return removed


def _prepare(dst: Path) -> None:
    with writing(dst):
        dst.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dst)


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; rename it to ``dst`` only on success.

    An interrupted or failed write leaves no file at ``dst`` (and any previous one intact).
    Leftovers of killed earlier runs are removed first (:func:`remove_stale_temps`); an
    ``OSError`` of the directory or the rename is an :class:`OutputError` naming ``dst``.
    """
    dst = Path(dst)
    if dst.is_dir():
        raise OutputError(f"cannot write {str(dst)!r}: it is a directory, a file is expected.")
    _prepare(dst)
    with writing(dst):
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(dst), suffix=".tmp", dir=dst.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with writing(dst):
            os.replace(tmp_path, dst)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


#: Names of the part files of a directory output: zero-padded, so sorted names are row order.
PART_NAME = "part-{:06d}.parquet"
_PART = re.compile(r"^part-\d{6,}\.parquet$")
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_DATA_SUFFIXES = (*_PARQUET_SUFFIXES, ".csv", ".csv.gz", ".csv.bz2", ".tsv")


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
            raise OverwriteError(
                f"output {str(dst)!r} exists and is not a directory; refusing to replace it."
            )
        foreign = [p.name for p in dst.iterdir() if not _PART.match(p.name)]
        if foreign:
            raise OverwriteError(
                f"output directory {str(dst)!r} holds other files ({foreign[0]!r}, ...); "
                "refusing to replace it: choose an empty or new directory."
            )
    _prepare(dst)
    with writing(dst):
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(dst), suffix=".tmp", dir=dst.parent))
    try:
        yield tmp
        with writing(dst):
            if dst.exists():
                old = Path(tempfile.mkdtemp(prefix=temp_prefix(dst), suffix=".old", dir=dst.parent))
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

    def __init__(self, folder: Path, rows_per_file: int, row_group_rows: int, dst: Path):
        self.folder = folder
        self.dst = dst
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
            with writing(self.dst):
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
    inputs: Any = None,
) -> Iterator[Callable[[pa.Table], None]]:
    """Yield ``write(table)`` appending to the Parquet output at ``dst``, which appears only
    once complete (:func:`atomic_path`, :func:`atomic_directory`); the first table fixes the
    schema, and a run that writes no table still leaves a valid empty output with
    ``empty_schema``.

    ``dst`` with a Parquet suffix is one file, written by one writer thread behind the caller;
    otherwise (:func:`is_directory_output`) a directory of part files
    ``part-000000.parquet``, ... of about ``rows_per_file`` rows each (default
    ``row_group_rows``), encoded in parallel on the I/O threads.

    ``inputs`` (paths, or a source with ``paths``) are what the run reads: an output that is one
    of them, lies inside one or holds one is refused before anything is written
    (:func:`check_destination`). A failed write (no space, read-only...) is an
    :class:`OutputError` naming ``dst``.
    """
    check_destination(dst, inputs)
    if is_directory_output(dst):
        with atomic_directory(dst) as folder:
            parts = _PartWriter(folder, rows_per_file or row_group_rows, row_group_rows, Path(dst))
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
            with writing(dst):
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table, row_group_size=row_group_rows)

        # Encoding and writing a chunk (pyarrow releases the GIL) overlaps computing the next.
        behind = WriteBehind(write)
        try:
            yield behind.submit
            behind.finish()
            with writing(dst):
                if writer is None:
                    writer = pq.ParquetWriter(tmp, empty_schema)
                writer.close()  # flushes the footer: a full disk shows here
        except BaseException:
            behind.abort()
            if writer is not None:
                with contextlib.suppress(BaseException):
                    writer.close()
            raise
