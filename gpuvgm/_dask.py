"""Dask: fit and transform ``dask.array`` and ``dask.dataframe`` collections on a cluster.

The mixture's statistics add, so a pass over a Dask collection is a map over its partitions and
a tree reduction of a few numbers per column (DESIGN.md §4):

- :class:`DaskSource` is a :class:`~gpuvgm._sources.Source` whose :meth:`~DaskSource.map_reduce`
  runs ``fn(global_row_offset, chunk)`` over the chunks of every partition *on the workers*, sums
  the results within each partition, then sums the partitions in a fixed tree (``split_every``
  at a time) on the workers too. The client receives one reduced object per pass (a
  :class:`~gpuvgm._model.Stats`: ``3K + 3`` numbers per column) and runs the M-step. The
  estimator uses ``map_reduce`` instead of its local chunk loop whenever a source has one, so
  the fit is the same loop for every source.
- The partitions are converted to float arrays and persisted on the workers once, before the
  pre-pass (and moved to the workers' GPUs after it with the CUDA backend); their global row
  offsets come from the partition lengths, so the counter-based sampler and the bottom-k
  initialisation sample (keyed by global row index) are those of a single-machine fit.
- A worker lost mid-fit loses its persisted partitions; the scheduler recomputes them from the
  collection's graph and the pass gives the same statistics (each partition's statistics and the
  reduction tree do not depend on where they run). When it cannot (the data was scattered, the
  cluster is gone, a task kept killing its workers) the fit raises
  :class:`~gpuvgm._errors.DistributedError`: never a model fitted on part of the data.
- :func:`transform` and :func:`inverse` are lazy: they return Dask arrays built partition by
  partition, with the global row offset of each partition keying the sampler, so the output
  equals the single-machine output for any partitioning.

Dask is imported here only, and only when a Dask collection is used.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ._errors import DataError, DataTypeError, DistributedError, GPUVGMError
from ._sources import Chunk, Source, _non_numeric_array, _select, array_columns
from ._validation import check_columns_match, check_encoded, check_finite, check_no_nulls

if TYPE_CHECKING:
    from ._estimator import VGM, Encoded

logger = logging.getLogger("gpuvgm")

SPLIT_EVERY = 8  # partitions (or partial sums) added per task of the reduction tree

_DASK_MODULES = ("dask", "dask_cudf", "dask_expr")


def is_dask_collection(x: Any) -> bool:
    """Whether ``x`` is a Dask array or DataFrame (dask_cudf included), without importing Dask."""
    return callable(getattr(x, "__dask_graph__", None)) and (
        type(x).__module__.split(".")[0] in _DASK_MODULES
    )


def _is_frame(x: Any) -> bool:
    return hasattr(x, "map_partitions") and hasattr(x, "columns")


# ---------------------------------------------------------------------------- worker functions
# Module-level, so that the tasks pickle by reference; each runs on a worker.


def _frame_block(part: Any, columns: Sequence[str]) -> np.ndarray:
    """A pandas (or cuDF) partition as a float64 array of shape (n, C), NaN for nulls."""
    if hasattr(part, "to_pandas"):  # cuDF: to the host; the CUDA backend copies it back
        part = part.to_pandas()
    part = part.set_axis([str(c) for c in part.columns], axis=1)
    return np.asarray(part[list(columns)].to_numpy(dtype=np.float64, na_value=np.nan))


def _array_block(block: Any) -> np.ndarray:
    """A Dask array block as a 2-D float array (float32 kept, anything else as float64)."""
    if hasattr(block, "get") and not isinstance(block, np.ndarray):  # CuPy: to the host
        block = block.get()
    block = np.asarray(block)
    if block.ndim == 1:
        block = block[:, None]
    if block.dtype not in (np.float32, np.float64):
        block = block.astype(np.float64)
    return block


def _partition_reduce(
    block: Any, offset: int, fn: Callable[[int, Any], Any], chunk_rows: int
) -> Any:
    """``fn(offset, chunk)`` summed over the ``chunk_rows``-row chunks of one partition, in row
    order; None for an empty partition."""
    total = None
    for start in range(0, block.shape[0], chunk_rows):
        part = fn(offset + start, block[start : start + chunk_rows])
        total = part if total is None else total + part
    return total


def _sum(*parts: Any) -> Any:
    """The sum of the non-None ``parts``, left to right (a fixed order: reproducible)."""
    total = None
    for part in parts:
        if part is not None:
            total = part if total is None else total + part
    return total


def _starts(*lengths: int) -> list[int]:
    """Global row offset of every partition from the partition lengths."""
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)[:-1]]).tolist()


def _transform_block(
    block: Any,
    starts: list[int] | int,
    index: int,
    backend_name: str,
    params: Any,
    names: Sequence[str],
    null_policy: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mode-specific normalization of one partition whose first row is global row
    ``starts[index]`` (or ``starts`` when it is a number)."""
    backend = _backend(backend_name)
    offset = starts if isinstance(starts, int) else int(starts[index])
    check_finite(block, names, offset)
    if null_policy == "error":
        check_no_nulls(block, names, offset)
    normalized, component, null, n_clipped = backend.transform(block, params, offset)
    host = (np.asarray(_array_host(a)) for a in (normalized, component, null, n_clipped))
    return tuple(host)  # type: ignore[return-value]


def _backend(name: str) -> ModuleType:
    """The backend called ``name`` on this worker (the client's, not this worker's "auto")."""
    from ._backends import get_backend

    return get_backend({"numpy": "numpy", "numba": "cpu"}.get(name, "cuda"))


def _array_host(a: Any) -> Any:
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else a


def _inverse_block(
    normalized: np.ndarray,
    component: np.ndarray,
    backend_name: str,
    params: Any,
    names: Sequence[str],
    n_valid: np.ndarray,
    alpha_bound: float,
) -> np.ndarray:
    normalized, component = check_encoded((normalized, component), names, n_valid, alpha_bound)
    backend = _backend(backend_name)
    return np.asarray(_array_host(backend.inverse(normalized, component, params)))


# ---------------------------------------------------------------------------- the source


class DaskSource(Source):
    """A Dask array of shape (n_rows,) or (n_rows, n_columns), or a Dask DataFrame, whose
    passes run on the cluster (see the module docstring).

    The persisted partitions live as long as the source: a fit releases them when it returns.
    :meth:`chunks` brings partitions to the client one at a time; the fit never calls it.
    """

    in_memory = True  # nothing for the estimator to cache: the partitions stay on the workers

    def __init__(self, X: Any, columns: Sequence[Any] | None = None):
        import dask

        if _is_frame(X):
            import pandas as pd

            names = [str(c) for c in X.columns]
            if len(set(names)) != len(names):
                raise DataError("the DataFrame has duplicate column names.")
            selected = _select(names, None if columns is None else list(columns), "the DataFrame")
            for name, dt in zip(names, X.dtypes, strict=True):
                if name in selected and (
                    pd.api.types.is_bool_dtype(dt) or not pd.api.types.is_numeric_dtype(dt)
                ):
                    raise DataTypeError(
                        f"column {name!r} has dtype {dt}, which is not numeric; gpuvgm models "
                        "continuous columns (integers or floats). Select the numeric columns "
                        "with columns=[...]."
                    )
            convert = dask.delayed(_frame_block, pure=True)
            self._raw = [convert(p, selected) for p in X.to_delayed()]
            self._lengths: list[int] | None = None
            self.columns, self.named = selected, True
            self._kind = "DataFrame"
        else:
            idx, names = array_columns(X.ndim, X.shape[-1] if X.ndim == 2 else 1, columns)
            if X.dtype.kind not in "iuf":
                raise _non_numeric_array(X.dtype)
            arr = X[:, None] if X.ndim == 1 else X
            if idx is not None:
                arr = arr[:, idx]
            arr = arr.rechunk({1: -1})  # a partition holds whole rows
            convert = dask.delayed(_array_block, pure=True)
            self._raw = [convert(b) for b in arr.to_delayed().ravel()]
            known = all(not math.isnan(c) for c in arr.chunks[0])
            self._lengths = [int(c) for c in arr.chunks[0]] if known else None
            self.columns, self.named = names, False
            self._kind = "array"
        self.n_rows = None if self._lengths is None else sum(self._lengths)
        self._blocks: list[Any] | None = None
        self.split_every = SPLIT_EVERY
        self.received_bytes: list[int] = []  # per pass: what the client received (sizeof)

    def describe(self) -> str:
        return f"a Dask {self._kind} of {len(self._raw)} partition(s), persisted on the workers"

    @property
    def npartitions(self) -> int:
        return len(self._raw)

    # -------------------------------------------------------------- on the cluster
    def _compute(self, *values: Any) -> tuple[Any, ...]:
        """``dask.compute`` (on the default client when there is one); a lost cluster or
        workers beyond recovery become :class:`DistributedError`."""
        import dask

        try:
            return tuple(dask.compute(*values))
        except GPUVGMError:
            raise  # e.g. DataError raised by a check on a worker: the user's problem, as is
        except (CancelledError, OSError, TimeoutError) as exc:
            raise _distributed_error(exc) from exc
        except Exception as exc:
            if type(exc).__module__.split(".")[0] in ("distributed", "dask"):
                raise _distributed_error(exc) from exc
            raise

    def _persisted(self) -> list[Any]:
        """The partitions as float arrays persisted on the workers, and their offsets known."""
        if self._blocks is None:
            import dask

            self._blocks = list(dask.persist(*self._raw))
            if self._lengths is None:
                lengths = self._compute(*(dask.delayed(len)(b) for b in self._blocks))
                self._lengths = [int(n) for n in lengths]
                self.n_rows = sum(self._lengths)
        return self._blocks

    def persist_on(self, backend: ModuleType) -> None:
        """Keep the persisted partitions where ``backend`` computes (a GPU for the CUDA
        backend): called once the pre-pass, which needs them in host memory, is done."""
        if backend.NAME in ("numpy", "numba"):
            return
        import dask

        to_device = dask.delayed(backend.memory.to_device, pure=True)
        self._blocks = list(dask.persist(*(to_device(b) for b in self._persisted())))

    def map_reduce(
        self,
        fn: Callable[[int, Any], Any],
        chunk_rows: int,
        progress: Callable[[str, int], None] | None = None,
        phase: str = "",
    ) -> Any:
        """``sum(fn(global_row_offset, chunk))`` over every chunk of every partition, computed
        and reduced on the workers; the client receives only the sum.

        Parameters
        ----------
        fn : callable
            ``fn(offset, chunk)`` returns an object supporting ``+`` (e.g. :class:`Stats`).
            It is pickled to the workers (cloudpickle).
        chunk_rows : int
            Rows per call of ``fn`` within a partition: bounds the workers' memory.
        progress : callable, optional
            ``progress(phase, n_rows)`` once the pass is done.
        """
        import dask

        blocks = self._persisted()
        assert self._lengths is not None
        starts = _starts(*self._lengths)
        task = dask.delayed(_partition_reduce, pure=False)
        parts = [task(b, s, fn, chunk_rows) for b, s in zip(blocks, starts, strict=True)]
        add = dask.delayed(_sum, pure=False)
        while len(parts) > 1:
            parts = [
                add(*parts[i : i + self.split_every])
                for i in range(0, len(parts), self.split_every)
            ]
        (total,) = self._compute(parts[0])
        if total is None:
            raise DataError("the input is empty: there are no rows to fit.")
        from dask.sizeof import sizeof

        self.received_bytes.append(int(sizeof(total)))
        if progress is not None:
            progress(phase, int(self.n_rows or 0))
        return total

    # -------------------------------------------------------------- on the client
    def chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        """Partition by partition, brought to the client: for the estimator's other uses of a
        source (``predict_proba``, ``plot``); the fit never calls it."""
        blocks = self._blocks if self._blocks is not None else self._raw
        offset = 0
        for b in blocks:
            (array,) = self._compute(b)
            array = _array_host(array)
            for start in range(0, array.shape[0], chunk_rows):
                yield offset + start, array[start : start + chunk_rows]
            offset += array.shape[0]


def _distributed_error(exc: BaseException) -> DistributedError:
    return DistributedError(
        f"a distributed pass failed ({type(exc).__name__}: {exc}); the Dask workers holding "
        "the data were lost beyond what the scheduler could recompute, or the cluster went "
        "away. No model was fitted; check the cluster and fit again."
    )


# ---------------------------------------------------------------------------- transform


def transform(model: VGM, X: Any, columns: Sequence[Any] | None) -> Encoded:
    """:meth:`VGM.transform` of a Dask collection, lazily.

    Returns
    -------
    Encoded
        Whose ``normalized`` (float64), ``component`` (int32) and ``null`` (bool) are Dask arrays
        of shape (n_rows, n_columns), one block per partition of ``X`` (rows of unknown length
        for a DataFrame), and ``n_clipped`` a Dask array of shape (n_columns,). Nothing is
        computed until they are.
    """
    import dask
    import dask.array as da

    from ._estimator import Encoded

    model._check_is_fitted()
    source = DaskSource(X, columns)
    check_columns_match(
        model._columns, source.columns, source.named and hasattr(model, "feature_names_in_")
    )
    c = model.n_features_in_
    backend = model._backend().NAME
    params = dask.delayed(model._transform_params(), pure=True)  # one copy in the graph
    if source._lengths is not None:
        starts: Any = _starts(*source._lengths)
        lengths: list[float] = [float(n) for n in source._lengths]
    else:  # a DataFrame: the offsets come from the partition lengths, computed with the output
        starts = dask.delayed(_starts, pure=True)(*(dask.delayed(len)(b) for b in source._raw))
        lengths = [math.nan] * source.npartitions
    task = dask.delayed(_transform_block, pure=True)
    get = dask.delayed(operator.getitem, pure=True)
    outs = [
        task(
            b,
            starts[i] if isinstance(starts, list) else starts,
            i,
            backend,
            params,
            model._columns,
            model.null_policy,
        )
        for i, b in enumerate(source._raw)
    ]

    def column(k: int, dtype: Any) -> Any:
        blocks = [
            da.from_delayed(get(o, k), shape=(n, c), dtype=dtype)
            for o, n in zip(outs, lengths, strict=True)
        ]
        return da.concatenate(blocks, axis=0)

    n_clipped = da.stack(
        [da.from_delayed(get(o, 3), shape=(c,), dtype=np.int64) for o in outs]
    ).sum(axis=0)
    return Encoded(
        column(0, np.float64),
        column(1, np.int32),
        column(2, np.bool_),
        list(model._columns),
        n_clipped,
    )


def inverse(model: VGM, normalized: Any, component: Any) -> Any:
    """:meth:`VGM.inverse_transform` of Dask arrays, lazily: a Dask array of shape
    (n_rows, n_columns), float64, blocked as ``normalized``."""
    import dask.array as da

    normalized = da.asarray(normalized)
    component = da.asarray(component)
    if normalized.ndim != 2 or component.ndim != 2:
        raise DataError(
            "inverse_transform of Dask arrays needs normalized and component of shape "
            f"(n_rows, n_columns); got {normalized.shape} and {component.shape}."
        )
    normalized = normalized.rechunk({1: -1})
    component = component.rechunk({1: -1})
    if normalized.chunks[0] != component.chunks[0]:
        component = component.rechunk({0: normalized.chunks[0]})
    alpha_bound = math.inf if model.clip is None else max(1.0, float(model.clip))
    return da.map_blocks(
        _inverse_block,
        normalized,
        component,
        backend_name=model._backend().NAME,
        params=model._transform_params(),
        names=list(model._columns),
        n_valid=model.valid_components_.sum(axis=1),
        alpha_bound=alpha_bound,
        dtype=np.float64,
    )
