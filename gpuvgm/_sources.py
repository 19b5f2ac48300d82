"""Data sources: anything gpuvgm can fit or transform, as a sequence of chunks.

A source can be iterated many times (every fit iteration is a pass) and always yields the same
chunks in the same order: files are read in sorted order. A chunk is ``(row_offset, array)`` where
``array`` has shape (n_rows, n_columns), dtype float32 or float64, NaN for nulls, and
``row_offset`` is the global index of its first row (it keys the counter-based sampler).

Sources know Arrow, pandas and NumPy, not the mixture (DESIGN.md §4).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ._errors import DataError, DataTypeError
from ._parallel import read_ahead

Chunk = tuple[int, np.ndarray]
ExtraChunk = tuple[int, np.ndarray, pa.Table]


#: ``stage(chunks)``: a backend's ``memory.stage``, ``(offset, chunk where it computes, host)``.
Stage = Callable[[Iterable[Chunk]], Iterable[tuple[int, Any, Any]]]
Progress = Callable[[str, int], None]


def _on_host(chunks: Iterable[Chunk]) -> Iterator[tuple[int, Any, Any]]:
    """The default stage: chunks stay where they are."""
    return ((offset, chunk, chunk) for offset, chunk in chunks)


class Source:
    """Base class: ``columns`` (names), ``named`` (names came from the data), ``n_rows`` (or None
    when unknown before a pass), :meth:`chunks`, and the passes over them (:meth:`map_reduce`,
    :meth:`fold`), which a distributed source runs where its data is."""

    columns: list[str]
    named: bool
    n_rows: int | None
    in_memory = False  # chunks are views of data already in memory (caching would copy it)
    lazy = False  # transforms return lazy collections (see gpuvgm._dask_source)

    def chunks(self, chunk_rows: int, readahead: bool = False) -> Iterator[Chunk]:
        """``(row_offset, array of shape (n, n_columns))`` for every chunk, in row order;
        ``readahead`` reads the next chunks on a background thread (unless in memory)."""
        chunks = self._iter_chunks(chunk_rows)
        return read_ahead(chunks) if readahead and not self.in_memory else chunks

    def _iter_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        for offset, table in self._tables(chunk_rows, self.columns):
            yield offset, _batch_to_array(table, self.columns, self._dtype)

    def chunks_with(
        self, chunk_rows: int, extra: Sequence[str], readahead: bool = False
    ) -> Iterator[ExtraChunk]:
        """Like :meth:`chunks`, plus the ``extra`` columns of the same rows, unconverted (to pass
        them through to an output file)."""
        chunks = self._iter_chunks_with(chunk_rows, extra)
        return read_ahead(chunks) if readahead and not self.in_memory else chunks

    def _iter_chunks_with(self, chunk_rows: int, extra: Sequence[str]) -> Iterator[ExtraChunk]:
        names = list(dict.fromkeys([*self.columns, *extra]))
        for offset, table in self._tables(chunk_rows, names):
            array = _batch_to_array(table, self.columns, self._dtype)
            yield offset, array, _as_table(table).select(list(extra))

    def _staged(
        self, chunk_rows: int, stage: Stage | None, progress: Progress | None, phase: str
    ) -> Iterator[tuple[int, Any, Any]]:
        """One pass, read ahead, staged, telling ``progress(phase, rows)`` after each chunk."""
        for offset, chunk, host in (stage or _on_host)(self.chunks(chunk_rows, readahead=True)):
            yield offset, chunk, host
            if progress is not None:
                progress(phase, len(host))

    def map_reduce(
        self,
        fn: Callable[[int, Any], Any],
        chunk_rows: int,
        *,
        stage: Stage | None = None,
        progress: Progress | None = None,
        phase: str = "",
    ) -> Any:
        """``fn(row_offset, chunk)`` summed (``+``, left to right) over every chunk; None when
        there is no chunk. ``stage`` moves each chunk to where ``fn`` computes."""
        total = None
        for offset, chunk, _ in self._staged(chunk_rows, stage, progress, phase):
            part = fn(offset, chunk)
            total = part if total is None else total + part
        return total

    def fold(
        self,
        make: Callable[[], Any],
        chunk_rows: int,
        *,
        stage: Stage | None = None,
        progress: Progress | None = None,
        phase: str = "",
    ) -> Any:
        """``acc = make()``, then ``acc.add(row_offset, chunk, host)`` for every chunk in order
        (``host``: the same rows in host memory); accumulators of different rows add."""
        acc = make()
        for offset, chunk, host in self._staged(chunk_rows, stage, progress, phase):
            acc.add(offset, chunk, host)
        return acc

    def map_chunks(self, fn: Callable[[int, Any], Any], outputs: Sequence[Any]) -> list[Any]:
        """The lazy outputs of ``fn(row_offset, chunk)``: sources with ``lazy`` set only."""
        raise NotImplementedError(f"{self.describe()} computes eagerly")

    def persist_on(self, memory: Any) -> None:
        """Keep the data where a backend's ``memory`` computes, for the next passes (a
        distributed source's partitions); a no-op for the others."""

    def describe(self) -> str:
        return type(self).__name__

    def _tables(self, chunk_rows: int, names: Sequence[str]) -> Iterator[tuple[int, Any]]:
        """``(row_offset, Arrow table or record batch with the columns ``names``)``."""
        raise DataError(
            f"{self.describe()} cannot pass columns through; use Parquet, CSV, Arrow or pandas "
            "input."
        )

    _dtype: np.dtype = np.dtype(np.float64)


def _check_numeric_arrow(name: str, typ: pa.DataType) -> None:
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_null(typ):
        return
    if pa.types.is_dictionary(typ) and (
        pa.types.is_integer(typ.value_type) or pa.types.is_floating(typ.value_type)
    ):
        return
    raise DataTypeError(
        f"column {name!r} has type {typ}, which is not numeric; gpuvgm models continuous "
        "columns (integers or floats). Select the numeric columns with columns=[...]."
    )


def float_array_to_numpy(arr: pa.Array) -> np.ndarray:
    """A float32 or float64 Arrow array as a NumPy array (read-only when it shares the Arrow
    buffer), NaN for nulls.

    Through DLPack rather than ``arr.to_numpy``: pyarrow's NumPy conversion initialises its
    pandas interop, which imports pandas when it is installed (0.3 s to 0.5 s, more than a
    whole fit of a thousand rows). A null's value slot is unspecified in Arrow, so with nulls
    the values are copied and the null slots set to NaN.
    """
    if arr.null_count == 0:
        return np.from_dlpack(arr)
    # The same values without the validity bitmap, which DLPack cannot carry.
    values = pa.Array.from_buffers(
        arr.type, len(arr), [None, arr.buffers()[1]], null_count=0, offset=arr.offset
    )
    out = np.array(np.from_dlpack(values))
    out[np.from_dlpack(arr.is_null().cast(pa.uint8())).astype(np.bool_)] = np.nan
    return out


def _arrow_to_float(arr: pa.Array | pa.ChunkedArray, dtype: np.dtype) -> np.ndarray:
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    target = pa.float32() if dtype == np.float32 else pa.float64()
    if arr.type != target:
        # Unsafe: integers beyond 2**53 (int64 ids, nanosecond timestamps) round to the nearest
        # float, as NumPy's astype does; a safe cast would refuse them with ArrowInvalid.
        arr = arr.cast(target, safe=False)
    if isinstance(arr, pa.ChunkedArray):
        if arr.num_chunks == 1:
            return float_array_to_numpy(arr.chunk(0))
        return np.concatenate([float_array_to_numpy(c) for c in arr.chunks] or [np.empty(0, dtype)])
    return float_array_to_numpy(arr)


def _as_table(data: pa.Table | pa.RecordBatch) -> pa.Table:
    return pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data


def read_error(path: Path, exc: Exception) -> DataError:
    """The one error for a file that cannot be read (sources and layouts)."""
    return DataError(f"{path}: cannot be read ({type(exc).__name__}: {exc}).")


def _chunk_dtype(types: Sequence[pa.DataType]) -> np.dtype:
    """float32 when every column is float32 (half the bytes), float64 otherwise."""
    if types and all(t == pa.float32() for t in types):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _batch_to_array(
    batch: pa.RecordBatch | pa.Table, columns: Sequence[str], dtype: np.dtype
) -> np.ndarray:
    out = np.empty((batch.num_rows, len(columns)), dtype=dtype, order="F")
    for j, name in enumerate(columns):
        out[:, j] = _arrow_to_float(batch.column(name), dtype)
    return out


def _select(available: Sequence[str], columns: Sequence[str] | None, what: str) -> list[str]:
    selected = list(available) if columns is None else list(columns)
    missing = [c for c in selected if c not in available]
    if missing:
        raise DataError(
            f"column {missing[0]!r} is not in {what}; it has {', '.join(map(repr, available))}."
        )
    counts = Counter(available)
    twice = [c for c in selected if counts[c] > 1]
    if twice:
        raise DataError(
            f"column {twice[0]!r} appears {counts[twice[0]]} times in {what}; a column is read "
            "by its name, so names must be distinct: rename the duplicates."
        )
    return selected


def unify_schema(
    schemas: Sequence[tuple[str, pa.Schema]],
    numeric: Sequence[str],
    extra: Sequence[str] = (),
    fallback: pa.Schema | None = None,
) -> pa.Schema:
    """One Arrow type per column across the files of a source, before any is read.

    ``schemas`` are ``(file name, schema)`` pairs. A ``numeric`` column must be numeric in every
    file; where the files disagree it is float64 (the widest float wins: a float32 file is
    widened, a float64 one is never rounded to float32). An ``extra`` (pass-through) column
    takes pyarrow's permissive promotion of its types. A column numeric in one file and not in
    another, or extra types that do not merge, is a :class:`DataTypeError` naming both files;
    a missing or duplicated name a :class:`DataError` naming the file. ``fallback`` (a
    dataset's schema) types the columns a file does not hold itself (partition fields).
    """
    fields = []
    for name in dict.fromkeys([*numeric, *extra]):
        seen: list[tuple[str, pa.DataType]] = []
        for where, schema in schemas:
            if name not in schema.names and fallback is not None and name in fallback.names:
                continue
            _select(schema.names, [name], where)
            typ = schema.field(name).type
            if name in numeric:
                try:
                    _check_numeric_arrow(name, typ)
                except DataTypeError as exc:
                    if not seen:
                        raise DataTypeError(f"{where}: {exc}") from None
                    raise DataTypeError(
                        f"column {name!r} is {seen[0][1]} in {seen[0][0]} but {typ} in {where}; "
                        "gpuvgm models continuous columns, numeric in every file."
                    ) from None
            seen.append((where, typ))
        if not seen:
            assert fallback is not None
            fields.append(fallback.field(name))
            continue
        types = [t for _, t in seen]
        if all(t == types[0] for t in types):
            typ = types[0]
        elif name in numeric:
            typ = pa.float64()
        else:
            try:
                typ = (
                    pa.unify_schemas(
                        [pa.schema([(name, t)]) for t in types], promote_options="permissive"
                    )
                    .field(name)
                    .type
                )
            except (pa.ArrowException, TypeError):
                other = next((w, t) for w, t in seen if t != types[0])
                raise DataTypeError(
                    f"column {name!r} is {types[0]} in {seen[0][0]} but {other[1]} in "
                    f"{other[0]}; the files of one input must agree on its type."
                ) from None
        fields.append(pa.field(name, typ))
    return pa.schema(fields)


def _conform(batch: pa.RecordBatch | pa.Table, target: pa.Schema) -> pa.RecordBatch | pa.Table:
    """``batch`` with the columns and types of ``target`` (a no-op when they already agree)."""
    if batch.schema.equals(target, check_metadata=False):
        return batch
    return _as_table(batch).select(target.names).cast(target, safe=False)


def frame_columns(
    names: Sequence[str], dtypes: Sequence[Any], columns: Sequence[str] | None
) -> list[str]:
    """The selected columns of a (pandas or Dask) DataFrame, after the checks both share: no
    duplicate names, and only numeric (non-boolean) dtypes selected."""
    import pandas as pd

    if len(set(names)) != len(names):
        raise DataError("the DataFrame has duplicate column names.")
    selected = _select(names, None if columns is None else list(columns), "the DataFrame")
    dtype_of = dict(zip(names, dtypes, strict=True))
    for name in selected:
        dt = dtype_of[name]
        if pd.api.types.is_bool_dtype(dt) or not pd.api.types.is_numeric_dtype(dt):
            raise DataTypeError(
                f"column {name!r} has dtype {dt}, which is not numeric; gpuvgm models "
                "continuous columns (integers or floats). Select the numeric columns with "
                "columns=[...]."
            )
    return selected


def non_numeric_array(dtype: np.dtype) -> DataTypeError:
    return DataTypeError(
        f"the array has dtype {dtype}, which is not numeric; gpuvgm models continuous columns "
        "(integers or floats)."
    )


def array_columns(
    ndim: int, n_columns: int, columns: Sequence[Any] | None
) -> tuple[list[int] | None, list[str]]:
    """Checks an array's rank and a column selection by position: ``(positions or None, names)``.

    Shared by in-memory arrays and Dask arrays.
    """
    if ndim not in (1, 2):
        raise DataError(f"expected a 1-D or 2-D array, got an array with {ndim} dimensions.")
    if columns is None:
        return None, [str(i) for i in range(n_columns)]
    idx = [int(c) for c in columns]
    for c in idx:
        if not 0 <= c < n_columns:
            raise DataError(f"column {c} does not exist: the array has {n_columns}.")
    return idx, [str(c) for c in idx]


class ArraySource(Source):
    """A NumPy array of shape (n_rows,) or (n_rows, n_columns), in memory."""

    in_memory = True

    def __init__(self, array: Any, columns: Sequence[Any] | None = None):
        try:
            arr = np.asarray(array)
        except (TypeError, ValueError) as exc:  # ragged nested lists
            raise DataError(f"the input cannot be read as a 2-D array: {exc}") from None
        idx, names = array_columns(arr.ndim, arr.shape[-1] if arr.ndim == 2 else 1, columns)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.dtype.kind not in "iuf":
            if arr.dtype.kind == "O":
                try:
                    arr = arr.astype(np.float64)
                except (TypeError, ValueError) as exc:
                    raise DataTypeError(
                        f"the array holds non-numeric values ({exc}); gpuvgm models continuous "
                        "columns."
                    ) from None
            else:
                raise non_numeric_array(arr.dtype)
        if idx is not None:
            arr = arr[:, idx]
        self._array = arr
        self.columns = names
        self.named = False
        self.n_rows = arr.shape[0]

    def _iter_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        arr = self._array
        for start in range(0, arr.shape[0], chunk_rows):
            block = arr[start : start + chunk_rows]
            if block.dtype.kind != "f":
                block = block.astype(np.float64)
            yield start, block


class PandasSource(Source):
    """A pandas DataFrame or Series, converted chunk by chunk."""

    def __init__(self, frame: Any, columns: Sequence[str] | None = None):
        import pandas as pd

        if isinstance(frame, pd.Series):
            frame = frame.to_frame(name=frame.name if frame.name is not None else "0")
        names = [str(c) for c in frame.columns]
        selected = frame_columns(names, list(frame.dtypes), columns)
        self._frame = frame.set_axis(names, axis=1)
        self.columns = selected
        self.named = True
        self.n_rows = len(frame)

    def _iter_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        for start in range(0, self.n_rows or 0, chunk_rows):
            part = self._frame.iloc[start : start + chunk_rows][self.columns]
            yield start, part.to_numpy(dtype=np.float64, na_value=np.nan)

    def _iter_chunks_with(self, chunk_rows: int, extra: Sequence[str]) -> Iterator[ExtraChunk]:
        _select(list(self._frame.columns), extra, "the DataFrame")
        for start, array in self._iter_chunks(chunk_rows):
            part = self._frame.iloc[start : start + len(array)][list(extra)]
            yield start, array, pa.Table.from_pandas(part, preserve_index=False)


class ArrowSource(Source):
    """A ``pyarrow.Table`` or ``RecordBatch`` in memory."""

    def __init__(self, table: pa.Table | pa.RecordBatch, columns: Sequence[str] | None = None):
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        self.columns = _select(table.column_names, columns, "the table")
        self._names = table.column_names
        for name in self.columns:
            _check_numeric_arrow(name, table.schema.field(name).type)
        self._full = table
        self._dtype = _chunk_dtype([table.schema.field(c).type for c in self.columns])
        self.named = True
        self.n_rows = table.num_rows

    def _tables(self, chunk_rows: int, names: Sequence[str]) -> Iterator[tuple[int, Any]]:
        table = self._full.select(_select(self._names, names, "the table"))
        for start in range(0, table.num_rows, chunk_rows):
            yield start, table.slice(start, chunk_rows)


def _rechunk(batches: Iterator[pa.RecordBatch], chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """Batches of at most ``chunk_rows`` rows (larger ones sliced, zero-copy), empty ones
    dropped."""
    for batch in batches:
        for start in range(0, batch.num_rows, chunk_rows):
            yield batch.slice(start, chunk_rows)


class DatasetSource(Source):
    """A ``pyarrow.dataset.Dataset``: fragments (files) in path order, each streamed by record
    batches with only the selected columns read; never materialised as a whole."""

    def __init__(self, dataset: Any, columns: Sequence[str] | None = None):
        schema = dataset.schema
        self.columns = _select(schema.names, columns, "the dataset")
        for name in self.columns:
            _check_numeric_arrow(name, schema.field(name).type)
        self._dataset = dataset
        # A dataset discovered from a directory promises no file order: fix one.
        self._fragments = sorted(dataset.get_fragments(), key=lambda f: str(getattr(f, "path", "")))
        # The dataset's schema is its first file's: unify every file's own before reading, so
        # that a float64 file is not rounded to a float32 first file's type.
        self._schemas = []
        for fragment in self._fragments:
            where = str(getattr(fragment, "path", "a dataset fragment"))
            try:
                self._schemas.append((where, fragment.physical_schema))
            except (pa.ArrowException, OSError) as exc:
                raise read_error(Path(where), exc) from None
        unified = unify_schema(self._schemas, self.columns, fallback=schema)
        self._dtype = _chunk_dtype([unified.field(c).type for c in self.columns])
        self.named = True
        self.n_rows = int(dataset.count_rows())

    def _tables(self, chunk_rows: int, names: Sequence[str]) -> Iterator[tuple[int, Any]]:
        extra = [n for n in names if n not in self.columns]
        target = unify_schema(self._schemas, self.columns, extra, fallback=self._dataset.schema)
        full = pa.schema(
            [target.field(f.name) if f.name in target.names else f for f in self._dataset.schema]
        )
        offset = 0
        for fragment in self._fragments:
            where = Path(str(getattr(fragment, "path", "a dataset fragment")))
            try:
                batches = fragment.to_batches(
                    schema=full, columns=list(names), batch_size=chunk_rows
                )
                for batch in _rechunk(batches, chunk_rows):
                    yield offset, batch
                    offset += batch.num_rows
            except (pa.ArrowException, OSError) as exc:
                raise read_error(where, exc) from None

    def describe(self) -> str:
        return f"a pyarrow dataset of {len(self._fragments)} fragment(s)"


class ReaderSource(Source):
    """A ``pyarrow.RecordBatchReader``: a stream that can be read once. A fit reads it in the
    pre-pass and iterates from the host cache, so the data must fit in ``cache_bytes``; a
    transform reads it once."""

    def __init__(self, reader: pa.RecordBatchReader, columns: Sequence[str] | None = None):
        schema = reader.schema
        self.columns = _select(schema.names, columns, "the record batch reader")
        for name in self.columns:
            _check_numeric_arrow(name, schema.field(name).type)
        self._reader: pa.RecordBatchReader | None = reader
        self._dtype = _chunk_dtype([schema.field(c).type for c in self.columns])
        self.named = True
        self.n_rows = None

    def _tables(self, chunk_rows: int, names: Sequence[str]) -> Iterator[tuple[int, Any]]:
        if self._reader is None:
            raise DataError(
                "a pyarrow RecordBatchReader can be read only once, and this one was read "
                "already (the data did not fit in the host cache, cache_bytes, for the next "
                "passes): pass a Table, a pyarrow dataset or files, or raise cache_bytes."
            )
        reader, self._reader = self._reader, None
        offset = 0
        for batch in _rechunk(iter(reader), chunk_rows):
            yield offset, batch.select(list(names))
            offset += batch.num_rows

    def describe(self) -> str:
        return "a pyarrow RecordBatchReader"


_DASK_MODULES = ("dask", "dask_cudf", "dask_expr")


def is_dask_collection(x: Any) -> bool:
    """Whether ``x`` is a Dask array or DataFrame (dask_cudf included), without importing Dask."""
    return callable(getattr(x, "__dask_graph__", None)) and (
        type(x).__module__.split(".")[0] in _DASK_MODULES
    )


def is_path_like(x: Any) -> bool:
    """Whether ``x`` names files: a str, a path, or a non-empty list of them."""
    if isinstance(x, (str, os.PathLike)):
        return True
    return (
        isinstance(x, (list, tuple))
        and len(x) > 0
        and all(isinstance(i, (str, os.PathLike)) for i in x)
    )
