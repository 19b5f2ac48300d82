"""The pieces of a fit, as functions of a source, a backend and a configuration: the pre-pass,
the priors, the passes, the initialisation, the variational iterations (one loop, as
scikit-learn's ``BaseMixture.fit_predict``), the warnings and the fit report; which of them a fit
runs, in which order, is :mod:`gpuvgm._schedule`'s. Also the chunk-by-chunk transform, and the
picklable per-partition functions of the lazy (Dask) one.

The mathematics is :mod:`gpuvgm._model`'s; the passes are ``source.map_reduce`` over the
backend's ``estep_stats`` (or ``assign_stats``), so a distributed source runs them where its data
is and nothing here depends on the kind of source.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import importlib
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from . import _model
from ._backends._api import Backend
from ._cache import _ChunkCache, host_cache_budget, spill_budget
from ._errors import ConvergenceWarning, DataError, ParameterError
from ._kmeans import kmeans, kmeans_plusplus
from ._model import (
    EStepParams,
    FitHistory,
    FittedMixture,
    Moments,
    Posterior,
    Priors,
    Stats,
    TransformParams,
)
from ._parallel import n_threads
from ._profiling import annotate, cpu_report, peak_rss_bytes
from ._sampling import Reservoir, seeding_frame
from ._sources import Progress, Source
from ._validation import (
    check_encoded,
    check_finite,
    check_no_nulls,
    check_working_priors,
    per_column,
)

logger = logging.getLogger("gpuvgm")


@dataclass(frozen=True)
class FitConfig:
    """The constructor parameters of :class:`gpuvgm.VGM` that a fit reads, and the seed."""

    n_components: int
    weight_concentration_prior: float | None
    mean_precision_prior: float | None
    mean_prior: Any
    degrees_of_freedom_prior: float | None
    covariance_prior: Any
    reg_covar: float
    tol: float
    tol_scale: str
    max_iter: int
    init_params: str
    init_sample_size: int
    means_init: Any
    weight_threshold: float
    null_policy: str
    chunk_rows: int
    cache_bytes: int | None
    device_cache_fraction: float
    staged: bool
    schedule: str
    n_init: int
    compute_dtype: str | None
    n_jobs: int | None
    seed: int

    @classmethod
    def from_params(cls, params: dict[str, Any], seed: int) -> FitConfig:
        names = [f.name for f in fields(cls) if f.name != "seed"]
        return cls(seed=seed, **{name: params[name] for name in names})


@dataclass(frozen=True)
class FitResult:
    """What :func:`gpuvgm._schedule.fit_mixture` returns: the fitted state (with its history
    and report), the full passes over the data and the seconds per phase."""

    fitted: FittedMixture
    passes: int
    timings: dict[str, float]


@contextlib.contextmanager
def phase(timings: dict[str, float], name: str) -> Iterator[None]:
    """Time a phase of the fit into ``timings[name]`` under an NVTX range of the same name."""
    t = time.perf_counter()
    with annotate(name):
        yield
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - t


# ---------------------------------------------------------------------------- the pre-pass
@dataclass(frozen=True)
class _Checks:
    """The input checks of every chunk (picklable: they run on Dask workers)."""

    backend: Backend
    names: Sequence[str]
    null_policy: str

    def moments(self, offset: int, chunk: Any, host: np.ndarray) -> Moments:
        """The moments of one chunk whose first row is global row ``offset`` (``chunk`` where
        the backend computes, ``host`` the same rows on the host), after the checks (no
        infinities; no nulls under ``null_policy="error"``)."""
        part = self.backend.moments(chunk)
        # The moments see infinities and nulls already; the chunk is searched for the first
        # offending row only when there is one.
        if (~(np.isfinite(part.minimum) & np.isfinite(part.maximum)) & (part.count > 0)).any():
            check_finite(host, self.names, offset)
        if self.null_policy == "error" and part.n_null.any():
            check_no_nulls(host, self.names, offset)
        return part


@dataclass
class Prepass:
    """What the pre-pass gathers from some rows: moments and the bottom-k sample; adds."""

    moments: Moments
    reservoir: Reservoir
    checks: _Checks

    @classmethod
    def empty(cls, checks: _Checks, sample_size: int, seed: int) -> Prepass:
        n = len(checks.names)
        return cls(Moments.empty(n), Reservoir(n, sample_size, seed), checks)

    def add(self, offset: int, chunk: Any, host: np.ndarray) -> None:
        self.moments = self.moments + self.checks.moments(offset, chunk, host)
        self.reservoir.add(offset, chunk, self.checks.backend)

    def __add__(self, other: Prepass) -> Prepass:
        return Prepass(self.moments + other.moments, self.reservoir + other.reservoir, self.checks)


def prepass(
    source: Source,
    backend: Backend,
    config: FitConfig,
    sample_size: int,
    progress: Progress | None,
) -> tuple[Prepass, _ChunkCache]:
    """One pass: moments, the sample (``sample_size`` values per column, a bottom-k sample
    whose prefixes are the smaller samples), checks, and the cache."""
    names = source.columns
    if not names:  # scikit-learn's wording for the same error
        raise DataError(
            f"X has 0 feature(s) (shape=({source.n_rows or 0}, 0)) while a minimum of 1 is "
            "required: there are no columns to fit."
        )
    host_budget, why = (
        (0, "in memory already") if source.in_memory else host_cache_budget(config.cache_bytes)
    )
    logger.debug("host cache budget %.3g GB (%s)", host_budget / 1e9, why)
    cache = _ChunkCache(
        backend.memory.cache_budget_bytes(config.device_cache_fraction),
        host_budget,
        backend,
        source.n_rows,
        host_budget_reason=why,
        spill=(0, "in memory already") if source.in_memory else spill_budget(config.cache_bytes),
    )
    make = functools.partial(
        Prepass.empty,
        _Checks(backend, names, config.null_policy),
        sample_size,
        config.seed,
    )
    stage = lambda chunks: cache.staged(backend.memory.stage(chunks))  # noqa: E731
    part = source.fold(make, config.chunk_rows, stage=stage, progress=progress, phase="prepass")
    source.persist_on(backend.memory)  # a distributed source's partitions, for the iterations
    moments = part.moments
    n_rows = int(moments.count[0] + moments.n_null[0])
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
        if moments.count[j] < config.n_components:
            raise DataError(
                f"column {name!r} has {int(moments.count[j])} non-null values, fewer than "
                f"n_components={config.n_components}."
            )
    logger.debug("iterations over %s read %s", source.describe(), cache.describe())
    return part, cache


def make_priors(moments: Moments, names: Sequence[str], config: FitConfig) -> Priors:
    n_cols = moments.count.size
    shift, scale = _model.working_frame(moments, config.reg_covar)
    k = config.n_components
    gamma0 = config.weight_concentration_prior
    beta0, nu0 = config.mean_precision_prior, config.degrees_of_freedom_prior
    priors = Priors.from_data_units(
        shift=shift,
        scale=scale,
        weight_concentration=1.0 / k if gamma0 is None else gamma0,
        mean_precision=1.0 if beta0 is None else beta0,
        degrees_of_freedom=1.0 if nu0 is None else nu0,
        mean=per_column("mean_prior", config.mean_prior, n_cols, moments.mean),
        covariance=per_column(
            "covariance_prior", config.covariance_prior, n_cols, moments.variance
        ),
        reg_covar=config.reg_covar,
    )
    # e.g. mean_prior=1e300 on a column of spread 1: finite, but it overflows the M-step.
    check_working_priors(names, priors.mean, priors.covariance, priors.reg_covar)
    return priors


# ---------------------------------------------------------------------------- the passes
def _on_chunk(fn: Callable[..., Stats], *args: Any) -> Callable[[int, Any], Stats]:
    """``(row_offset, chunk) -> fn(chunk, *args)``: a pass function for statistics that do not
    depend on the row index; picklable, so it can run on Dask workers."""
    return functools.partial(_call_on_chunk, fn, args)


def _call_on_chunk(fn: Callable[..., Stats], args: tuple, row_offset: int, chunk: Any) -> Stats:
    return fn(chunk, *args)


@dataclass(frozen=True)
class Passes:
    """Full passes over ``source`` on ``backend``; ``scale`` (n_columns,), when given,
    multiplies each column's statistics (a sample standing in for all rows: a staged fit).

    ``progress(prefix + phase, rows)`` follows each chunk; with ``priors`` given, a
    ``progress`` that has a ``pass_done`` method also hears the lower bound per row after each
    E-step pass (:mod:`gpuvgm._progress`)."""

    source: Source
    backend: Backend
    chunk_rows: int
    progress: Progress | None
    scale: np.ndarray | None = None
    priors: Priors | None = None
    prefix: str = ""
    compute_dtype: str | None = None  # the E-step's (None: the backend's default)

    def run(self, fn: Callable[[int, Any], Stats], phase: str, cols: Any = None) -> Stats:
        """``fn(row_offset, chunk)`` summed over every chunk (of the columns ``cols``)."""
        stats = self.source.map_reduce(
            fn,
            self.chunk_rows,
            stage=self.backend.memory.stage,
            progress=self.progress,
            phase=self.prefix + phase,
        )
        assert stats is not None  # sources always yield at least one chunk after the pre-pass
        if self.scale is not None:
            stats = stats.scaled(self.scale if cols is None else self.scale[cols])
        return stats

    def estep(self, params: EStepParams, cols: np.ndarray, it: int) -> Stats:
        with annotate("estep"):
            estep = self.backend.estep_stats
            if self.compute_dtype is not None:
                estep = functools.partial(estep, compute_dtype=np.dtype(self.compute_dtype))
            stats = self.run(_on_chunk(estep, params), f"iteration {it}", cols)
        pass_done = getattr(self.progress, "pass_done", None)
        if pass_done is not None and self.priors is not None:
            # What the caller computes from these statistics (iterate, SQUAREM): the lower
            # bound of their M-step; K numbers per column, so cheap beside the pass.
            sub = self.priors.select(cols)
            lower = _model.lower_bound(stats.h, _model.m_step(stats, sub), sub)
            pass_done(f"{self.prefix}iteration {it}", cols, lower / stats.nk.sum(axis=1))
        return stats


def _kmeans_rng(seed: int, column: int, restart: int) -> np.random.Generator:
    """The generator of column ``column``'s initialisation in restart ``restart`` (restart 0
    keeps the key of a single initialisation)."""
    return np.random.default_rng([seed, column] if restart == 0 else [seed, column, restart])


def initial_stats(
    passes: Passes,
    priors: Priors,
    samples: Sequence[np.ndarray],
    moments: Moments,
    config: FitConfig,
    restart: int = 0,
) -> Stats:
    """The statistics whose M-step is the first posterior (scikit-learn's ``_initialize``):
    from k-means (or ``means_init``) labels of every row of ``passes``, or from the
    initialisation samples ``samples`` (one per column) alone."""
    n_cols, k, seed = priors.shift.size, config.n_components, config.seed
    if config.means_init is not None or config.init_params == "kmeans":
        if config.means_init is not None:
            centers = np.asarray(config.means_init, dtype=np.float64)
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
                xs, ref = seeding_frame(samples[j])
                c = kmeans(xs, k, _kmeans_rng(seed, j, restart))
                centers[j] = (c + ref - priors.shift[j]) / priors.scale[j]
        ones, zeros = np.ones_like(centers), np.zeros_like(centers)
        params = EStepParams(np.arange(n_cols), priors.shift, priors.scale, centers, ones, zeros)
        return passes.run(_on_chunk(passes.backend.assign_stats, centers, params), "init")

    stats = Stats.zeros(n_cols, k)
    for j in range(n_cols):
        xs = (samples[j] - priors.shift[j]) / priors.scale[j]
        rng = _kmeans_rng(seed, j, restart)
        if config.init_params == "k-means++":
            idx = kmeans_plusplus(seeding_frame(samples[j])[0], k, rng)
            nk, s1, s2 = _model.centres_stats(xs, idx)
        else:
            nk, s1, s2 = _model.initial_stats(xs, config.init_params, k, rng)
        if config.init_params == "random":
            factor = moments.count[j] / xs.size  # the sample stands in for all rows
            nk, s1, s2 = nk * factor, s1 * factor, s2 * factor
        stats.nk[j], stats.s1[j], stats.s2[j] = nk, s1, s2
    return stats


# ---------------------------------------------------------------------------- the one loop
@dataclass
class Iterations:
    """The state of the iterations, per column."""

    post: Posterior
    n_iter: np.ndarray
    converged: np.ndarray
    lower: np.ndarray
    traces: list[list[float]] = field(default_factory=list)

    @classmethod
    def start(cls, post: Posterior) -> Iterations:
        """Before the first iteration from ``post``: none run, none converged."""
        n_cols = post.means.shape[0]
        return cls(
            post,
            np.zeros(n_cols, dtype=np.int64),
            np.zeros(n_cols, dtype=bool),
            np.full(n_cols, -np.inf),
            [[] for _ in range(n_cols)],
        )


def iterate(
    run_pass: Callable[[EStepParams, np.ndarray, int], Stats],
    priors: Priors,
    post: Posterior,
    counts: np.ndarray,
    config: FitConfig,
    monotone: bool = False,
) -> Iterations:
    """Variational iterations until each column meets ``tol`` or ``max_iter`` (scikit-learn's
    ``fit_predict`` loop): ``run_pass(params, columns, iteration)`` is the E-step over the data
    of the active columns, :func:`gpuvgm._model.m_step` and ``lower_bound`` the rest.

    ``counts`` (n_columns,) are the non-null rows, by which ``tol_scale="per_row"`` divides.
    ``monotone``: a column whose lower bound falls (rounding, at its optimum) keeps the
    posterior before that iteration and stops, converged: the lower bound never decreases.
    """
    n_cols = priors.shift.size
    state = Iterations.start(post)
    active = np.ones(n_cols, dtype=bool)
    for it in range(1, config.max_iter + 1):
        cols = np.flatnonzero(active)
        if cols.size == 0:
            break
        sub_priors = priors.select(cols)
        params = _model.estep_params(state.post.select(cols), sub_priors, cols)
        with annotate(f"iteration {it}"):
            stats = run_pass(params, cols, it)
            with annotate("mstep"):
                new = _model.m_step(stats, sub_priors)
                lb = _model.lower_bound(stats.h, new, sub_priors)
        fell = np.zeros(cols.size, dtype=bool)
        if monotone:
            fell = lb < state.lower[cols]
            if fell.any():
                keep = np.flatnonzero(~fell)
                new = new.select(keep)
                lb = np.where(fell, state.lower[cols], lb)
                logger.debug(
                    "iteration %d: the lower bound fell on columns %s; they keep the previous "
                    "posterior",
                    it,
                    cols[fell].tolist(),
                )
        state.post = state.post.replace_columns(cols[~fell], new)
        change = np.abs(lb - state.lower[cols])
        if config.tol_scale == "per_row":
            change = change / counts[cols]
        done = (change < config.tol) | fell
        state.lower[cols] = lb
        state.n_iter[cols] = it
        for i, j in enumerate(cols):
            state.traces[j].append(float(lb[i]))
        state.converged[cols[done]] = True
        active[cols[done]] = False
        logger.debug(
            "iteration %d: %d active columns, lower bound per row %s",
            it,
            cols.size,
            np.array2string(lb / counts[cols], precision=6),
        )
    return state


# ---------------------------------------------------------------------------- the fit
@dataclass(frozen=True)
class Run:
    """What a fit's report and fitted state are made of, besides the iterations."""

    source: Source
    backend: Backend
    config: FitConfig
    cache: _ChunkCache
    moments: Moments
    cached: bool
    staged: dict[str, Any] | None
    schedule: str
    passes: int
    priors: Priors
    cpu_seconds: float  # process CPU time of the fit (every thread)


def fit_result(run: Run, state: Iterations, timings: dict[str, float]) -> FitResult:
    """The end of every fit: the convergence warnings, the report, the fitted state."""
    moments, config, source = run.moments, run.config, run.source
    _warn_unconverged(source.columns, state, moments.count, config)
    report = _report(run, state, timings)
    report["cpu"] = cpu_report(run.cpu_seconds, timings["total"])
    report["cpu"]["threads"] = n_threads()
    report["compute_dtype"] = compute_dtype_name(config.compute_dtype, run.backend.NAME)
    history = FitHistory(
        state.n_iter,
        state.converged,
        state.lower,
        [np.asarray(tr) for tr in state.traces],
        report,
    )
    fitted = FittedMixture(
        run.priors,
        state.post,
        moments,
        source.columns,
        source.named,
        run.backend.NAME,
        config.seed,
        config.weight_threshold,
        history,
    )
    return FitResult(fitted, run.passes, timings)


def compute_dtype_name(compute_dtype: str | None, backend: str) -> str:
    """The E-step's compute precision, as ``fit_report_["compute_dtype"]`` records it: the
    ``compute_dtype`` parameter, or the backend's default (float64 on the CPU backends; the
    data's own dtype on CUDA)."""
    if compute_dtype is not None:
        return str(compute_dtype)
    return "float64" if backend in ("numba", "numpy") else "the data's dtype"


def _warn_unconverged(
    names: Sequence[str], state: Iterations, counts: np.ndarray, config: FitConfig
) -> None:
    for j in np.flatnonzero(~state.converged).tolist():
        if config.max_iter == 0:
            break
        trace = state.traces[j]
        last = trace[-1] - trace[-2] if len(trace) > 1 else math.inf
        warnings.warn(
            f"column {names[j]!r} did not converge after {int(state.n_iter[j])} iterations "
            f"(last lower-bound change {abs(last):.3g}, {abs(last) / counts[j]:.3g} per row; "
            f"tol={config.tol} {config.tol_scale}). Increase max_iter, raise tol, or check the "
            "data.",
            ConvergenceWarning,
            stacklevel=5,  # the caller of VGM.fit()
        )


def _report(run: Run, state: Iterations, timings: dict[str, float]) -> dict:
    """``fit_report_``, and the fit's one INFO line."""
    moments, config, cache, name = run.moments, run.config, run.cache, run.backend.NAME
    n_rows = int(moments.count[0] + moments.n_null[0])
    # Full passes over the data: the pre-pass, the k-means assignments (unless staged: they ran
    # on the sample) and the iterations.
    passes = run.passes
    report = {
        "rows": n_rows,
        "columns": run.source.columns,
        "nulls": moments.n_null.astype(np.int64).tolist(),
        "backend": name,
        "source": run.source.describe(),
        "cache": cache.report(),
        "cache_budget": cache.budgets(),
        "schedule": run.schedule,
        "staged": run.staged,
        "chunk_rows": int(config.chunk_rows),
        "seconds": timings,
        "passes": passes,
        "rows_per_second": n_rows * passes / max(timings["total"], 1e-12),
        "n_iter": state.n_iter.tolist(),
        "converged": state.converged.tolist(),
        "lower_bound_per_row": (state.lower / moments.count).tolist(),
        "lower_bound_trace_per_row": [
            (np.asarray(tr) / moments.count[j]).tolist() for j, tr in enumerate(state.traces)
        ],
        # The pre-pass reads the source; later passes read it again unless it was cached.
        "bytes_read": cache.seen * (1 if run.cached else passes),
        "memory": {"peak_host_rss_bytes": peak_rss_bytes(), **run.backend.memory.memory_report()},
    }
    logger.info(
        "fit %d rows x %d columns on %s in %.2f s (%s schedule, %d passes, %.3g rows/s per "
        "pass); "
        "iterations %s, converged %d/%d; the iterations read %s",
        n_rows,
        len(run.source.columns),
        name,
        timings["total"],
        run.schedule,
        passes,
        report["rows_per_second"],
        state.n_iter.tolist(),
        int(state.converged.sum()),
        len(run.source.columns),
        cache.describe(),
    )
    return report


# ---------------------------------------------------------------------------- transform
def checked_chunks(
    source: Source, extra: Sequence[str], chunk_rows: int, null_policy: str
) -> Iterator[tuple[int, np.ndarray, Any]]:
    """Checked transform-time chunks, read ahead: ``(row_offset, chunk, extra columns or
    None)``."""
    names = source.columns
    items = (
        source.chunks_with(chunk_rows, extra, readahead=True)
        if extra
        else ((o, c, None) for o, c in source.chunks(chunk_rows, readahead=True))
    )
    for offset, chunk, passed in items:
        check_finite(chunk, names, offset)
        if null_policy == "error":
            check_no_nulls(chunk, names, offset)
        yield offset, chunk, passed


def encode_chunks(
    chunks: Iterator[tuple[int, np.ndarray, Any]], backend: Backend, params: TransformParams
) -> Iterator[tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], Any]]:
    """``((normalized, component, null, n_clipped), extra columns)`` per chunk, in order."""
    passed_along: collections.deque[Any] = collections.deque()

    def pairs() -> Iterator[tuple[int, np.ndarray]]:
        for offset, chunk, passed in chunks:
            passed_along.append(passed)
            yield offset, chunk

    # Host chunks are staged to the device ahead of the kernels (CUDA); outputs come back.
    for offset, chunk, _ in backend.memory.stage(pairs()):
        normalized, component, null, n_clipped = backend.transform(chunk, params, offset)
        to_host = backend.memory.to_host
        outputs = (to_host(normalized), to_host(component), to_host(null), n_clipped)
        yield outputs, passed_along.popleft()


def encode_chunks_filled(
    chunks: Iterator[tuple[int, np.ndarray, Any]],
    backend: Backend,
    params: TransformParams,
    fill: np.ndarray,
) -> Iterator[tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], Any]]:
    """:func:`encode_chunks` with each null encoded as ``fill`` (n_columns,) of its column, as
    RDT encodes a null (its ``NullTransformer`` fills the mean first); ``null`` still marks the
    rows that were null. A chunk with nulls is filled in float64, RDT's dtype; each filled row
    draws its own component (the draw is keyed by row)."""
    fill = np.asarray(fill, dtype=np.float64)

    def filled() -> Iterator[tuple[int, np.ndarray, Any]]:
        for offset, chunk, passed in chunks:
            null = np.isnan(chunk) if chunk.dtype.kind == "f" else np.zeros(chunk.shape, bool)
            if null.any():
                chunk = np.where(null, fill[None, :], chunk.astype(np.float64))  # (n, c)
            yield offset, chunk, (passed, null)

    for (normalized, component, _, n_clipped), (passed, null) in encode_chunks(
        filled(), backend, params
    ):
        yield (normalized, component, null, n_clipped), passed


def _backend_named(module: str) -> Backend:
    """The backend module ``module`` (on a Dask worker: the client's, not the worker's
    ``device="auto"``)."""
    return importlib.import_module(module)


def module_name(backend: Backend) -> str:
    """The name to import ``backend`` by (a backend is a module)."""
    return str(backend.__name__)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class TransformChunk:
    """``(row_offset, block) -> (normalized, component, null, n_clipped)`` in host memory, after
    the checks: the transform of one Dask partition (picklable; it runs on a worker)."""

    backend: str  # the backend's module name
    params: TransformParams
    names: Sequence[str]
    null_policy: str

    def __call__(self, offset: int, block: np.ndarray) -> tuple[np.ndarray, ...]:
        backend = _backend_named(self.backend)
        check_finite(block, self.names, offset)
        if self.null_policy == "error":
            check_no_nulls(block, self.names, offset)
        *arrays, n_clipped = backend.transform(block, self.params, offset)
        return (*(np.asarray(backend.memory.to_host(a)) for a in arrays), np.asarray(n_clipped))


@dataclass(frozen=True)
class InverseChunk:
    """``(normalized, component) -> x`` in host memory, after the checks: the inverse of one
    block of Dask arrays (picklable; it runs on a worker)."""

    backend: str
    params: TransformParams
    names: Sequence[str]
    alpha_bound: float

    def __call__(self, normalized: np.ndarray, component: np.ndarray) -> np.ndarray:
        n_valid = self.params.n_valid
        pair = check_encoded((normalized, component), self.names, n_valid, self.alpha_bound)
        backend = _backend_named(self.backend)
        return np.asarray(backend.memory.to_host(backend.inverse(*pair, self.params)))
