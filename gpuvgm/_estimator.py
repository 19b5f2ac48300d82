"""The estimator: :class:`VGM`, a per-column Dirichlet-process variational Gaussian mixture with
mode-specific normalization, fitted by streaming passes over chunks."""

from __future__ import annotations

import collections
import contextlib
import functools
import inspect
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import _dask, _model, _rng
from ._backends import _numpy as _numpy_backend
from ._backends import get_backend
from ._errors import (
    ConvergenceWarning,
    DataError,
    NotFittedError,
    ParameterError,
)
from ._kmeans import kmeans, kmeans_plusplus
from ._model import EStepParams, Moments, Posterior, Priors, Stats, TransformParams
from ._parallel import read_ahead
from ._profiling import annotate, peak_rss_bytes
from ._sources import (
    ArraySource,
    CachedSource,
    Source,
    _expand_paths,
    is_path_like,
    make_source,
)
from ._validation import (
    check_columns_match,
    check_encoded,
    check_finite,
    check_no_nulls,
    per_column,
    validate_params,
)
from ._writers import LAYOUTS, encoded_table, parquet_output

logger = logging.getLogger("gpuvgm")


@dataclass
class Encoded:
    """The output of :meth:`VGM.transform`.

    Attributes
    ----------
    normalized : ndarray of shape (n_rows, n_columns), float64
        ``alpha = (x - mean_c) / (4 std_c)`` for the chosen component (clipped to ``±clip`` unless
        ``clip=None``); NaN where the input was null.
    component : ndarray of shape (n_rows, n_columns), int32
        The chosen component as an index among the column's valid components; -1 for nulls.
    null : ndarray of shape (n_rows, n_columns), bool
        Where the input was null (NaN or missing).
    columns : list of str
        Column names, in order.
    n_clipped : ndarray of shape (n_columns,), int64
        How many values of each column were clipped.
    """

    normalized: np.ndarray
    component: np.ndarray
    null: np.ndarray
    columns: list[str]
    n_clipped: np.ndarray

    def __len__(self) -> int:
        return int(self.normalized.shape[0])


Progress = Callable[[str, int], None]


def _reported(
    source: Source, chunk_rows: int, progress: Progress | None, phase: str
) -> Iterator[tuple[int, np.ndarray]]:
    """``source.chunks(chunk_rows)``, telling ``progress(phase, rows)`` after each chunk; read
    ahead on a background thread unless the chunks are already in memory."""
    chunks = source.chunks(chunk_rows)
    for offset, chunk in chunks if source.in_memory else read_ahead(chunks):
        yield offset, chunk
        if progress is not None:
            progress(phase, len(chunk))


@contextlib.contextmanager
def _phase(timings: dict[str, float], name: str) -> Iterator[None]:
    """Time a phase of the fit into ``timings[name]`` under an NVTX range of the same name."""
    t = time.perf_counter()
    with annotate(name):
        yield
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - t


def _fill_null(column: Any, value: int) -> np.ndarray:
    """An Arrow integer column as int64, nulls replaced by ``value``."""
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(column, value).to_numpy(zero_copy_only=False), dtype=np.int64)


class _ChunkCache:
    """Where the iterations read the data: device memory first, then host memory, each up to its
    budget; past both, nothing is kept and every iteration reads the source again.

    When the source knows its row count and every row fits in the device budget, the rows are
    gathered into one column-major device array (``whole``): an iteration is then one launch of
    each kernel and one download of statistics, instead of one per chunk.
    """

    def __init__(
        self, device_budget: int, host_budget: int, backend: ModuleType, n_rows: int | None
    ):
        self.budget = {"device": device_budget, "host": host_budget}
        self.used = {"device": 0, "host": 0}
        self.backend = backend
        self.n_rows = n_rows
        self.whole: Any = None
        self.rows = 0
        self.chunks: list[tuple[int, Any]] | None = []
        self.seen = 0  # bytes of one pass over the source

    def add(self, offset: int, chunk: Any, host: np.ndarray) -> None:
        """Keep rows ``offset ..`` : ``chunk`` where the backend computes (it may be a staging
        buffer, reused after this call: it is copied), ``host`` the same rows in host memory."""
        self.seen += host.nbytes
        self.rows += host.shape[0]
        if self.chunks is None:
            return
        if offset == 0 and self.n_rows:
            nbytes = self.n_rows * host.shape[1] * host.itemsize
            if nbytes <= self.budget["device"]:
                self.whole = self.backend.memory.empty_cache(
                    (self.n_rows, host.shape[1]), host.dtype
                )
                self.used["device"] = nbytes
        if self.whole is not None:
            if self.rows > (self.n_rows or 0):  # more rows than the metadata said: distrust it
                self._drop()
                return
            self.backend.memory.cache_put(self.whole, offset, chunk)
            return
        for where in ("device", "host"):
            if self.used[where] + host.nbytes <= self.budget[where]:
                self.used[where] += host.nbytes
                kept = self.backend.memory.to_device(chunk) if where == "device" else host
                self.chunks.append((offset, kept))
                return
        self._drop()  # too large for the caches: stream every pass

    def _drop(self) -> None:
        self.chunks = None
        self.whole = None
        self.used = {"device": 0, "host": 0}

    def source(self, like: Source) -> Source | None:
        """The cached rows as a source for the next passes, or None when they were not kept."""
        if self.whole is not None and self.rows != self.n_rows:
            self._drop()  # fewer rows than the metadata said
        if self.whole is not None:
            return CachedSource([(0, self.whole)], like, "device memory, one array")
        if self.chunks:
            where = "device memory" if self.used["device"] else "host memory"
            if self.used["device"] and self.used["host"]:
                where = "device and host memory"
            return CachedSource(self.chunks, like, where)
        return None

    def describe(self) -> str:
        """Where the iterations read, and why (the budgets)."""
        budgets = (
            f"budgets: device {self.budget['device'] / 1e9:.3g} GB, host "
            f"{self.budget['host'] / 1e9:.3g} GB; one pass reads {self.seen / 1e9:.3g} GB"
        )
        if self.chunks is None or (not self.chunks and self.whole is None):
            if not any(self.budget.values()):
                return (
                    "the source on every pass (nothing to cache: in memory already, or caches off)"
                )
            return f"the source on every pass, larger than the caches ({budgets})"
        return (
            f"the cache: {self.used['device'] / 1e9:.3g} GB on the device"
            f"{' in one array' if self.whole is not None else ''}, "
            f"{self.used['host'] / 1e9:.3g} GB in host memory ({budgets})"
        )

    def report(self) -> dict[str, Any]:
        return {
            "device_bytes": self.used["device"],
            "host_bytes": self.used["host"],
            "whole_on_device": self.whole is not None,
        }


class _Reservoir:
    """A uniform sample without replacement of each column's non-null values, in one pass.

    Bottom-k sampling: every row gets a priority from the counter-based generator keyed by its
    global index, and the k rows with the smallest priorities are kept, so the sample does not
    depend on the chunking. Priorities are ``(32-bit word << 32) | (row mod 2**32)``: unique, so
    ties cannot make the result order-dependent.
    """

    _COLUMN_KEY = 0xFFFFFFFF  # one priority stream shared by all columns

    def __init__(self, n_columns: int, size: int, seed: int):
        self.size = size
        self.seed = seed
        self.keys = [np.empty(0, dtype=np.uint64) for _ in range(n_columns)]
        self.values = [np.empty(0) for _ in range(n_columns)]

    def add(self, offset: int, chunk: Any, backend: ModuleType = _numpy_backend) -> None:
        """Offer the rows of ``chunk`` (global rows ``offset ..``; on ``backend``'s device)."""
        # Once every column's sample is full, only rows whose word does not exceed the largest
        # kept word can enter: a few per chunk. The backend selects them where the chunk is.
        limit = 0xFFFFFFFF
        if all(k.size >= self.size for k in self.keys):
            limit = max(int(k.max()) >> 32 for k in self.keys)
        rows, words, values = backend.sample_candidates(
            chunk, self.seed, self._COLUMN_KEY, _rng.STREAM_SAMPLE, offset, limit
        )
        prio = (words.astype(np.uint64) << np.uint64(32)) | (
            (rows.astype(np.uint64) + np.uint64(offset)) & np.uint64(0xFFFFFFFF)
        )
        for j in range(values.shape[1]):
            x = values[:, j]
            ok = ~np.isnan(x)
            k, v = prio[ok], x[ok]
            if self.keys[j].size >= self.size:
                keep = k < self.keys[j].max()
                k, v = k[keep], v[keep]
            keys = np.concatenate([self.keys[j], k])
            values_j = np.concatenate([self.values[j], v])
            if keys.size > self.size:
                sel = np.argpartition(keys, self.size - 1)[: self.size]
                keys, values_j = keys[sel], values_j[sel]
            self.keys[j], self.values[j] = keys, values_j

    def sample(self, j: int) -> np.ndarray:
        """Column ``j``'s sample, ordered by priority (independent of the chunking)."""
        return self.values[j][np.argsort(self.keys[j])]

    def __add__(self, other: _Reservoir) -> _Reservoir:
        """The sample of both reservoirs' rows: the bottom k of the union is the bottom k of
        the two bottom-k sets, so merging per-partition reservoirs (Dask) gives the sample of
        one pass over all rows."""
        out = _Reservoir(len(self.keys), self.size, self.seed)
        for j in range(len(self.keys)):
            keys = np.concatenate([self.keys[j], other.keys[j]])
            values = np.concatenate([self.values[j], other.values[j]])
            if keys.size > self.size:
                sel = np.argpartition(keys, self.size - 1)[: self.size]
                keys, values = keys[sel], values[sel]
            out.keys[j], out.values[j] = keys, values
        return out


def _checked_moments(
    offset: int,
    chunk: Any,
    host: np.ndarray,
    backend: ModuleType,
    names: Sequence[str],
    null_policy: str,
) -> Moments:
    """The pre-pass moments of one chunk whose first row is global row ``offset`` (``chunk``
    where the backend computes, ``host`` the same rows on the host), after the checks (no
    infinities; no nulls under ``null_policy="error"``)."""
    part = backend.moments(chunk)
    # The moments see infinities and nulls already; the chunk is searched for the first
    # offending row only when there is one.
    if (~(np.isfinite(part.minimum) & np.isfinite(part.maximum)) & (part.count > 0)).any():
        check_finite(host, names, offset)
    if null_policy == "error" and part.n_null.any():
        check_no_nulls(host, names, offset)
    return part


def _on_chunk(fn: Callable[..., Stats], *args: Any) -> Callable[[int, Any], Stats]:
    """``(row_offset, chunk) -> fn(chunk, *args)``: a pass function (see ``VGM._pass``) for
    statistics that do not depend on the row index; picklable, so it can run on Dask workers."""
    return functools.partial(_call_on_chunk, fn, args)


def _call_on_chunk(fn: Callable[..., Stats], args: tuple, row_offset: int, chunk: Any) -> Stats:
    return fn(chunk, *args)


@dataclass
class _PrepassPart:
    """What the pre-pass gathers from some rows: moments and the bottom-k sample; adds."""

    moments: Moments
    reservoir: _Reservoir

    def __add__(self, other: _PrepassPart) -> _PrepassPart:
        return _PrepassPart(self.moments + other.moments, self.reservoir + other.reservoir)


def _prepass_part(
    offset: int,
    chunk: np.ndarray,
    *,
    backend: ModuleType,
    names: Sequence[str],
    null_policy: str,
    sample_size: int,
    seed: int,
) -> _PrepassPart:
    """The pre-pass of one chunk on its own (a Dask partition's chunks are reduced with ``+``)."""
    reservoir = _Reservoir(len(names), sample_size, seed)
    reservoir.add(offset, chunk, backend)
    return _PrepassPart(
        _checked_moments(offset, chunk, chunk, backend, names, null_policy), reservoir
    )


def _seeding_frame(sample: np.ndarray) -> tuple[np.ndarray, float]:
    """``(sample - ref, ref)`` with ``ref`` the sample's median: the frame k-means and k-means++
    make their discrete choices in.

    Not the working frame: its shift is the pre-pass mean, whose last bit depends on the
    summation order (the chunking), and a near-tie in k-means++ or at a k-means boundary would
    then pick differently for different chunk sizes. The sample, and so this frame, does not
    depend on the chunking.
    """
    ref = float(np.median(sample)) if sample.size else 0.0
    return sample - ref, ref


def _seed_from(random_state: Any) -> int:
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0])
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    return int(random_state)


class VGM:
    """Dirichlet-process variational Gaussian mixture per column, with mode-specific normalization.

    The mathematics is scikit-learn's ``BayesianGaussianMixture(covariance_type="full",
    weight_concentration_prior_type="dirichlet_process")`` fitted to each column independently,
    computed from sufficient statistics streamed over chunks, so any number of rows fits in
    memory that does not grow with the data. ``transform`` is CTGAN/RDT's mode-specific
    normalization.

    Parameters
    ----------
    n_components : int, default=10
        Components per column (CTGAN/RDT ``max_clusters``), at most 32.
    weight_concentration_prior : float or None, default=1e-3
        gamma_0 of the Dirichlet process (RDT's value). None means ``1 / n_components``.
    mean_precision_prior : float or None, default=None
        beta_0; None means 1.
    mean_prior : float, array of shape (n_columns,) or None, default=None
        m_0 in data units; None means each column's mean.
    degrees_of_freedom_prior : float or None, default=None
        nu_0; None means 1 (the number of features of a column).
    covariance_prior : float, array of shape (n_columns,) or None, default=None
        W_0^-1 in data units; None means each column's variance (ddof=1).
    reg_covar : float, default=1e-6
        Added to every component variance, in data units (as scikit-learn).
    tol : float, default=1e-7
        Convergence threshold on the change of the lower bound between iterations; see
        ``tol_scale``.
    tol_scale : {"per_row", "sum"}, default="per_row"
        ``"per_row"``: stop when ``|change| / n_rows < tol``, which means the same at 10**3 and
        10**9 rows; the default 1e-7 equals scikit-learn's ``tol=1e-3`` on a 10**4-row column
        (RDT's typical use). ``"sum"``: scikit-learn's semantics, ``|change| < tol`` on the
        lower bound summed over rows (use ``tol=1e-3`` to reproduce scikit-learn; at 10**9 rows
        it almost never triggers before ``max_iter``).
    max_iter : int, default=100
        Iterations (full passes over the data) per column at most.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        As scikit-learn. ``"kmeans"`` runs k-means on a seeded uniform sample of
        ``init_sample_size`` values per column, then assigns every row to its nearest center
        (the k-means labels scikit-learn uses as initial responsibilities). ``"k-means++"`` and
        ``"random_from_data"`` pick ``n_components`` rows of the sample; ``"random"`` draws
        random responsibilities for the sample rows and scales their statistics to all rows.
    init_sample_size : int, default=100000
        Values per column in the initialisation sample.
    means_init : array of shape (n_components,) or (n_columns, n_components), default=None
        Initial centers in data units; overrides ``init_params``: every row is assigned to its
        nearest center (lowest index on ties) to give the initial responsibilities.
    weight_threshold : float, default=0.005
        A component is valid (values may be assigned to it) when its weight exceeds this (RDT);
        the heaviest component is always valid.
    component_selection : {"sample", "argmax"}, default="sample"
        ``"sample"`` draws the component from the posterior over valid components + 1e-6 (RDT,
        CTGAN) with a counter-based generator keyed by (seed, column, row index); ``"argmax"``
        takes the most probable valid component.
    clip : float or None, default=0.99
        ``|alpha|`` is clipped to this on transform (CTGAN/RDT); None keeps the exact value.
    null_policy : {"ignore", "error"}, default="ignore"
        ``"ignore"``: nulls (NaN, missing) are left out of the fit and carried through
        transform and inverse as a mask. ``"error"``: any null raises :class:`DataError`.
    chunk_rows : int, default=1048576
        Rows per chunk read from the source; memory is O(chunk_rows x n_components).
    cache_bytes : int, default=2 GiB
        Data read from files (or converted from pandas/Arrow) is kept in host memory for the
        iterations when it takes at most this many bytes; otherwise every iteration streams it
        again from the source, so memory stays bounded. 0 always streams.
    device_cache_fraction : float, default=0.5
        On a GPU, the data is kept in device memory for the iterations when it takes at most
        this fraction of the free device memory (gathered into one array when the source knows
        its row count: one kernel launch per pass); what does not fit there goes to the host
        cache (``cache_bytes``), and past both every pass reads the source again, through
        pinned buffers copied asynchronously ahead of the kernels. 0 keeps nothing on the
        device. ``fit_report_["cache"]`` says where the iterations read.
    staged : bool, default=False
        Fit in two stages: initialise and iterate to ``tol`` on the initialisation sample (its
        statistics scaled to the column's row count), then polish with full passes from there.
        Far fewer full passes, at the price of starting the full passes from the sample's
        optimum; ``fit_report_["staged"]`` reports the iterations of each stage.
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where the passes run. ``"auto"`` uses CUDA when CuPy and a GPU are available.
    random_state : int, numpy Generator/RandomState or None, default=None
        Seeds the initialisation sample, k-means and the component sampler.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_ : ndarray of shape (n_columns, n_components)
        In data units (``covariances_`` is scikit-learn's normalised covariance).
    mean_precision_, degrees_of_freedom_ : ndarray of shape (n_columns, n_components)
    weight_concentration_ : tuple of two ndarrays of shape (n_columns, n_components)
    valid_components_ : ndarray of shape (n_columns, n_components), bool
    n_iter_ : ndarray of shape (n_columns,), int
    converged_ : ndarray of shape (n_columns,), bool
    lower_bound_ : ndarray of shape (n_columns,)
        scikit-learn's lower bound (summed over rows) at the last iteration.
    lower_bounds_ : list of ndarray
        Per column, the lower bound at every iteration.
    feature_names_in_ : ndarray of str; n_features_in_ : int
    backend_ : str
        ``"numpy"`` or ``"cupy"``.
    seed_ : int
        The seed used (drawn when ``random_state`` is None), so transforms are reproducible.
    fit_report_ : dict
        Rows, nulls, seconds per phase, rows/s, passes, iterations and convergence per column.
    """

    def __init__(
        self,
        n_components: int = 10,
        *,
        weight_concentration_prior: float | None = 1e-3,
        mean_precision_prior: float | None = None,
        mean_prior: Any = None,
        degrees_of_freedom_prior: float | None = None,
        covariance_prior: Any = None,
        reg_covar: float = 1e-6,
        tol: float = 1e-7,
        tol_scale: str = "per_row",
        max_iter: int = 100,
        init_params: str = "kmeans",
        init_sample_size: int = 100_000,
        means_init: Any = None,
        weight_threshold: float = 0.005,
        component_selection: str = "sample",
        clip: float | None = 0.99,
        null_policy: str = "ignore",
        chunk_rows: int = 1 << 20,
        cache_bytes: int = 2 << 30,
        device_cache_fraction: float = 0.5,
        staged: bool = False,
        device: str = "auto",
        random_state: Any = None,
    ):
        self.n_components = n_components
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.reg_covar = reg_covar
        self.tol = tol
        self.tol_scale = tol_scale
        self.max_iter = max_iter
        self.init_params = init_params
        self.init_sample_size = init_sample_size
        self.means_init = means_init
        self.weight_threshold = weight_threshold
        self.component_selection = component_selection
        self.clip = clip
        self.null_policy = null_policy
        self.chunk_rows = chunk_rows
        self.cache_bytes = cache_bytes
        self.device_cache_fraction = device_cache_fraction
        self.staged = staged
        self.device = device
        self.random_state = random_state

    # ------------------------------------------------------------------ scikit-learn protocol
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as scikit-learn's ``BaseEstimator.get_params``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> VGM:
        """Set constructor parameters; unknown names raise :class:`ParameterError`."""
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ParameterError(
                    f"Invalid parameter {name!r} for estimator {self!r}. "
                    f"Valid parameters are: {sorted(valid)!r}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()
        }
        changed = []
        for name, value in self.get_params().items():
            default = defaults[name]
            same = value is default or (
                not isinstance(value, (np.ndarray, list, tuple)) and value == default
            )
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def _check_is_fitted(self) -> None:
        if not hasattr(self, "_post"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def __sklearn_is_fitted__(self) -> bool:
        """Whether :meth:`fit` has run (read by ``sklearn.utils.validation.check_is_fitted``)."""
        return hasattr(self, "_post")

    def __sklearn_tags__(self) -> Any:
        """scikit-learn (>= 1.6) estimator tags: an unsupervised transformer that accepts NaN
        (nulls) and needs no ``y``. Only scikit-learn calls this, so importing it here is safe."""
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            transformer_tags=TransformerTags(),
            input_tags=InputTags(allow_nan=True),
        )

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        columns: Sequence[Any] | None = None,
        progress: Progress | None = None,
    ) -> VGM:
        """Fit a mixture to every column of ``X`` in shared passes over the data.

        Parameters
        ----------
        X : array of shape (n_rows,) or (n_rows, n_columns), DataFrame, pyarrow Table, or path(s)
            to Parquet/CSV files (streamed chunk by chunk).
        y : ignored
        columns : list, optional
            Columns of ``X`` to fit (names, or positions for arrays).
        progress : callable, optional
            Called as ``progress(phase, rows)`` after each chunk of each pass (``phase`` is
            ``"prepass"``, ``"init"`` or ``"iteration N"``); the command line draws progress
            bars with it.
        """
        validate_params(type(self).__name__, self.get_params())
        if self.init_sample_size < self.n_components:
            raise ParameterError(
                f"The 'init_sample_size' parameter of {type(self).__name__} must be at least "
                f"n_components={self.n_components}. Got {self.init_sample_size} instead."
            )
        source = make_source(X, columns)
        backend = get_backend(self.device)
        seed = _seed_from(self.random_state)
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        try:
            with _phase(timings, "prepass"):
                moments, reservoir, cache = self._prepass(source, backend, seed, progress)
            self._fit_passes(
                source, backend, seed, moments, reservoir, cache, timings, t_start, progress
            )
        finally:
            # The pools' blocks go back to the device after every fit, failed or not; what they
            # held is in fit_report_["memory"].
            backend.memory.release_memory()
        return self

    def _fit_passes(
        self,
        source: Source,
        backend: ModuleType,
        seed: int,
        moments: Moments,
        reservoir: _Reservoir,
        cache: _ChunkCache,
        timings: dict[str, float],
        t_start: float,
        progress: Progress | None,
    ) -> None:
        """Everything after the pre-pass: priors, initialisation, iterations, attributes."""
        cached = cache.source(source)
        if cached is not None:
            source = cached  # the iterations read the cache
        n_rows = int(moments.count[0] + moments.n_null[0])
        names = source.columns
        n_cols = len(names)

        shift, scale = _model.working_frame(moments, self.reg_covar)
        gamma0 = (
            1.0 / self.n_components
            if self.weight_concentration_prior is None
            else self.weight_concentration_prior
        )
        priors = Priors.from_data_units(
            shift=shift,
            scale=scale,
            weight_concentration=gamma0,
            mean_precision=1.0 if self.mean_precision_prior is None else self.mean_precision_prior,
            degrees_of_freedom=(
                1.0 if self.degrees_of_freedom_prior is None else self.degrees_of_freedom_prior
            ),
            mean=per_column("mean_prior", self.mean_prior, n_cols, moments.mean),
            covariance=per_column(
                "covariance_prior", self.covariance_prior, n_cols, moments.variance
            ),
            reg_covar=self.reg_covar,
        )

        staged_report = None
        if self.staged:
            # Stage 1: everything on the sample (NaN-padded to a rectangle: NaN is a null), its
            # statistics scaled to each column's non-null count.
            samples = [reservoir.sample(j) for j in range(n_cols)]
            sizes = np.array([s.size for s in samples], dtype=np.float64)
            matrix = np.full((int(sizes.max()), n_cols), np.nan)
            for j, s in enumerate(samples):
                matrix[: s.size, j] = s
            sample_source = ArraySource(matrix)
            factor = moments.count / sizes
            with _phase(timings, "sample_stage"):
                post = self._initialize(
                    sample_source, backend, priors, reservoir, moments, seed, None, factor
                )
                post, sample_iter, *_ = self._iterate(
                    sample_source, backend, priors, post, moments, None, factor
                )
            staged_report = {
                "sample_rows": sizes.astype(int).tolist(),
                "sample_iterations": sample_iter.tolist(),
            }
        else:
            with _phase(timings, "init"):
                post = self._initialize(source, backend, priors, reservoir, moments, seed, progress)
        with _phase(timings, "iterations"):
            post, n_iter, converged, lower, traces = self._iterate(
                source, backend, priors, post, moments, progress
            )
        timings["total"] = time.perf_counter() - t_start

        for j in np.flatnonzero(~converged).tolist():
            if self.max_iter == 0:
                break
            last = traces[j][-1] - traces[j][-2] if len(traces[j]) > 1 else math.inf
            per_row = abs(last) / moments.count[j]
            warnings.warn(
                f"column {names[j]!r} did not converge after {int(n_iter[j])} iterations "
                f"(last lower-bound change {abs(last):.3g}, {per_row:.3g} per row; "
                f"tol={self.tol} {self.tol_scale}). Increase max_iter, raise tol, or check the "
                "data.",
                ConvergenceWarning,
                stacklevel=3,  # the caller of fit()
            )

        self._set_fitted(priors, post, moments, names, source.named, backend.NAME, seed)
        self.n_iter_ = n_iter
        self.converged_ = converged
        self.lower_bound_ = lower
        self.lower_bounds_ = [np.asarray(tr) for tr in traces]
        # Full passes over the data: the pre-pass, the k-means assignment (unless staged: it ran
        # on the sample) and the iterations.
        full_init = not self.staged and (
            self.means_init is not None or self.init_params == "kmeans"
        )
        passes = 1 + int(full_init) + int(n_iter.max(initial=0))
        self.fit_report_ = {
            "rows": n_rows,
            "columns": names,
            "nulls": moments.n_null.astype(np.int64).tolist(),
            "backend": backend.NAME,
            "source": source.describe(),
            "cache": cache.report(),
            "staged": staged_report,
            "chunk_rows": int(self.chunk_rows),
            "seconds": timings,
            "passes": passes,
            "rows_per_second": n_rows * passes / max(timings["total"], 1e-12),
            "n_iter": n_iter.tolist(),
            "converged": converged.tolist(),
            "lower_bound_per_row": (lower / moments.count).tolist(),
            "lower_bound_trace_per_row": [
                (np.asarray(tr) / moments.count[j]).tolist() for j, tr in enumerate(traces)
            ],
            # The pre-pass reads the source; later passes read it again unless it was cached.
            "bytes_read": cache.seen * (1 if cached is not None else passes),
            "memory": {"peak_host_rss_bytes": peak_rss_bytes(), **backend.memory.memory_report()},
        }
        logger.info(
            "fit %d rows x %d columns on %s in %.2f s (%d passes, %.3g rows/s per pass); "
            "iterations %s, converged %d/%d; the iterations read %s",
            n_rows,
            n_cols,
            backend.NAME,
            timings["total"],
            passes,
            self.fit_report_["rows_per_second"],
            n_iter.tolist(),
            int(converged.sum()),
            n_cols,
            cache.describe(),
        )

    def _prepass(
        self, source: Source, backend: ModuleType, seed: int, progress: Progress | None
    ) -> tuple[Moments, _Reservoir, _ChunkCache]:
        """One pass: moments, the initialisation sample, checks, and the cache (or None)."""
        names = source.columns
        if not names:  # scikit-learn's wording for the same error
            raise DataError(
                f"X has 0 feature(s) (shape=({source.n_rows or 0}, 0)) while a minimum of 1 is "
                "required: there are no columns to fit."
            )
        moments = Moments.empty(len(names))
        reservoir = _Reservoir(len(names), self.init_sample_size, seed)
        cache = _ChunkCache(
            backend.memory.cache_budget_bytes(self.device_cache_fraction),
            0 if source.in_memory else self.cache_bytes,
            backend,
            source.n_rows,
        )
        if isinstance(source, _dask.DaskSource):
            # A distributed source (gpuvgm._dask): the same pass per partition on its workers,
            # merged there; its partitions stay on the workers for the iterations.
            fn = functools.partial(
                _prepass_part,
                backend=backend,
                names=names,
                null_policy=self.null_policy,
                sample_size=self.init_sample_size,
                seed=seed,
            )
            total = source.map_reduce(fn, self.chunk_rows, progress, "prepass")
            moments, reservoir = total.moments, total.reservoir
            source.persist_on(backend)
        else:
            chunks = _reported(source, self.chunk_rows, progress, "prepass")
            for offset, chunk, host in backend.memory.stage(chunks):
                cache.add(offset, chunk, host)
                moments = moments + _checked_moments(
                    offset, chunk, host, backend, names, self.null_policy
                )
                reservoir.add(offset, chunk, backend)
        n_rows = int(moments.count[0] + moments.n_null[0]) if names else 0
        if n_rows == 0:
            raise DataError("the input is empty: there are no rows to fit.")
        for j, name in enumerate(names):
            if moments.count[j] == 0:
                raise DataError(f"column {name!r} is entirely null: there is nothing to fit.")
            if not (np.isfinite(moments.mean[j]) and np.isfinite(moments.variance[j])):
                # e.g. values near ±1e300: their squares overflow float64, so every variance
                # and lower bound would be inf or NaN.
                raise DataError(
                    f"column {name!r} holds values too large for float64 arithmetic (from "
                    f"{moments.minimum[j]:.6g} to {moments.maximum[j]:.6g}: its mean or variance "
                    "overflows); rescale the column (e.g. divide it by a power of ten)."
                )
            if moments.count[j] < self.n_components:
                raise DataError(
                    f"column {name!r} has {int(moments.count[j])} non-null values, fewer than "
                    f"n_components={self.n_components}."
                )
        logger.debug("iterations over %s read %s", source.describe(), cache.describe())
        return moments, reservoir, cache

    def _initialize(
        self,
        source: Source,
        backend: ModuleType,
        priors: Priors,
        reservoir: _Reservoir,
        moments: Moments,
        seed: int,
        progress: Progress | None,
        stats_scale: np.ndarray | None = None,
    ) -> Posterior:
        n_cols, k = priors.shift.size, self.n_components
        columns = np.arange(n_cols)
        if self.means_init is not None or self.init_params == "kmeans":
            if self.means_init is not None:
                centers = np.asarray(self.means_init, dtype=np.float64)
                if centers.ndim == 1:
                    centers = np.broadcast_to(centers, (n_cols, centers.size))
                if centers.shape != (n_cols, k) or not np.all(np.isfinite(centers)):
                    raise ParameterError(
                        f"The 'means_init' parameter must be finite with shape ({k},) or "
                        f"({n_cols}, {k}). Got shape {centers.shape}."
                    )
                centers = (centers - priors.shift[:, None]) / priors.scale[:, None]
            else:
                centers = np.empty((n_cols, k))
                for j in range(n_cols):
                    xs, ref = _seeding_frame(reservoir.sample(j))
                    c = kmeans(xs, k, np.random.default_rng([seed, j]))
                    centers[j] = (c + ref - priors.shift[j]) / priors.scale[j]
            params = EStepParams(
                columns,
                priors.shift,
                priors.scale,
                centers,
                np.ones_like(centers),
                np.zeros_like(centers),
            )
            fn = _on_chunk(backend.assign_stats, centers, params)
            stats = self._pass(source, backend, fn, progress, "init")
            if stats_scale is not None:
                stats = stats.scaled(stats_scale)
            return _model.m_step(stats, priors)

        stats = Stats.zeros(n_cols, k)
        for j in range(n_cols):
            xs = (reservoir.sample(j) - priors.shift[j]) / priors.scale[j]
            rng = np.random.default_rng([seed, j])
            if self.init_params == "random":
                resp = rng.uniform(size=(xs.size, k))
                resp /= resp.sum(axis=1, keepdims=True)
                factor = moments.count[j] / xs.size  # the sample stands in for all rows
                stats.nk[j] = resp.sum(axis=0) * factor
                stats.s1[j] = (resp.T @ xs) * factor
                stats.s2[j] = (resp.T @ (xs * xs)) * factor
            else:
                if self.init_params == "k-means++":
                    idx = kmeans_plusplus(_seeding_frame(reservoir.sample(j))[0], k, rng)
                else:  # random_from_data
                    idx = rng.choice(xs.size, size=k, replace=False)
                stats.nk[j] = 1.0
                stats.s1[j] = xs[idx]
                stats.s2[j] = xs[idx] ** 2
        return _model.m_step(stats, priors)

    @staticmethod
    def _reduce(parts: Iterator[Stats]) -> Stats:
        total: Stats | None = None
        for part in parts:
            total = part if total is None else total + part
        assert total is not None  # sources always yield at least one chunk after the pre-pass
        return total

    def _pass(
        self,
        source: Source,
        backend: ModuleType,
        fn: Callable[[int, Any], Stats],
        progress: Progress | None,
        phase: str,
    ) -> Stats:
        """``fn(row_offset, chunk)`` summed over every chunk of ``source``: on the workers for a
        Dask source (:meth:`gpuvgm._dask.DaskSource.map_reduce`), else here, chunk by chunk."""
        if isinstance(source, _dask.DaskSource):
            return source.map_reduce(fn, self.chunk_rows, progress, phase)
        chunks = _reported(source, self.chunk_rows, progress, phase)
        return self._reduce(fn(offset, chunk) for offset, chunk, _ in backend.memory.stage(chunks))

    def _iterate(
        self,
        source: Source,
        backend: ModuleType,
        priors: Priors,
        post: Posterior,
        moments: Moments,
        progress: Progress | None,
        stats_scale: np.ndarray | None = None,
    ) -> tuple[Posterior, np.ndarray, np.ndarray, np.ndarray, list[list[float]]]:
        """Variational iterations until each column meets ``tol`` or ``max_iter``.

        ``stats_scale`` (n_columns,) multiplies each column's statistics: a sample standing in
        for all rows (the first stage of a staged fit)."""
        n_cols = priors.shift.size
        active = np.ones(n_cols, dtype=bool)
        converged = np.zeros(n_cols, dtype=bool)
        n_iter = np.zeros(n_cols, dtype=np.int64)
        lower = np.full(n_cols, -np.inf)
        traces: list[list[float]] = [[] for _ in range(n_cols)]
        for it in range(1, self.max_iter + 1):
            cols = np.flatnonzero(active)
            if cols.size == 0:
                break
            sub_priors = priors.select(cols)
            params = _model.estep_params(post.select(cols), sub_priors, cols)
            with annotate(f"iteration {it}"):
                with annotate("estep"):
                    stats = self._pass(
                        source,
                        backend,
                        _on_chunk(backend.estep_stats, params),
                        progress,
                        f"iteration {it}",
                    )
                if stats_scale is not None:
                    stats = stats.scaled(stats_scale[cols])
                with annotate("mstep"):
                    new = _model.m_step(stats, sub_priors)
                    lb = _model.lower_bound(stats.h, new, sub_priors)
            post = post.replace_columns(cols, new)
            change = np.abs(lb - lower[cols])
            if self.tol_scale == "per_row":
                change = change / moments.count[cols]
            done = change < self.tol
            lower[cols] = lb
            n_iter[cols] = it
            for i, j in enumerate(cols):
                traces[j].append(float(lb[i]))
            converged[cols[done]] = True
            active[cols[done]] = False
            logger.debug(
                "iteration %d: %d active columns, lower bound per row %s",
                it,
                cols.size,
                np.array2string(lb / moments.count[cols], precision=6),
            )
        return post, n_iter, converged, lower, traces

    def _set_fitted(
        self,
        priors: Priors,
        post: Posterior,
        moments: Moments | None,
        names: Sequence[str],
        named: bool,
        backend: str,
        seed: int,
    ) -> None:
        self._priors = priors
        self._post = post
        self.means_, self.covariances_ = _model.data_units(post, priors)
        self.precisions_ = 1.0 / self.covariances_
        self.weights_ = _model.mixture_weights(post)
        valid = self.weights_ > self.weight_threshold
        valid[np.arange(valid.shape[0]), np.argmax(self.weights_, axis=1)] = True
        self.valid_components_ = valid
        self.mean_precision_ = post.mean_precision
        self.degrees_of_freedom_ = post.degrees_of_freedom
        self.weight_concentration_ = (post.a, post.b)
        self.n_features_in_ = len(names)
        self._columns = list(names)
        if named:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.backend_ = backend
        self.seed_ = seed
        self.moments_ = moments

    # ------------------------------------------------------------------ transform
    def _params(self) -> EStepParams:
        return _model.estep_params(self._post, self._priors, np.arange(self.n_features_in_))

    def _transform_params(self) -> TransformParams:
        return TransformParams(
            estep=self._params(),
            means=self.means_,
            stds=np.sqrt(self.covariances_),
            valid=self.valid_components_,
            column_keys=np.arange(self.n_features_in_, dtype=np.int64),
            seed=self.seed_,
            sample=self.component_selection == "sample",
            clip=math.inf if self.clip is None else float(self.clip),
        )

    def _chunks(
        self, X: Any, columns: Sequence[Any] | None, extra: Sequence[str] = ()
    ) -> Iterator[tuple[int, np.ndarray, Any]]:
        """Checked transform-time chunks: ``(row_offset, chunk, extra columns or None)``."""
        self._check_is_fitted()
        validate_params(type(self).__name__, self.get_params())
        if columns is None and hasattr(self, "feature_names_in_") and is_path_like(X):
            columns = list(self._columns)  # files hold other columns too: read the fitted ones
        source = make_source(X, columns)
        check_columns_match(
            self._columns, source.columns, source.named and hasattr(self, "feature_names_in_")
        )
        return self._checked(source, extra)

    def _checked(
        self, source: Source, extra: Sequence[str]
    ) -> Iterator[tuple[int, np.ndarray, Any]]:
        names = self._columns
        items = (
            source.chunks_with(self.chunk_rows, extra)
            if extra
            else ((offset, chunk, None) for offset, chunk in source.chunks(self.chunk_rows))
        )
        for offset, chunk, passed in items if source.in_memory else read_ahead(items):
            check_finite(chunk, names, offset)
            if self.null_policy == "error":
                check_no_nulls(chunk, names, offset)
            yield offset, chunk, passed

    def _backend(self) -> ModuleType:
        """The backend for inference: this model's device setting, on this machine."""
        return get_backend(self.device)

    def _encoded_chunks(
        self, X: Any, columns: Sequence[Any] | None, extra: Sequence[str] = ()
    ) -> Iterator[tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], Any]]:
        """``((normalized, component, null, n_clipped), extra columns)`` per chunk, in order."""
        chunks = self._chunks(X, columns, extra)
        backend = self._backend()
        params = self._transform_params()
        passed_along: collections.deque[Any] = collections.deque()

        def pairs() -> Iterator[tuple[int, np.ndarray]]:
            for offset, chunk, passed in chunks:
                passed_along.append(passed)
                yield offset, chunk

        # Host chunks are staged to the device ahead of the kernels (CUDA); outputs come back.
        for offset, chunk, _ in backend.memory.stage(pairs()):
            normalized, component, null, n_clipped = backend.transform(chunk, params, offset)
            outputs = (backend.memory.to_host(a) for a in (normalized, component, null))
            yield (*outputs, n_clipped), passed_along.popleft()

    def transform(self, X: Any, *, columns: Sequence[Any] | None = None) -> Encoded:
        """Mode-specific normalization of every value (DESIGN.md §3).

        Returns
        -------
        Encoded
            ``normalized`` and ``component`` arrays of shape (n_rows, n_columns) and the null mask.
        """
        if _dask.is_dask_collection(X):  # lazy: Dask arrays, one block per partition
            return _dask.transform(self, X, columns)
        t = time.perf_counter()
        parts = [encoded for encoded, _ in self._encoded_chunks(X, columns)]
        c = self.n_features_in_
        if parts:
            normalized = np.concatenate([p[0] for p in parts])
            component = np.concatenate([p[1] for p in parts])
            null = np.concatenate([p[2] for p in parts])
            n_clipped = np.sum([p[3] for p in parts], axis=0)
        else:
            normalized, component = np.empty((0, c)), np.empty((0, c), dtype=np.int32)
            null, n_clipped = np.empty((0, c), dtype=bool), np.zeros(c, dtype=np.int64)
        seconds = time.perf_counter() - t
        logger.info(
            "transform %d rows x %d columns in %.2f s (%.3g rows/s)",
            len(normalized),
            c,
            seconds,
            len(normalized) / max(seconds, 1e-12),
        )
        return Encoded(normalized, component, null, list(self._columns), n_clipped)

    def transform_parquet(
        self,
        source: Any,
        dst: str | os.PathLike,
        *,
        layout: str = "rdt",
        columns: Sequence[Any] | None = None,
        passthrough: Sequence[str] = (),
        row_group_rows: int = 1 << 20,
        rows_per_file: int | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Stream ``source`` (files or in-memory data) through :meth:`transform` into Parquet,
        chunk by chunk, in row order.

        ``dst`` with a Parquet suffix (``.parquet``, ``.pq``, ``.parq``) is one file, encoded
        and written by a writer thread behind the computation. Any other ``dst`` is a directory
        of part files ``part-000000.parquet``, ... of about ``rows_per_file`` rows each (default
        ``row_group_rows``), encoded in parallel on the I/O threads: the faster output for large
        data (read it back as a directory: sorted names are row order). Either way the output
        is written under a temporary name beside ``dst`` and renamed when complete, so an
        interrupted run never leaves a partial output at ``dst``; an existing directory is
        replaced only when it holds nothing but part files.

        Parameters
        ----------
        layout : {"rdt", "compact", "ctgan"}
            Column layout, see :func:`gpuvgm._writers.encoded_table`.
        passthrough : list of str
            Other columns of ``source`` copied unchanged into the output, before the encoded ones
            (Parquet, CSV, Arrow or pandas sources).
        progress : callable, optional
            ``progress("transform", rows)`` after each chunk.

        Returns
        -------
        dict
            ``rows``, ``seconds``, ``rows_per_second`` and ``n_clipped`` per column.
        """
        if layout not in LAYOUTS:
            raise ParameterError(
                f"The 'layout' parameter must be a str among {LAYOUTS}. Got {layout!r} instead."
            )
        t = time.perf_counter()
        n_valid = self.valid_components_.sum(axis=1)
        rows = 0
        n_clipped = np.zeros(self.n_features_in_, dtype=np.int64)
        empty = np.empty((0, self.n_features_in_))
        empty_schema = encoded_table(
            empty, empty.astype(np.int32), empty.astype(bool), self._columns, n_valid, layout
        ).schema
        with parquet_output(dst, empty_schema, row_group_rows, rows_per_file) as write:
            chunks = self._encoded_chunks(source, columns, passthrough)
            for (normalized, component, null, clipped), passed in chunks:
                table = encoded_table(normalized, component, null, self._columns, n_valid, layout)
                if passed is not None:
                    for name in reversed(passed.column_names):
                        table = table.add_column(0, name, passed.column(name))
                write(table)
                rows += len(normalized)
                n_clipped += clipped
                if progress is not None:
                    progress("transform", len(normalized))
        seconds = time.perf_counter() - t
        logger.info(
            "transform_parquet %d rows -> %s (%s layout) in %.2f s (%.3g rows/s)",
            rows,
            dst,
            layout,
            seconds,
            rows / max(seconds, 1e-12),
        )
        return {
            "rows": rows,
            "seconds": seconds,
            "rows_per_second": rows / max(seconds, 1e-12),
            "n_clipped": n_clipped.tolist(),
        }

    def inverse_parquet(
        self,
        src: str | os.PathLike,
        dst: str | os.PathLike,
        *,
        row_group_rows: int = 1 << 20,
        rows_per_file: int | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Decode an encoded Parquet file (or a directory of part files) back to the original
        columns, chunk by chunk.

        The layout is recognised from the column names: ``<col>.normalized`` with
        ``<col>.component`` (``"rdt"``, ``"compact"``) or with ``<col>.component_<i>``
        (``"ctgan"``; the largest entry wins, so a generator's soft outputs decode too, and a row
        of zeros is a null). The output has one float64 column per model column, null where the
        input was. Written as :meth:`transform_parquet` writes (one file, or part files).
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._check_is_fitted()
        t = time.perf_counter()
        paths = _expand_paths(src)  # a file, or a directory of part files in row order
        try:
            available = set(pq.read_schema(paths[0]).names)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{paths[0]}: cannot be read ({type(exc).__name__}: {exc}).") from None
        n_valid = self.valid_components_.sum(axis=1)
        needed: list[str] = []
        onehot: list[list[str] | None] = []
        for j, name in enumerate(self._columns):
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
                    raise DataError(
                        f"{src} has neither {name + '.component'!r} nor {missing[0]!r}."
                    )
                needed += [f"{name}.normalized", *names]
                onehot.append(names)
        rows = 0
        empty_schema = pa.schema([(c, pa.float64()) for c in self._columns])

        def batches() -> Iterator[pa.RecordBatch]:
            for path in paths:
                try:
                    with pq.ParquetFile(path, pre_buffer=False) as f:
                        yield from f.iter_batches(batch_size=self.chunk_rows, columns=needed)
                except (pa.ArrowException, OSError) as exc:
                    raise DataError(
                        f"{path}: cannot be read ({type(exc).__name__}: {exc})."
                    ) from None

        with parquet_output(dst, empty_schema, row_group_rows, rows_per_file) as write:
            for batch in read_ahead(batches()):
                n = batch.num_rows
                alpha = np.empty((n, self.n_features_in_))
                comp = np.empty((n, self.n_features_in_), dtype=np.int64)
                for j, name in enumerate(self._columns):
                    a = batch.column(f"{name}.normalized").cast(pa.float64())
                    alpha[:, j] = a.to_numpy(zero_copy_only=False)
                    code_columns = onehot[j]
                    if code_columns is None:
                        c = batch.column(f"{name}.component")
                        comp[:, j] = _fill_null(c, -1)
                    else:
                        codes = np.column_stack(
                            [batch.column(c).to_numpy(zero_copy_only=False) for c in code_columns]
                        )
                        comp[:, j] = np.argmax(codes, axis=1)
                        alpha[~(codes > 0).any(axis=1), j] = np.nan
                alpha[comp < 0] = np.nan
                x = self.inverse_transform((alpha, comp))
                table = pa.table(
                    {
                        c: pa.array(x[:, j], mask=np.isnan(x[:, j]))
                        for j, c in enumerate(self._columns)
                    }
                )
                write(table)
                rows += n
                if progress is not None:
                    progress("inverse", n)
        seconds = time.perf_counter() - t
        logger.info(
            "inverse_parquet %d rows -> %s in %.2f s (%.3g rows/s)",
            rows,
            dst,
            seconds,
            rows / max(seconds, 1e-12),
        )
        return {"rows": rows, "seconds": seconds, "rows_per_second": rows / max(seconds, 1e-12)}

    def fit_transform(
        self, X: Any, y: Any = None, *, columns: Sequence[Any] | None = None
    ) -> Encoded:
        """``fit(X).transform(X)``."""
        return self.fit(X, columns=columns).transform(X, columns=columns)

    def inverse_transform(self, encoded: Encoded | tuple[Any, Any]) -> np.ndarray:
        """Decode ``x = 4 std_c alpha + mean_c``; array of shape (n_rows, n_columns), float64.

        Parameters
        ----------
        encoded : Encoded or (normalized, component)
            What :meth:`transform` returned, or the two arrays of shape (n_rows, n_columns).
            Rows whose ``normalized`` is NaN (nulls) decode to NaN. With clipping on (the
            default), ``|normalized|`` may not exceed ``max(1, clip)``: CTGAN's generator
            outputs lie in [-1, 1].
        """
        self._check_is_fitted()
        pair = (encoded.normalized, encoded.component) if isinstance(encoded, Encoded) else encoded
        if isinstance(pair, tuple) and len(pair) == 2 and _dask.is_dask_collection(pair[0]):
            return _dask.inverse(self, *pair)  # lazy: a Dask array blocked as normalized
        normalized, component = check_encoded(
            pair,
            self._columns,
            self.valid_components_.sum(axis=1),
            alpha_bound=math.inf if self.clip is None else max(1.0, float(self.clip)),
        )
        return self._backend().inverse(normalized, component, self._transform_params())

    def predict_proba(self, X: Any, *, columns: Sequence[Any] | None = None) -> np.ndarray:
        """Posterior over all K components, shape (n_rows, n_columns, n_components); NaN rows
        for nulls."""
        chunks = self._chunks(X, columns)
        backend = self._backend()
        params = self._params()
        parts = [np.exp(backend.log_resp(chunk, params)) for _, chunk, _ in chunks]
        if not parts:
            return np.empty((0, self.n_features_in_, self.n_components))
        return np.concatenate(parts)

    def predict(self, X: Any, *, columns: Sequence[Any] | None = None) -> np.ndarray:
        """Most probable component among all K, shape (n_rows, n_columns), int64; -1 for nulls."""
        proba = self.predict_proba(X, columns=columns)
        null = np.isnan(proba[..., 0])
        label = np.argmax(np.nan_to_num(proba, nan=-1.0), axis=2)
        label[null] = -1
        return label

    # ------------------------------------------------------------------ diagnostics
    def plot(self, X: Any, path: str | os.PathLike | None = None, **kw: Any) -> Any:
        """Per column, the histogram of a uniform sample of ``X`` with each component's weighted
        density (valid and pruned distinguished), the mixture and the clipped fraction.

        Needs matplotlib (``pip install 'gpuvgm[plot]'``). ``X`` is anything :meth:`transform`
        accepts, read in one streaming pass; ``path`` (optional) is where the image is written.
        Options (``columns``, ``sample_rows``, ``max_rows``, ``bins``, ``dpi``...) are those of
        :func:`gpuvgm._plot.plot_model`.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from ._plot import plot_model

        return plot_model(self, X, path, **kw)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to ``path`` (see :func:`gpuvgm.load` for the format).

        The file is written under a temporary name and renamed, so an interrupted save leaves
        any previous file at ``path`` intact.
        """
        from ._persistence import save_model

        self._check_is_fitted()
        save_model(self, path)

    # ------------------------------------------------------------------ interoperability
    @classmethod
    def from_sklearn(
        cls, estimators: Any, columns: Sequence[str] | None = None, **params: Any
    ) -> VGM:
        """A fitted :class:`VGM` from fitted scikit-learn ``BayesianGaussianMixture`` models.

        Parameters
        ----------
        estimators : BayesianGaussianMixture or list of them
            One per column, fitted on one feature with ``covariance_type="full"`` and
            ``weight_concentration_prior_type="dirichlet_process"``.
        columns : list of str, optional
            Column names (default ``"0"``, ``"1"``, ...).
        **params
            Other :class:`VGM` parameters (``weight_threshold``, ``component_selection``...).
        """
        ests = list(estimators) if isinstance(estimators, (list, tuple)) else [estimators]
        first = ests[0]
        for e in ests:
            if (
                getattr(e, "covariance_type", None) != "full"
                or getattr(e, "weight_concentration_prior_type", None) != "dirichlet_process"
                or not hasattr(e, "means_")
                or e.means_.shape[1] != 1
                or e.n_components != first.n_components
            ):
                raise ParameterError(
                    "from_sklearn needs fitted BayesianGaussianMixture models with one feature, "
                    "covariance_type='full', weight_concentration_prior_type='dirichlet_process' "
                    "and the same n_components."
                )
        model = cls(
            n_components=first.n_components,
            weight_concentration_prior=first.weight_concentration_prior_,
            reg_covar=first.reg_covar,
            **params,
        )
        mean0 = np.array([float(e.mean_prior_[0]) for e in ests])
        cov0 = np.array([float(np.ravel(e.covariance_prior_)[0]) for e in ests])
        shift, scale = mean0, np.where(cov0 > 0, np.sqrt(cov0), 1.0)
        priors = Priors.from_data_units(
            shift=shift,
            scale=scale,
            weight_concentration=first.weight_concentration_prior_,
            mean_precision=first.mean_precision_prior_,
            degrees_of_freedom=first.degrees_of_freedom_prior_,
            mean=mean0,
            covariance=cov0,
            reg_covar=first.reg_covar,
        )
        means, covs = _model.from_data_units(
            np.stack([e.means_[:, 0] for e in ests]),
            np.stack([e.covariances_[:, 0, 0] for e in ests]),
            priors,
        )
        post = Posterior(
            a=np.stack([e.weight_concentration_[0] for e in ests]),
            b=np.stack([e.weight_concentration_[1] for e in ests]),
            mean_precision=np.stack([e.mean_precision_ for e in ests]),
            means=means,
            degrees_of_freedom=np.stack([e.degrees_of_freedom_ for e in ests]),
            covariances=covs,
        )
        names = list(columns) if columns is not None else [str(i) for i in range(len(ests))]
        seed = _seed_from(model.random_state)
        model._set_fitted(priors, post, None, names, columns is not None, "numpy", seed)
        model.n_iter_ = np.array([e.n_iter_ for e in ests])
        model.converged_ = np.array([e.converged_ for e in ests])
        model.lower_bound_ = np.array([e.lower_bound_ for e in ests])
        return model
