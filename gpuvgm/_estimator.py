"""The estimator: :class:`VGM`, a per-column Dirichlet-process variational Gaussian mixture with
mode-specific normalization, fitted by streaming passes over chunks.

``VGM`` is the scikit-learn face: it stores its parameters, checks them, and delegates to values
and functions below it (:mod:`gpuvgm._engine` fits, :class:`gpuvgm._model.FittedMixture` is the
fitted state, :mod:`gpuvgm._layouts` and :mod:`gpuvgm._persistence` read and write it).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from . import _engine, _model, _schedule
from ._backends import get_backend
from ._backends._api import Backend
from ._base import Estimator
from ._dask_source import lazy_inverse
from ._errors import ParameterError
from ._inputs import make_source
from ._layouts import (
    LAYOUTS,
    RDT_LAYOUTS,
    decode_batches,
    decoded_table,
    encoded_schema,
    write_encoded,
)
from ._model import Encoded, EStepParams, FittedMixture, TransformParams
from ._parallel import resolve_n_jobs, threads
from ._persistence import read_model, write_model
from ._progress import progress_for
from ._sources import Progress, Source, is_dask_collection, is_path_like
from ._validation import check_columns_match, check_encoded, resolve_seed, validate_params
from ._writers import parquet_output

logger = logging.getLogger("gpuvgm")

F = TypeVar("F", bound=Callable[..., Any])


def _within_n_jobs(method: F) -> F:
    """Run ``method`` on the model's ``n_jobs`` threads (:func:`gpuvgm._parallel.threads`)."""

    @functools.wraps(method)
    def run(self: VGM, *args: Any, **kwargs: Any) -> Any:
        validate_params(type(self).__name__, {"n_jobs": self.n_jobs})
        with threads(resolve_n_jobs(self.n_jobs)):
            return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]


class VGM(Estimator):
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
    clip : float or None, default=None
        None (the default) keeps the exact ``alpha = (x - mean_c) / (4 std_c)``, so
        ``inverse_transform`` returns every value (float64 rounding aside: at most 1e-12 std).
        A float clips ``|alpha|`` to it on transform, as CTGAN and RDT do with 0.99 (their
        generators' ``tanh`` outputs lie in [-1, 1]); the values of a clipped row then decode
        to at most ``mean_c +- 4 clip std_c`` (``Encoded.n_clipped`` counts them). The CTGAN and
        RDT integrations keep their 0.99.
    null_policy : {"ignore", "error"}, default="ignore"
        ``"ignore"``: nulls (NaN, missing) are left out of the fit and carried through
        transform and inverse as a mask. ``"error"``: any null raises :class:`DataError`.
    chunk_rows : int, default=1048576
        Rows per chunk read from the source; memory is O(chunk_rows x n_components).
    cache_bytes : int or None, default=None
        Data read from files (or converted from pandas/Arrow) is kept in host memory for the
        iterations when it takes at most this many bytes; otherwise every iteration streams it
        again from the source, so memory stays bounded (flat in the rows). None: an eighth of
        the memory available when the fit starts, and past that a temporary file (raw bytes,
        at most half the free space of the temporary directory, deleted when the fit ends)
        read back through the operating system's page cache, so the data is decoded once and
        the process's resident memory stays small (``fit_report_["cache_budget"]`` and
        ``["cache"]`` say what was chosen, why, and where the data went). 0 always streams.
    device_cache_fraction : float, default=0.5
        On a GPU, the data is kept in device memory for the iterations when it takes at most
        this fraction of the free device memory (gathered into one array when the source knows
        its row count: one kernel launch per pass); what does not fit there goes to the host
        cache (``cache_bytes``), and past both every pass reads the source again, through
        pinned buffers copied asynchronously ahead of the kernels. 0 keeps nothing on the
        device. ``fit_report_["cache"]`` says where the iterations read.
    schedule : {"auto", "sklearn", "staged"}, default="auto"
        How the fit spends its passes over the data. ``"sklearn"``: scikit-learn's schedule
        (k-means on the initialisation sample, every row assigned to its nearest center, then
        full-data iterations until ``tol``). ``"staged"``: initialise (``n_init`` times) on a
        uniform sample of ``n_rows / 32`` values per column (at least
        ``min(init_sample_size, n_rows / 4)``, at most 10**6) whose statistics are scaled to
        all rows; iterate there (within 16 full passes' worth of rows, at least 300 and at
        most 3000 passes over the sample) to a tolerance 10x tighter than ``tol`` with SQUAREM
        acceleration (Varadhan & Roland 2008; an extrapolation is kept only when it raises the
        lower bound) in rounds of 60 passes, each followed by merge moves (close neighbouring
        components merged when the lower bound rises: a mode split between two components
        otherwise merges at a crawl over ~100 full passes); keep the best initialisation; then
        polish with full passes: safeguarded SQUAREM cycles from the sample's statistics (the
        first pass is the first cycle's first step) until the plain iteration of a cycle
        gains less than ``tol`` per row (scikit-learn's test) or less than 1 nat in all
        (what the rows can resolve: a likelihood ratio below e; looser than ``tol`` per row
        below 10**7 rows only). The lower bound never
        decreases from one full pass to the next; ``fit_report_["staged"]`` reports the
        sample stage. ``"auto"``: ``"staged"`` from 200 000 rows on with
        ``tol_scale="per_row"``, else ``"sklearn"`` (so small fits are
        scikit-learn's, bit for bit). ``fit_report_["schedule"]`` says which ran.
    n_init : int, default=1
        Initialisations (as scikit-learn's ``n_init``; the k-means seed differs). Staged: they
        run on the sample, and the best sample lower bound continues to the full data, so
        restarts cost sample passes, not full ones. ``"sklearn"``: each is a whole fit, and
        the best lower bound is kept.
    staged : bool, default=False
        Same as ``schedule="staged"`` (kept for compatibility).
    device : {"auto", "cpu", "numpy", "cuda"}, default="auto"
        Where the passes run: ``"cpu"`` the compiled CPU backend (Numba), ``"numpy"`` the NumPy
        reference backend, ``"cuda"`` the GPU. ``"auto"`` uses CUDA when CuPy and a GPU are
        available, else ``"cpu"``.
    compute_dtype : {None, "float32", "float64"}, default=None
        Precision of the E-step's per-value arithmetic (its sums are float64 either way).
        None: the backend's default, float64 on the CPU (``"cpu"``, ``"numpy"``), the data's
        dtype on CUDA. float64 is the CPU default because it keeps the 1e-8 scikit-learn parity
        and fits a float32 array to the same model as its float64 copy; ``"float32"`` (1e-8 to
        3e-7 relative on the statistics, below the rounding float32 data already carries;
        twice the SIMD lanes) made the compiled E-step 1.8-2x faster than float64 on an
        AVX-512 VM. The NumPy reference backend computes in float64 only (``"float32"`` with
        ``device="numpy"`` is a :class:`ParameterError`). The initialisation, the transform
        and ``predict_proba`` compute in float64 on the CPU.
    n_jobs : int or None, default=None
        Threads of the CPU passes (the compiled kernels, the NumPy backend's blocks, the file
        decoding and encoding threads), scikit-learn's convention: None, ``GPUVGM_NUM_THREADS``
        if set, else one per core (at most 16); a positive int, that many; -1, every core; -2,
        all but one. BLAS is held to one thread meanwhile. The results do not depend on it
        (fixed blocks, reduced in order). ``fit_report_["cpu"]["threads"]`` records it.
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
        ``"numba"`` (compiled CPU), ``"numpy"`` or ``"cupy"``.
    seed_ : int
        The seed used (drawn when ``random_state`` is None), so transforms are reproducible.
    fit_report_ : dict
        Rows, nulls, seconds per phase, rows/s, passes, iterations and convergence per column;
        ``"cpu"``: the fit's process CPU seconds, wall seconds, the cores it may use, its CPU
        utilisation (CPU seconds / wall seconds / cores) and the threads it ran on (``n_jobs``);
        ``"compute_dtype"``: the E-step's precision.
    """

    # Set only when there is one (hasattr tells): names from the data, traces, fit report.
    feature_names_in_: np.ndarray
    lower_bounds_: list[np.ndarray]
    fit_report_: dict[str, Any]

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
        clip: float | None = None,
        null_policy: str = "ignore",
        chunk_rows: int = 1 << 20,
        cache_bytes: int | None = None,
        device_cache_fraction: float = 0.5,
        staged: bool = False,
        schedule: str = "auto",
        n_init: int = 1,
        device: str = "auto",
        compute_dtype: str | None = None,
        n_jobs: int | None = None,
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
        self.schedule = schedule
        self.n_init = n_init
        self.device = device
        self.compute_dtype = compute_dtype
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    @_within_n_jobs
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        columns: Sequence[Any] | None = None,
        progress: Progress | bool | None = None,
    ) -> VGM:
        """Fit a mixture to every column of ``X`` in shared passes over the data.

        Parameters
        ----------
        X : array of shape (n_rows,) or (n_rows, n_columns), DataFrame, pyarrow Table, or path(s)
            to Parquet/CSV files (streamed chunk by chunk).
        y : ignored
        columns : list, optional
            Columns of ``X`` to fit (names, or positions for arrays).
        progress : callable or bool, optional
            True draws progress bars (tqdm, on stderr): the pre-pass, the initialisation and
            the iterations with the lower bound per row. A callable is called as
            ``progress(phase, rows)`` after each chunk of each pass (``phase`` is
            ``"prepass"``, ``"init"``, ``"iteration N"``, or ``"sample init"`` and ``"sample
            iteration N"`` on the staged schedule's sample) and, if it has a ``pass_done``
            method, ``progress.pass_done(phase, columns, lower_bound_per_row)`` after each
            iteration (:class:`gpuvgm._progress.ProgressBars` draws both).
        """
        validate_params(type(self).__name__, self.get_params())
        if self.init_sample_size < self.n_components:
            raise ParameterError(
                f"The 'init_sample_size' parameter of {type(self).__name__} must be at least "
                f"n_components={self.n_components}. Got {self.init_sample_size} instead."
            )
        source = make_source(X, columns)
        backend = get_backend(self.device)
        if self.compute_dtype == "float32" and backend.NAME == "numpy":
            raise ParameterError(
                f"The 'compute_dtype' parameter of {type(self).__name__} is 'float32', but the "
                "NumPy reference backend (device='numpy') computes in float64 only; use "
                "device='cpu' for float32 compute, or compute_dtype=None."
            )
        config = _engine.FitConfig.from_params(self.get_params(), resolve_seed(self.random_state))
        try:
            with progress_for(progress, source.n_rows, self.max_iter) as report:
                result = _schedule.fit_mixture(source, backend, config, report)
        finally:
            # The pools' blocks go back to the device after every fit, failed or not; what they
            # held is in fit_report_["memory"].
            backend.memory.release_memory()
        return self._adopt(result.fitted)

    def _adopt(self, fitted: FittedMixture) -> VGM:
        """Take ``fitted`` as this model's fitted state and set the fitted attributes from it."""
        self._fitted = fitted
        self.means_, self.covariances_ = fitted.means, fitted.covariances
        self.precisions_, self.weights_ = fitted.precisions, fitted.weights
        self.valid_components_ = fitted.valid
        post = fitted.posterior
        self.mean_precision_ = post.mean_precision
        self.degrees_of_freedom_ = post.degrees_of_freedom
        self.weight_concentration_ = (post.a, post.b)
        self.n_features_in_ = fitted.n_columns
        self.backend_, self.seed_, self.moments_ = fitted.backend, fitted.seed, fitted.moments
        history = fitted.history
        self.n_iter_, self.converged_ = history.n_iter, history.converged
        self.lower_bound_ = history.lower_bound
        optional = {
            "feature_names_in_": np.asarray(fitted.columns, dtype=object) if fitted.named else None,
            "lower_bounds_": history.lower_bounds,
            "fit_report_": history.report,
        }
        for name, value in optional.items():
            if value is not None:
                setattr(self, name, value)
            elif hasattr(self, name):
                delattr(self, name)
        return self

    # ------------------------------------------------------------------ transform
    @property
    def _columns(self) -> list[str]:
        return list(self._fitted.columns)

    def _params(self) -> EStepParams:
        return self._fitted.estep_params()

    def _transform_params(self) -> TransformParams:
        return _model.transform_params(self._fitted, self.component_selection, self.clip)

    def _backend(self) -> Backend:
        """The backend for inference: this model's device setting, on this machine."""
        return get_backend(self.device)

    def _source(self, X: Any, columns: Sequence[Any] | None, frames: bool = False) -> Source:
        """``X`` as a source of the fitted columns, checked against them; files (and frames
        when ``frames``) hold other columns too, so of a named model's columns only those."""
        self._check_is_fitted()
        validate_params(type(self).__name__, self.get_params())
        other = is_path_like(X) or (frames and hasattr(X, "columns"))
        if columns is None and hasattr(self, "feature_names_in_") and other:
            columns = self._columns
        source = make_source(X, columns)
        named = source.named and hasattr(self, "feature_names_in_")
        check_columns_match(self._columns, source.columns, named)
        return source

    def _encoded_chunks(
        self,
        source: Source,
        extra: Sequence[str] = (),
        null_fill: np.ndarray | None = None,
    ) -> Iterator[tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], Any]]:
        """``((normalized, component, null, n_clipped), extra columns)`` per chunk of
        ``source`` (from :meth:`_source`), in order.

        ``null_fill`` (n_columns,): encode a null as this value (RDT's layouts); ``null`` still
        marks the rows that were null."""
        chunks = _engine.checked_chunks(source, extra, self.chunk_rows, self.null_policy)
        backend, params = self._backend(), self._transform_params()
        if null_fill is None:
            return _engine.encode_chunks(chunks, backend, params)
        return _engine.encode_chunks_filled(chunks, backend, params, null_fill)

    def _rdt_null_layout(self) -> tuple[np.ndarray, list[bool]]:
        """RDT's null handling per column: the fill value (the mean of the values seen in fit,
        0 for a column that was all null, as RDT's ``NullTransformer``) and whether RDT adds an
        ``is_null`` column (``from_column``: only for a column that had nulls in fit). A mixture
        from scikit-learn saw no data here: its prior mean (scikit-learn's data mean) fills, and
        every column gets ``is_null``."""
        moments = self.moments_
        if moments is None:
            return self._fitted.priors.shift.copy(), [True] * len(self._columns)
        fill = np.where(moments.count > 0, moments.mean, 0.0)
        return fill, [bool(n > 0) for n in moments.n_null]

    @_within_n_jobs
    def transform(self, X: Any, *, columns: Sequence[Any] | None = None) -> Encoded:
        """Mode-specific normalization of every value (DESIGN.md §3).

        Returns
        -------
        Encoded
            ``normalized`` and ``component`` arrays of shape (n_rows, n_columns) and the null mask
            (Dask arrays, computed lazily, for a Dask collection).
        """
        c = self.n_features_in_ if hasattr(self, "n_features_in_") else 0
        source = self._source(X, columns) if is_dask_collection(X) else None
        if source is not None and source.lazy:  # one block per partition
            backend = _engine.module_name(self._backend())
            params = self._transform_params()
            fn = _engine.TransformChunk(backend, params, self._columns, self.null_policy)
            outputs = [(np.float64, c), (np.int32, c), (np.bool_, c), (np.int64, -c)]
            normalized, component, null, n_clipped = source.map_chunks(fn, outputs)
            return Encoded(normalized, component, null, self._columns, n_clipped)
        t = time.perf_counter()
        parts = [encoded for encoded, _ in self._encoded_chunks(self._source(X, columns))]
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
        return Encoded(normalized, component, null, self._columns, n_clipped)

    @_within_n_jobs
    def transform_parquet(
        self,
        source: Any,
        dst: str | os.PathLike,
        *,
        layout: str = "full",
        columns: Sequence[Any] | None = None,
        passthrough: Sequence[str] = (),
        row_group_rows: int = 1 << 20,
        rows_per_file: int | None = None,
        progress: Progress | bool | None = None,
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
        layout : {"full", "rdt", "rdt_random", "compact", "ctgan"}, default="full"
            Column layout (README, "Layouts"; :func:`gpuvgm._layouts.encode`). ``"full"``:
            float64 ``normalized`` (null for a null), int32 ``component`` (-1), bool
            ``is_null``. ``"rdt"``: exactly what RDT's ``ClusterBasedNormalizer`` with
            ``missing_value_generation="from_column"`` returns (float64 columns, a null encoded
            as the column mean, float64 ``is_null`` for columns that had nulls in fit);
            ``"rdt_random"``: the same without ``is_null`` (RDT's default generation).
        passthrough : list of str
            Other columns of ``source`` copied unchanged into the output, before the encoded ones
            (Parquet, CSV, Arrow or pandas sources).
        progress : callable or bool, optional
            ``progress("transform", rows)`` after each chunk; True draws a progress bar.

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
        fill, null_column = None, None
        if layout in RDT_LAYOUTS:
            fill, null_column = self._rdt_null_layout()
        src = self._source(source, columns)
        chunks = self._encoded_chunks(src, passthrough, null_fill=fill)
        schema = encoded_schema(self._columns, n_valid, layout, null_column)
        with (
            progress_for(progress, src.n_rows) as report,
            parquet_output(dst, schema, row_group_rows, rows_per_file, inputs=source) as write,
        ):
            rows, n_clipped = write_encoded(
                chunks, write, self._columns, n_valid, layout, report, null_column
            )
        info = _throughput("transform_parquet", rows, t, f"{dst} ({layout} layout)")
        return {**info, "n_clipped": n_clipped.tolist()}

    @_within_n_jobs
    def inverse_parquet(
        self,
        src: str | os.PathLike,
        dst: str | os.PathLike,
        *,
        row_group_rows: int = 1 << 20,
        rows_per_file: int | None = None,
        progress: Progress | bool | None = None,
    ) -> dict[str, Any]:
        """Decode an encoded Parquet file (or a directory of part files) back to the original
        columns, chunk by chunk.

        The layout is recognised from the column names (:func:`gpuvgm._layouts.decode_batches`).
        The output has one float64 column per model column, null where the input was. Written as
        :meth:`transform_parquet` writes (one file, or part files). ``progress``: as
        :meth:`transform_parquet`'s, with the phase ``"inverse"``.
        """
        self._check_is_fitted()
        t = time.perf_counter()
        n_valid = self.valid_components_.sum(axis=1)
        batches = decode_batches(src, self._columns, n_valid, self.chunk_rows)
        schema = decoded_table(self._columns).schema
        rows = 0
        with (
            progress_for(progress, None) as report,
            parquet_output(dst, schema, row_group_rows, rows_per_file, inputs=src) as write,
        ):
            for alpha, comp in batches:
                write(decoded_table(self._columns, self.inverse_transform((alpha, comp))))
                rows += len(alpha)
                if report is not None:
                    report("inverse", len(alpha))
        return _throughput("inverse_parquet", rows, t, str(dst))

    def fit_transform(
        self, X: Any, y: Any = None, *, columns: Sequence[Any] | None = None
    ) -> Encoded:
        """``fit(X).transform(X)``."""
        return self.fit(X, columns=columns).transform(X, columns=columns)

    @_within_n_jobs
    def inverse_transform(self, encoded: Encoded | tuple[Any, Any]) -> np.ndarray:
        """Decode ``x = 4 std_c alpha + mean_c``; array of shape (n_rows, n_columns), float64.

        Parameters
        ----------
        encoded : Encoded or (normalized, component)
            What :meth:`transform` returned, or the two arrays of shape (n_rows, n_columns)
            (Dask arrays give a Dask array, blocked as ``normalized``). Rows whose
            ``normalized`` is NaN (nulls) decode to NaN. With clipping on (``clip`` a float),
            ``|normalized|`` may not exceed ``max(1, clip)``: CTGAN's generator outputs lie in
            [-1, 1]; with ``clip=None`` (the default) any finite value decodes.
        """
        self._check_is_fitted()
        pair = (encoded.normalized, encoded.component) if isinstance(encoded, Encoded) else encoded
        bound = math.inf if self.clip is None else max(1.0, float(self.clip))
        params = self._transform_params()
        if isinstance(pair, tuple) and len(pair) == 2 and is_dask_collection(pair[0]):
            name = _engine.module_name(self._backend())
            fn = _engine.InverseChunk(name, params, self._columns, bound)
            return lazy_inverse(pair[0], pair[1], fn)
        normalized, component = check_encoded(pair, self._columns, params.n_valid, bound)
        return self._backend().inverse(normalized, component, params)

    @_within_n_jobs
    def predict_proba(self, X: Any, *, columns: Sequence[Any] | None = None) -> np.ndarray:
        """Posterior over all K components, shape (n_rows, n_columns, n_components); NaN rows
        for nulls."""
        source = self._source(X, columns)
        chunks = _engine.checked_chunks(source, (), self.chunk_rows, self.null_policy)
        backend, params = self._backend(), self._params()
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
        """Per column, the histogram of a uniform sample of ``X`` with each valid component's
        weighted density labelled with its code (the value :meth:`transform` writes in
        ``component``; pruned components dashed, without a code), the mixture, and the values
        the transform clips (red; their share in the title).

        The x axis spans every value read, min to max: the 0.1 %-99.9 % quantile range at full
        scale, long tails compressed into grey bands. ``log=True`` draws the density on a log
        scale. Needs matplotlib (``pip install 'gpuvgm[plot]'``). ``X`` is anything
        :meth:`transform` accepts, read in one streaming pass; ``path`` (optional) is where the
        image is written (atomically). Options (``columns``, ``sample_rows``, ``max_rows``,
        ``bins``, ``quantile_range``, ``log``, ``dpi``...) are those of
        :func:`gpuvgm._plot.plot_mixture`.

        Returns
        -------
        matplotlib.figure.Figure
        """
        return plot_model(self, X, path, **kw)

    def report(self, X: Any, path: str | os.PathLike, **kw: Any) -> list[dict[str, Any]]:
        """Write one self-contained HTML page describing this model on the table ``X``.

        A summary table (per column: rows, nulls, valid components and their weights by code,
        iterations, convergence, lower bound, clipped share, and the round-trip error
        ``max |x - inverse(transform(x))| / std`` over every row, from one streaming pass) and
        each column's plot (as :meth:`plot`, with its components' table), inline: no external
        file, no script. Written under a temporary name and renamed; ``path`` may not be one
        of the inputs, nor replace a file that is not a report unless ``overwrite=True``.

        Needs matplotlib (``pip install 'gpuvgm[plot]'``). Options (``columns``,
        ``sample_rows``, ``max_rows``, ``log``, ``dpi``, ``overwrite``...) are those of
        :func:`gpuvgm._report.write_report`.

        Returns
        -------
        list of dict
            Per column, the summary row (``rows``, ``nulls``, ``weights``, ``round_trip``...).
        """
        return report_model(self, X, path, **kw)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the fitted model to ``path`` (see :func:`gpuvgm.load` for the format).

        The file is written under a temporary name and renamed, so an interrupted save leaves
        any previous file at ``path`` intact. An existing file is replaced only when it is a
        gpuvgm model, or with ``overwrite=True``; parameters changed by ``set_params`` since the
        fit (``n_components``, ``weight_threshold``) raise :class:`ParameterError`: refit first.
        """
        self._check_is_fitted()
        write_model(self.get_params(), self._fitted, path, overwrite=overwrite)

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
            ``clip`` defaults to RDT's 0.99 here, so a mixture taken from an RDT or CTGAN fit
            transforms as they do; pass ``clip=None`` for the exact round trip.
        """
        ests = _model.sklearn_mixtures(estimators)
        first = ests[0]
        model = cls(
            n_components=first.n_components,
            weight_concentration_prior=first.weight_concentration_prior_,
            reg_covar=first.reg_covar,
            **{"clip": _model.RDT_CLIP, **params},
        )
        seed = resolve_seed(model.random_state)
        fitted = _model.fitted_from_sklearn(ests, columns, seed, model.weight_threshold)
        return model._adopt(fitted)


def _throughput(what: str, rows: int, t: float, dst: str) -> dict[str, Any]:
    """``rows``, ``seconds`` and ``rows_per_second`` of a file-to-file run started at ``t``."""
    seconds = time.perf_counter() - t
    rate = rows / max(seconds, 1e-12)
    logger.info("%s %d rows -> %s in %.2f s (%.3g rows/s)", what, rows, dst, seconds, rate)
    return {"rows": rows, "seconds": seconds, "rows_per_second": rate}


def load(path: str | os.PathLike, *, device: str | None = None) -> VGM:
    """Load a model written by :meth:`VGM.save`.

    Parameters
    ----------
    path : str or path-like
        A gpuvgm model file (format in :mod:`gpuvgm._persistence`).
    device : {"auto", "cpu", "numpy", "cuda"} or None, default=None
        Overrides the saved ``device`` parameter, e.g. ``"cpu"`` to use a model fitted with
        ``device="cuda"`` on a machine without a GPU. Transforms do not depend on the device.

    Returns
    -------
    VGM
        The fitted model; it transforms bit-identically to the one that was saved.

    Raises
    ------
    ModelFileError
        The file is missing or unreadable, is not a gpuvgm model file, is truncated or
        corrupted (invalid JSON, checksum mismatch, malformed content), or has a newer format
        version than this gpuvgm reads.
    """
    params, fitted = read_model(path, device=device, complete=lambda p: VGM(**p).get_params())
    return VGM(**params)._adopt(fitted)


def plot_model(model: VGM, X: Any, path: str | os.PathLike | None = None, **kw: Any) -> Any:
    """:func:`gpuvgm._plot.plot_mixture` of a fitted model on ``X`` (what it transforms)."""
    from ._plot import plot_mixture

    source = model._source(X, None, frames=True)
    fitted, backend, params = model._fitted, model._backend(), model._transform_params()
    return plot_mixture(
        fitted, source, backend, path, params=params, chunk_rows=model.chunk_rows, **kw
    )


def report_model(model: VGM, X: Any, path: str | os.PathLike, **kw: Any) -> list[dict[str, Any]]:
    """:func:`gpuvgm._report.write_report` of a fitted model on ``X`` (what it transforms)."""
    from ._report import write_report

    source = model._source(X, None, frames=True)
    params = model.get_params()
    describe = {
        "title": kw.pop("title", "gpuvgm report"),
        "data": _describe(X),
        "model": (
            f"n_components={params['n_components']}, weight_threshold="
            f"{params['weight_threshold']}, component_selection={params['component_selection']!r}"
            f", clip={params['clip']}, seed={model.seed_}, fitted on {model.backend_}"
        ),
        **kw.pop("describe", {}),
    }
    return write_report(
        model._fitted,
        source,
        model._backend(),
        path,
        params=model._transform_params(),
        chunk_rows=model.chunk_rows,
        null_policy=model.null_policy,
        describe=describe,
        inputs=X if is_path_like(X) else None,
        **kw,
    )


def _describe(X: Any) -> str:
    """A short description of the data ``X``, for the report's header."""
    if is_path_like(X):
        paths = [X] if isinstance(X, (str, os.PathLike)) else list(X)
        shown = ", ".join(os.fspath(p) for p in paths[:3])
        return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    shape = getattr(X, "shape", None)
    return f"{type(X).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")


def sample_columns(model: VGM, X: Any, *, sample_rows: int, max_rows: int | None) -> Any:
    """:func:`gpuvgm._plot.sample_columns` of a fitted model on ``X``: a
    :class:`gpuvgm._plot.ColumnData`."""
    from ._plot import sample_columns as sample

    source = model._source(X, None, frames=True)
    rows = model.chunk_rows
    return sample(
        model._fitted, source, sample_rows=sample_rows, max_rows=max_rows, chunk_rows=rows
    )
