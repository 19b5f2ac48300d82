"""The fit, as a function of a source, a backend and a configuration: the pre-pass, the
initialisation, the variational iterations (one loop, as scikit-learn's
``BaseMixture.fit_predict``), the staged fit, the warnings and the fit report. Also the
chunk-by-chunk transform, and the picklable per-partition functions of the lazy (Dask) one.

The mathematics is :mod:`gpuvgm._model`'s; the passes are ``source.map_reduce`` over the
backend's ``estep_stats`` (or ``assign_stats``), so a distributed source runs them where its data
is and nothing here depends on the kind of source.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
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
from ._cache import _ChunkCache, host_cache_budget
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
from ._profiling import annotate, peak_rss_bytes
from ._sampling import Reservoir, pad_columns, seeding_frame
from ._sources import ArraySource, Progress, Source
from ._validation import check_encoded, check_finite, check_no_nulls, per_column

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
    seed: int

    @classmethod
    def from_params(cls, params: dict[str, Any], seed: int) -> FitConfig:
        names = [f.name for f in fields(cls) if f.name != "seed"]
        return cls(seed=seed, **{name: params[name] for name in names})


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit_mixture` returns: the fitted state (with its history and report), the
    full passes over the data and the seconds per phase."""

    fitted: FittedMixture
    passes: int
    timings: dict[str, float]


@contextlib.contextmanager
def _phase(timings: dict[str, float], name: str) -> Iterator[None]:
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
class _Prepass:
    """What the pre-pass gathers from some rows: moments and the bottom-k sample; adds."""

    moments: Moments
    reservoir: Reservoir
    checks: _Checks

    @classmethod
    def empty(cls, checks: _Checks, sample_size: int, seed: int) -> _Prepass:
        n = len(checks.names)
        return cls(Moments.empty(n), Reservoir(n, sample_size, seed), checks)

    def add(self, offset: int, chunk: Any, host: np.ndarray) -> None:
        self.moments = self.moments + self.checks.moments(offset, chunk, host)
        self.reservoir.add(offset, chunk, self.checks.backend)

    def __add__(self, other: _Prepass) -> _Prepass:
        return _Prepass(self.moments + other.moments, self.reservoir + other.reservoir, self.checks)


def _prepass(
    source: Source, backend: Backend, config: FitConfig, progress: Progress | None
) -> tuple[_Prepass, _ChunkCache]:
    """One pass: moments, the initialisation sample, checks, and the cache."""
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
    )
    make = functools.partial(
        _Prepass.empty,
        _Checks(backend, names, config.null_policy),
        _reservoir_size(config, source.n_rows, len(names)),
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


def _priors(moments: Moments, config: FitConfig) -> Priors:
    n_cols = moments.count.size
    shift, scale = _model.working_frame(moments, config.reg_covar)
    k = config.n_components
    gamma0 = config.weight_concentration_prior
    beta0, nu0 = config.mean_precision_prior, config.degrees_of_freedom_prior
    return Priors.from_data_units(
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


# ---------------------------------------------------------------------------- the passes
def _on_chunk(fn: Callable[..., Stats], *args: Any) -> Callable[[int, Any], Stats]:
    """``(row_offset, chunk) -> fn(chunk, *args)``: a pass function for statistics that do not
    depend on the row index; picklable, so it can run on Dask workers."""
    return functools.partial(_call_on_chunk, fn, args)


def _call_on_chunk(fn: Callable[..., Stats], args: tuple, row_offset: int, chunk: Any) -> Stats:
    return fn(chunk, *args)


@dataclass(frozen=True)
class _Passes:
    """Full passes over ``source`` on ``backend``; ``scale`` (n_columns,), when given,
    multiplies each column's statistics (a sample standing in for all rows: a staged fit)."""

    source: Source
    backend: Backend
    chunk_rows: int
    progress: Progress | None
    scale: np.ndarray | None = None

    def run(self, fn: Callable[[int, Any], Stats], phase: str, cols: Any = None) -> Stats:
        """``fn(row_offset, chunk)`` summed over every chunk (of the columns ``cols``)."""
        stats = self.source.map_reduce(
            fn,
            self.chunk_rows,
            stage=self.backend.memory.stage,
            progress=self.progress,
            phase=phase,
        )
        assert stats is not None  # sources always yield at least one chunk after the pre-pass
        if self.scale is not None:
            stats = stats.scaled(self.scale if cols is None else self.scale[cols])
        return stats

    def estep(self, params: EStepParams, cols: np.ndarray, it: int) -> Stats:
        with annotate("estep"):
            fn = _on_chunk(self.backend.estep_stats, params)
            return self.run(fn, f"iteration {it}", cols)


def _kmeans_rng(seed: int, column: int, restart: int) -> np.random.Generator:
    """The generator of column ``column``'s initialisation in restart ``restart`` (restart 0
    keeps the key of a single initialisation)."""
    return np.random.default_rng([seed, column] if restart == 0 else [seed, column, restart])


def _initial_stats(
    passes: _Passes,
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
class _Iterations:
    """The state of the iterations, per column."""

    post: Posterior
    n_iter: np.ndarray
    converged: np.ndarray
    lower: np.ndarray
    traces: list[list[float]] = field(default_factory=list)


def iterate(
    run_pass: Callable[[EStepParams, np.ndarray, int], Stats],
    priors: Priors,
    post: Posterior,
    counts: np.ndarray,
    config: FitConfig,
    monotone: bool = False,
) -> _Iterations:
    """Variational iterations until each column meets ``tol`` or ``max_iter`` (scikit-learn's
    ``fit_predict`` loop): ``run_pass(params, columns, iteration)`` is the E-step over the data
    of the active columns, :func:`gpuvgm._model.m_step` and ``lower_bound`` the rest.

    ``counts`` (n_columns,) are the non-null rows, by which ``tol_scale="per_row"`` divides.
    ``monotone``: a column whose lower bound falls (rounding, at its optimum) keeps the
    posterior before that iteration and stops, converged: the lower bound never decreases.
    """
    n_cols = priors.shift.size
    state = _Iterations(
        post,
        np.zeros(n_cols, dtype=np.int64),
        np.zeros(n_cols, dtype=bool),
        np.full(n_cols, -np.inf),
        [[] for _ in range(n_cols)],
    )
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


# ---------------------------------------------------------------------------- the sample stage
# The staged schedule (DESIGN.md §5 "Passes matter"). The full-data iterations crawl: once the
# modes are placed, what is left is the slow drift of the Dirichlet-process weights and of
# components that split or drain, which a fixed-point VB iteration follows at a linear rate
# close to one. So the schedule does that part where it is cheap, on a uniform sample whose
# statistics stand in for all rows, accelerated (SQUAREM), and the full passes only polish.
# Measured on a 10**7-row five-mode column (K=10): sample stage on 312 500 rows, then 4-11 full
# passes reach a lower bound above that of 300 plain full passes; a sample of 10**5 needed 60.

# "auto" stages a fit from this many rows on (below, the full passes are cheap and the
# schedule stays scikit-learn's, bit for bit).
AUTO_STAGED_MIN_ROWS = 200_000
# The stage sample: n / 32 rows, at least min(init_sample_size, n / 4) and at most 10**6 per
# column, and at most this many bytes of reservoir (16 bytes a value) over all columns.
_STAGE_SAMPLE_DIVISOR = 32
_STAGE_SAMPLE_MAX = 1_000_000
_STAGE_SAMPLE_BYTES = 512 << 20
# Passes over the sample: at most _STAGE_COST full passes' worth of rows (and between the two
# bounds), per restart; the sample stage stops when a SQUAREM cycle gains less than
# _STAGE_TOL_FACTOR * tol per row.
_STAGE_COST = 4.0
_STAGE_MIN_EVALS, _STAGE_MAX_EVALS = 90, 1500
_STAGE_TOL_FACTOR = 1e-2


def resolve_schedule(config: FitConfig, n_rows: int | None) -> str:
    """``"staged"`` or ``"sklearn"``: what ``config.schedule`` means for ``n_rows`` rows."""
    if config.staged or config.schedule == "staged":
        return "staged"
    if config.schedule == "sklearn" or config.tol_scale == "sum":
        return "sklearn"  # scikit-learn's stopping rule asks for scikit-learn's schedule
    return "staged" if n_rows is not None and n_rows >= AUTO_STAGED_MIN_ROWS else "sklearn"


def _stage_cap(config: FitConfig, n_cols: int) -> int:
    cap = min(_STAGE_SAMPLE_MAX, _STAGE_SAMPLE_BYTES // (16 * max(n_cols, 1)))
    return max(config.init_sample_size, cap)


def stage_sample_size(config: FitConfig, n_rows: int, n_cols: int) -> int:
    """Rows per column of the staged schedule's sample."""
    wanted = max(min(config.init_sample_size, n_rows // 4), n_rows // _STAGE_SAMPLE_DIVISOR)
    return int(min(_stage_cap(config, n_cols), wanted))


def _reservoir_size(config: FitConfig, n_rows: int | None, n_cols: int) -> int:
    """The pre-pass's sample size: the initialisation sample, or the stage sample (its first
    ``init_sample_size`` values are the initialisation sample: a bottom-k sample's prefix is
    the bottom-k sample of that size, so k-means sees the same values either way)."""
    if n_rows is None:  # not known before the pre-pass: the largest stage sample, if any
        may_stage = resolve_schedule(config, AUTO_STAGED_MIN_ROWS) == "staged"
        return _stage_cap(config, n_cols) if may_stage else config.init_sample_size
    if resolve_schedule(config, n_rows) == "sklearn":
        return config.init_sample_size
    return stage_sample_size(config, n_rows, n_cols)


_THETA_LOG_NK = (math.log(1e-12), None)  # bounds of the extrapolated parameters
_THETA_MEAN = 1e6  # |x'| in the working frame (unit variance)
_THETA_LOG_VAR = (math.log(1e-20), math.log(1e12))


def _theta(stats: Stats) -> np.ndarray:
    """The statistics as the unconstrained parameters SQUAREM extrapolates, (n_columns, 3K):
    ``log nk``, ``xk``, ``log var_k``."""
    nk = np.maximum(stats.nk, 1e-12)
    xk = stats.s1 / nk
    var = (stats.s2 - xk * stats.s1 - xk * (stats.s1 - xk * stats.nk)) / nk
    return np.concatenate([np.log(nk), xk, np.log(np.maximum(var, 1e-20))], axis=1)


def _theta_stats(theta: np.ndarray, counts: np.ndarray) -> Stats:
    """Statistics of parameters ``theta`` (clipped to finite bounds: an extrapolation may
    overshoot; what it leads to is judged by its lower bound)."""
    k = theta.shape[1] // 3
    log_nk = np.clip(theta[:, :k], _THETA_LOG_NK[0], np.log(counts)[:, None] + 1.0)
    xk = np.clip(theta[:, k : 2 * k], -_THETA_MEAN, _THETA_MEAN)
    var = np.exp(np.clip(theta[:, 2 * k :], *_THETA_LOG_VAR))
    nk = np.exp(log_nk)
    zeros = np.zeros(theta.shape[0])
    return Stats(nk, nk * xk, nk * (var + xk * xk), zeros, zeros.copy(), counts.copy())


@dataclass
class _Accelerated:
    """The sample stage of one restart, per column: the statistics whose M-step is the
    posterior, the lower bound, passes over the sample, convergence, and the trace."""

    stats: Stats
    lower: np.ndarray
    n_eval: np.ndarray
    converged: np.ndarray
    traces: list[list[float]]


def accelerate(
    run_pass: Callable[[EStepParams, np.ndarray, int], Stats],
    priors: Priors,
    stats: Stats,
    counts: np.ndarray,
    tol: np.ndarray,
    max_evals: int,
) -> _Accelerated:
    """SQUAREM (Varadhan & Roland 2008, scheme S3) on the VB fixed-point map
    ``theta -> E-step(M-step(theta))``, with the lower-bound safeguard: a cycle is two plain
    iterations and one from the extrapolated point, kept only when its lower bound is at least
    the second plain one's, so the lower bound never falls. Stops a column when a cycle gains
    less than ``tol`` (n_columns,) per row, or after ``max_evals`` passes.
    """
    n_cols = counts.size
    theta = _theta(stats)
    out = _Accelerated(
        stats,
        np.full(n_cols, -np.inf),
        np.zeros(n_cols, dtype=np.int64),
        np.zeros(n_cols, dtype=bool),
        [[] for _ in range(n_cols)],
    )
    it = 0

    def step(th: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nonlocal it
        it += 1
        sub = priors.select(cols)
        post = _model.m_step(_theta_stats(th, counts[cols]), sub)
        st = run_pass(_model.estep_params(post, sub, cols), cols, it)
        lb = _model.lower_bound(st.h, _model.m_step(st, sub), sub)
        out.n_eval[cols] += 1
        return _theta(st), lb

    active = np.ones(n_cols, dtype=bool)
    while True:
        cols = np.flatnonzero(active & (out.n_eval + 3 <= max_evals))
        if cols.size == 0:
            break
        t0 = theta[cols]
        t1, _ = step(t0, cols)
        t2, lb2 = step(t1, cols)
        r, v = t1 - t0, t2 - 2.0 * t1 + t0
        alpha = -np.linalg.norm(r, axis=1) / np.maximum(np.linalg.norm(v, axis=1), 1e-300)
        alpha = np.minimum(alpha, -1.0)[:, None]  # -1: the plain step G(t2)
        tx = t0 - 2.0 * alpha * r + alpha**2 * v
        tx = np.where(np.isfinite(tx), tx, t2)
        t3, lb3 = step(tx, cols)
        ok = np.isfinite(lb3) & (lb3 >= lb2)
        lb = np.where(ok, lb3, lb2)
        change = np.abs(lb - out.lower[cols]) / counts[cols]
        theta[cols] = np.where(ok[:, None], t3, t2)
        out.lower[cols] = lb
        for i, j in enumerate(cols):
            out.traces[j].append(float(lb[i]))
        done = change < tol[cols]
        out.converged[cols[done]] = True
        active[cols[done]] = False
    out.stats = _theta_stats(theta, counts)
    return out


def _stats_rows(stats: Stats, cols: np.ndarray) -> Stats:
    return Stats(*(x[cols] for x in _fields(stats)))


def merge_moves(
    run_pass: Callable[[EStepParams, np.ndarray, int], Stats],
    priors: Priors,
    stats: Stats,
    lower: np.ndarray,
    counts: np.ndarray,
) -> tuple[Stats, np.ndarray, np.ndarray]:
    """Merge proposals (bnpy's memoized VB, Hughes & Sudderth 2013): ``(stats, lower,
    merged)`` after trying, per column, to merge each pair of neighbouring components (by
    mean) into one; a merge is kept when the lower bound after one pass from it exceeds the
    best so far. One pass per neighbour pair, shared by all columns.

    Why: a fit often splits one mode between two components with almost the same mean; the
    fixed-point iterations then merge them at a sub-linear crawl along a flat ridge (the gain
    is O(K log n) nats in all), which is most of the passes a plain fit spends.
    """
    n_cols, k = stats.nk.shape
    alive = stats.nk > 1e-6 * counts[:, None]  # (C, K)
    means = np.where(alive, stats.s1 / np.maximum(stats.nk, 1e-300), np.inf)
    order = np.argsort(means, axis=1, kind="stable")
    best, best_lower = [x.copy() for x in _fields(stats)], lower.copy()
    merged = np.zeros(n_cols, dtype=bool)
    rows = np.arange(n_cols)
    for i in range(k - 1):
        a, b = order[:, i], order[:, i + 1]
        cols = np.flatnonzero(alive[rows, a] & alive[rows, b])
        if cols.size == 0:
            continue
        lo, hi = np.minimum(a, b)[cols], np.maximum(a, b)[cols]
        cand = [x[cols].copy() for x in _fields(stats)[:3]]
        at = np.arange(cols.size)
        for arr in cand:  # the pair's statistics in the lower slot, the upper one empty
            arr[at, lo] += arr[at, hi]
            arr[at, hi] = 0.0
        zeros = np.zeros(cols.size)
        sub = priors.select(cols)
        nk, s1, s2 = cand
        post = _model.m_step(Stats(nk, s1, s2, zeros, zeros, counts[cols]), sub)
        st = run_pass(_model.estep_params(post, sub, cols), cols, -(i + 1))
        lb = _model.lower_bound(st.h, _model.m_step(st, sub), sub)
        better = lb > best_lower[cols]
        for dst, src in zip(best, _fields(st), strict=True):
            dst[cols[better]] = src[better]
        best_lower[cols[better]] = lb[better]
        merged[cols[better]] = True
    return Stats(*best), best_lower, merged


# ---------------------------------------------------------------------------- the fit
@dataclass(frozen=True)
class _Run:
    """What the report of a fit is made of, besides the iterations."""

    source: Source
    backend: Backend
    config: FitConfig
    cache: _ChunkCache
    moments: Moments
    cached: bool
    staged: dict[str, Any] | None
    schedule: str
    passes: int


def _best_columns(a: _Iterations, b: _Iterations) -> _Iterations:
    """Per column, the iterations of ``a`` or ``b`` that reached the higher lower bound."""
    better = np.flatnonzero(b.lower > a.lower)
    return _Iterations(
        a.post.replace_columns(better, b.post.select(better)),
        np.where(b.lower > a.lower, b.n_iter, a.n_iter),
        np.where(b.lower > a.lower, b.converged, a.converged),
        np.maximum(a.lower, b.lower),
        [
            bt if bl > al else at
            for at, bt, al, bl in zip(a.traces, b.traces, a.lower, b.lower, strict=True)
        ],
    )


def _fields(stats: Stats) -> list[np.ndarray]:
    return [getattr(stats, f.name) for f in fields(Stats)]


def _sample_stage(
    part: _Prepass,
    backend: Backend,
    priors: Priors,
    moments: Moments,
    config: FitConfig,
    init_samples: Sequence[np.ndarray],
    m: int,
) -> tuple[Posterior, dict[str, Any]]:
    """The staged schedule's first stage: ``n_init`` initialisations on the stage sample (its
    statistics scaled to each column's non-null count), each accelerated to tight convergence;
    per column the one with the best lower bound continues to the full data."""
    n_cols = priors.shift.size
    samples = [part.reservoir.sample(j)[:m] for j in range(n_cols)]
    sizes = np.array([s.size for s in samples], dtype=np.float64)
    # NaN-padded to a rectangle: NaN is a null.
    on_sample = _Passes(
        ArraySource(pad_columns(samples)), backend, config.chunk_rows, None, moments.count / sizes
    )
    counts = moments.count
    tol = np.broadcast_to(
        _STAGE_TOL_FACTOR * (config.tol if config.tol_scale == "per_row" else config.tol / counts),
        (n_cols,),
    )
    budget = _STAGE_COST * float(counts.max()) / max(float(sizes.max()), 1.0)
    max_evals = int(min(_STAGE_MAX_EVALS, max(_STAGE_MIN_EVALS, budget)))
    best: _Accelerated | None = None
    lowers, evals = [], np.zeros(n_cols)
    n_merged = np.zeros(n_cols, dtype=np.int64)
    for restart in range(config.n_init):
        stats = _initial_stats(on_sample, priors, init_samples, moments, config, restart)
        run = accelerate(on_sample.estep, priors, stats, counts, tol, max_evals)
        for _ in range(config.n_components - 1):  # merge, re-converge, until no merge helps
            stats, _, merged = merge_moves(on_sample.estep, priors, run.stats, run.lower, counts)
            evals += config.n_components - 1
            if not merged.any():
                break
            n_merged += merged
            again = accelerate(on_sample.estep, priors, stats, counts, tol, max_evals)
            again.n_eval += run.n_eval
            again.traces = [a + b for a, b in zip(run.traces, again.traces, strict=True)]
            run = again
        lowers.append((run.lower / counts).tolist())
        evals += run.n_eval
        if best is None:
            best = run
            continue
        better = run.lower > best.lower
        best = _Accelerated(
            Stats(
                *(
                    np.where(better if x.ndim == 1 else better[:, None], x, y)
                    for x, y in zip(_fields(run.stats), _fields(best.stats), strict=True)
                )
            ),
            np.where(better, run.lower, best.lower),
            np.where(better, run.n_eval, best.n_eval),
            np.where(better, run.converged, best.converged),
            [rt if b else bt for rt, bt, b in zip(run.traces, best.traces, better, strict=True)],
        )
    assert best is not None
    report = {
        "sample_rows": sizes.astype(int).tolist(),
        "restarts": int(config.n_init),
        "merges": n_merged.tolist(),
        "sample_iterations": best.n_eval.tolist(),
        "sample_converged": best.converged.tolist(),
        "sample_lower_bound_per_row": (best.lower / counts).tolist(),
        "restart_lower_bounds_per_row": lowers,
        # The sample stage's cost, in full passes' worth of rows.
        "sample_pass_equivalents": (evals * sizes / counts).tolist(),
    }
    logger.debug(
        "sample stage: %s rows, %s passes over the sample, lower bound per row %s",
        sizes.astype(int).tolist(),
        best.n_eval.tolist(),
        np.array2string(best.lower / counts, precision=6),
    )
    return _model.m_step(best.stats, priors), report


_PLAIN_POLISH = 8  # plain full passes before the polish turns to SQUAREM


def _polish(
    passes: _Passes, priors: Priors, post: Posterior, counts: np.ndarray, config: FitConfig
) -> _Iterations:
    """The staged schedule's full passes: plain iterations (monotone; from a good sample
    stage they converge in a few), then, for the columns still moving (a component sharpening
    on a discrete value, a slow drain), safeguarded SQUAREM cycles until one gains less than
    ``tol`` per row, within ``max_iter`` passes in all. ``lower_bounds_`` then holds one value
    per plain pass and per cycle; both rise monotonically."""
    first = dataclasses.replace(config, max_iter=min(config.max_iter, _PLAIN_POLISH))
    state = iterate(passes.estep, priors, post, counts, first, monotone=True)
    cols = np.flatnonzero(~state.converged)
    left = config.max_iter - int(state.n_iter.max(initial=0))
    if cols.size == 0 or left < 3:
        return state
    sub = priors.select(cols)
    start = passes.estep(_model.estep_params(state.post.select(cols), sub, cols), cols, 0)
    tol = config.tol if config.tol_scale == "per_row" else config.tol / counts
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), counts.shape)
    acc = accelerate(
        # accelerate numbers the columns 0..; the chunk's are cols
        lambda params, c, it: passes.estep(
            dataclasses.replace(params, columns=cols[c]), cols[c], it
        ),
        sub,
        start,
        counts[cols],
        tol[cols],
        left - 1,
    )
    better = acc.lower >= state.lower[cols]
    keep = cols[better]
    state.post = state.post.replace_columns(
        keep, _model.m_step(_stats_rows(acc.stats, np.flatnonzero(better)), priors.select(keep))
    )
    state.lower[keep] = acc.lower[better]
    state.n_iter[cols] += 1 + acc.n_eval
    state.converged[cols] = acc.converged
    for i, j in enumerate(cols):
        if better[i]:
            state.traces[j].extend(acc.traces[i])
    return state


def fit_mixture(
    source: Source, backend: Backend, config: FitConfig, progress: Progress | None = None
) -> FitResult:
    """Fit a mixture to every column of ``source`` in shared passes over the data.

    ``progress(phase, rows)`` is called after each chunk of each pass (``phase`` is
    ``"prepass"``, ``"init"`` or ``"iteration N"``). Warns :class:`ConvergenceWarning` for the
    columns that did not converge.
    """
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    with _phase(timings, "prepass"):
        part, cache = _prepass(source, backend, config, progress)
    moments = part.moments
    n_rows = int(moments.count[0] + moments.n_null[0])
    n_cols = len(source.columns)
    schedule = resolve_schedule(config, n_rows)
    cached = cache.source(source)
    passes = _Passes(cached or source, backend, config.chunk_rows, progress)
    priors = _priors(moments, config)
    init_samples = [part.reservoir.sample(j)[: config.init_sample_size] for j in range(n_cols)]
    staged = None
    full_init = config.means_init is not None or config.init_params == "kmeans"
    if schedule == "staged":
        m = stage_sample_size(config, n_rows, n_cols)
        with _phase(timings, "sample_stage"):
            post, staged = _sample_stage(part, backend, priors, moments, config, init_samples, m)
        with _phase(timings, "iterations"):
            state = _polish(passes, priors, post, moments.count, config)
        n_passes = 1 + int(state.n_iter.max(initial=0))
    else:
        best: _Iterations | None = None
        n_passes = 1
        for restart in range(config.n_init):
            with _phase(timings, "init"):
                stats = _initial_stats(passes, priors, init_samples, moments, config, restart)
                post = _model.m_step(stats, priors)
            with _phase(timings, "iterations"):
                run = iterate(passes.estep, priors, post, moments.count, config)
            n_passes += int(full_init) + int(run.n_iter.max(initial=0))
            best = run if best is None else _best_columns(best, run)
        assert best is not None
        state = best
    timings["total"] = time.perf_counter() - t_start
    _warn_unconverged(source.columns, state, moments.count, config)
    run_info = _Run(
        cached or source,
        backend,
        config,
        cache,
        moments,
        cached is not None,
        staged,
        schedule,
        n_passes,
    )
    report = _report(run_info, state, timings)
    history = FitHistory(
        state.n_iter,
        state.converged,
        state.lower,
        [np.asarray(tr) for tr in state.traces],
        report,
    )
    fitted = FittedMixture(
        priors,
        state.post,
        moments,
        source.columns,
        source.named,
        backend.NAME,
        config.seed,
        config.weight_threshold,
        history,
    )
    return FitResult(fitted, n_passes, timings)


def _warn_unconverged(
    names: Sequence[str], state: _Iterations, counts: np.ndarray, config: FitConfig
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
            stacklevel=4,  # the caller of VGM.fit()
        )


def _report(run: _Run, state: _Iterations, timings: dict[str, float]) -> dict:
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
