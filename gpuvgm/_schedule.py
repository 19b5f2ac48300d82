"""The fit schedules: which passes a fit runs, in which order (the pieces are
:mod:`gpuvgm._engine`'s). ``"sklearn"``: scikit-learn's schedule, initialisation then full-data
iterations until ``tol``, ``n_init`` times. ``"staged"``: ``n_init`` initialisations iterated on
a sample (SQUAREM, merge moves), the best one polished by a few monotone full passes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from . import _model
from ._backends._api import Backend
from ._engine import (
    FitConfig,
    FitResult,
    Iterations,
    Passes,
    Run,
    fit_result,
    initial_stats,
    iterate,
    make_priors,
    phase,
    prepass,
)
from ._model import EStepParams, Moments, Priors, Stats
from ._parallel import one_blas_thread
from ._sampling import pad_columns
from ._sources import ArraySource, Progress, Source

logger = logging.getLogger("gpuvgm")


# ---------------------------------------------------------------------------- sizes
# The staged schedule (DESIGN.md §5 "Passes matter"). The full-data iterations crawl: once the
# modes are placed, what is left is the slow drift of the Dirichlet-process weights and of
# components that split or drain, which a fixed-point VB iteration follows at a linear rate
# close to one. So the schedule does that part where it is cheap, on a uniform sample whose
# statistics stand in for all rows, accelerated (SQUAREM), and the full passes only polish.
# The polish is SQUAREM on all rows from the sample's fixed point, judged by scikit-learn's
# test on its plain iterations (or 1 nat in all, what n rows resolve). Measured (CPU, K=10):
# the 10**7-row bench column 13 full passes, 1.6e-3 per row above 300 plain full passes; the
# demo table 10, 3e-5..2e-3 per row above (before chain merges its timestamp column, ten
# components over two normal modes, took 33).

# "auto" stages a fit from this many rows on (below, the full passes are cheap and the
# schedule stays scikit-learn's, bit for bit).
AUTO_STAGED_MIN_ROWS = 200_000
# The stage sample: n / 32 rows, at least min(init_sample_size, n / 4) and at most 10**6 per
# column, and at most this many bytes of reservoir (16 bytes a value) over all columns.
_STAGE_SAMPLE_DIVISOR = 32
_STAGE_SAMPLE_MAX = 1_000_000
_STAGE_SAMPLE_BYTES = 512 << 20
# Passes over the sample: at most _STAGE_COST full passes' worth of rows (and between the two
# bounds), per restart; the sample stage stops when a cycle's plain iteration gains less than
# _STAGE_TOL_FACTOR * tol per row. Measured (10**7-row bench column, demo table): with 8 full
# passes' worth and 1e-2, merge trials used up the budget before the sample converged (the
# polish then did the sample's work in full passes, 28 and 92); 16 and 0.1 converge there.
# Tighter than 0.1 buys nothing: the sample's own optimum is ~(3K / 2) / sample_rows per row
# from the full data's, which the polish must close anyway.
_STAGE_COST = 16.0
_STAGE_MIN_EVALS, _STAGE_MAX_EVALS = 300, 3000
# Passes over the sample after a merge proposal before it is judged (SQUAREM cycles: the
# components around the merged one move too).
_MERGE_EVALS = 12
_ROUND_EVALS = 60
_STAGE_MERGE_DISTANCE = 1.5  # the pairs tried on the sample (see merge_moves)
_STAGE_TOL_FACTOR = 0.1


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
    the second plain one's, so the lower bound never falls. Stops a column when the cycle's
    second plain iteration gains less than ``tol`` (n_columns,) per row: scikit-learn's test,
    on the fixed-point map SQUAREM accelerates (not on the extrapolation, whose gain measures
    the step length, not the distance to the fixed point); or after ``max_evals`` passes.
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
        t1, lb1 = step(t0, cols)
        t2, lb2 = step(t1, cols)
        r, v = t1 - t0, t2 - 2.0 * t1 + t0
        alpha = -np.linalg.norm(r, axis=1) / np.maximum(np.linalg.norm(v, axis=1), 1e-300)
        alpha = np.minimum(alpha, -1.0)[:, None]  # -1: the plain step G(t2)
        tx = t0 - 2.0 * alpha * r + alpha**2 * v
        tx = np.where(np.isfinite(tx), tx, t2)
        t3, lb3 = step(tx, cols)
        ok = np.isfinite(lb3) & (lb3 >= lb2)
        lb = np.where(ok, lb3, lb2)
        change = np.abs(lb2 - lb1) / counts[cols]  # one plain iteration's gain
        theta[cols] = np.where(ok[:, None], t3, t2)
        out.lower[cols] = lb
        for i, j in enumerate(cols):
            out.traces[j].append(float(lb[i]))
        done = change < tol[cols]
        out.converged[cols[done]] = True
        active[cols[done]] = False
    out.stats = _theta_stats(theta, counts)
    return out


def _on_columns(
    run_pass: Callable[[EStepParams, np.ndarray, int], Stats], cols: np.ndarray
) -> Callable[[EStepParams, np.ndarray, int], Stats]:
    """``run_pass`` for a function that numbers the columns ``cols`` 0, 1, ..."""
    return lambda params, c, it: run_pass(dataclasses.replace(params, columns=cols[c]), cols[c], it)


def _spread(stats: Stats) -> tuple[np.ndarray, np.ndarray]:
    """Means and standard deviations of the components of ``stats`` (working frame)."""
    nk = np.maximum(stats.nk, 1e-300)
    mean = stats.s1 / nk
    return mean, np.sqrt(np.maximum(stats.s2 / nk - mean * mean, 1e-300))


def merge_moves(
    run_pass: Callable[[EStepParams, np.ndarray, int], Stats],
    priors: Priors,
    start: tuple[Stats, np.ndarray],
    counts: np.ndarray,
    evals: int = 1,
    max_distance: float = math.inf,
) -> tuple[Stats, np.ndarray, np.ndarray]:
    """Merge proposals (bnpy's memoized VB, Hughes & Sudderth 2013): ``(stats, lower,
    merged)`` after trying, per column, to merge each pair of neighbouring components (by
    mean) of ``start = (stats, lower)`` into one; a merge is kept when the lower bound after
    ``evals`` passes from it (one plain pass, or SQUAREM cycles) exceeds the best so far. The
    pairs tried are those whose means differ by at most ``max_distance`` times the root of the
    sum of their variances; their passes are shared by all columns.

    Why: a fit often splits one mode between two components with almost the same mean; the
    fixed-point iterations then merge them at a sub-linear crawl along a flat ridge (the gain
    is O(K log n) nats in all), which is most of the passes a plain fit spends.
    """
    stats, lower = start
    n_cols, k = stats.nk.shape
    alive = stats.nk > 1e-6 * counts[:, None]  # (C, K)
    mean, sd = _spread(stats)
    order = np.argsort(np.where(alive, mean, np.inf), axis=1, kind="stable")
    best, best_lower = [x.copy() for x in _fields(stats)], lower.copy()
    merged = np.zeros(n_cols, dtype=bool)
    rows = np.arange(n_cols)

    def judge(cols: np.ndarray, members: np.ndarray, what: str, it: int) -> None:
        """Try merging, in each column of ``cols``, the components ``members`` (len(cols), K)
        into the first of them; keep what beats the best so far."""
        cand = [x[cols].copy() for x in _fields(stats)[:3]]
        lo = np.argmax(members, axis=1)
        at = np.arange(cols.size)
        for arr in cand:  # the group's statistics in its first slot, the others empty
            total = np.where(members, arr, 0.0).sum(axis=1)
            arr[members] = 0.0
            arr[at, lo] = total
        zeros = np.zeros(cols.size)
        sub = priors.select(cols)
        nk, s1, s2 = cand
        if evals >= 3:
            acc = accelerate(
                _on_columns(run_pass, cols),
                sub,
                Stats(nk, s1, s2, zeros, zeros, counts[cols]),
                counts[cols],
                np.zeros(cols.size),
                evals,
            )
            st, lb = acc.stats, acc.lower
        else:
            post = _model.m_step(Stats(nk, s1, s2, zeros, zeros, counts[cols]), sub)
            st = run_pass(_model.estep_params(post, sub, cols), cols, it)
            lb = _model.lower_bound(st.h, _model.m_step(st, sub), sub)
        better = lb > best_lower[cols]
        logger.debug(
            "merge trial (%s) %s: columns %s, gain per row %s",
            what,
            "kept" if better.any() else "refused",
            cols.tolist(),
            np.array2string((lb - best_lower[cols]) / counts[cols], precision=3),
        )
        for dst, src in zip(best, _fields(st), strict=True):
            dst[cols[better]] = src[better]
        best_lower[cols[better]] = lb[better]
        merged[cols[better]] = True

    close = np.zeros((n_cols, k - 1), dtype=bool)  # order[:, i] and order[:, i + 1] are close
    for i in range(k - 1):
        a, b = order[:, i], order[:, i + 1]
        gap = np.abs(mean[rows, a] - mean[rows, b])
        close[:, i] = alive[rows, a] & alive[rows, b]
        close[:, i] &= gap <= max_distance * np.hypot(sd[rows, a], sd[rows, b])
        cols = np.flatnonzero(close[:, i])
        if cols.size == 0:
            continue
        members = np.zeros((cols.size, k), dtype=bool)
        members[np.arange(cols.size), a[cols]] = True
        members[np.arange(cols.size), b[cols]] = True
        judge(cols, members, f"pair {i}", -(i + 1))
    # Chains of three or more close neighbours merged into one: a mode covered by several
    # components (k-means splits a normal mode into slices) is one component, but no pair
    # of its slices merges profitably while the others still cover it.
    chains: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(n_cols)]
    for j in range(n_cols):
        run = [int(order[j, 0])]
        for i in range(k - 1):
            if close[j, i]:
                run.append(int(order[j, i + 1]))
                continue
            if len(run) >= 3:
                chains[j].append((j, np.array(run)))
            run = [int(order[j, i + 1])]
        if len(run) >= 3:
            chains[j].append((j, np.array(run)))
    for r in range(max((len(c) for c in chains), default=0)):
        picked = [c[r] for c in chains if len(c) > r]
        cols = np.array([j for j, _ in picked], dtype=np.int64)
        members = np.zeros((cols.size, k), dtype=bool)
        for i, (_, chain) in enumerate(picked):
            members[i, chain] = True
        judge(cols, members, f"chain {r}", -(k + r))
    return Stats(*best), best_lower, merged


def _best_columns(a: Iterations, b: Iterations) -> Iterations:
    """Per column, the iterations of ``a`` or ``b`` that reached the higher lower bound."""
    better = np.flatnonzero(b.lower > a.lower)
    return Iterations(
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


@dataclass
class _Rounds(_Accelerated):
    """A sample stage's :class:`_Accelerated`, with its kept merges (per column) and its
    passes over the sample (merge trials included)."""

    merges: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    n_spent: int = 0


def _stage_rounds(
    on_sample: Passes,
    priors: Priors,
    stats: Stats,
    counts: np.ndarray,
    tol: np.ndarray,
    max_evals: int,
) -> _Rounds:
    """One restart of the sample stage: SQUAREM rounds of at most _ROUND_EVALS passes, each
    followed by merge trials (each judged after _MERGE_EVALS passes); ends when a round has
    converged and no merge helps, or, once a trial finds no merge, after one last SQUAREM run
    on what is left of ``max_evals`` passes over the sample."""
    merges = np.zeros(counts.size, dtype=np.int64)
    spent = [0]

    def counted(params: EStepParams, c: np.ndarray, it: int) -> Stats:
        spent[0] += 1
        return on_sample.estep(params, c, it)

    run: _Accelerated | None = None
    last = False
    lower = np.full(counts.size, -np.inf)  # of ``stats``, where known
    while True:
        left = max_evals - spent[0]
        step = accelerate(
            counted, priors, stats, counts, tol, left if last else min(_ROUND_EVALS, left)
        )
        # A column that ran no cycle (no budget left) keeps the statistics it came with.
        step.lower = np.where(step.n_eval > 0, step.lower, lower)
        if run is not None:
            step.n_eval += run.n_eval
            step.converged |= (step.n_eval == run.n_eval) & run.converged
            step.traces = [a + b for a, b in zip(run.traces, step.traces, strict=True)]
        run = step
        if last or spent[0] + _MERGE_EVALS + 3 > max_evals:
            break
        stats, lower, merged = merge_moves(
            counted, priors, (run.stats, run.lower), counts, _MERGE_EVALS, _STAGE_MERGE_DISTANCE
        )
        merges += merged
        if not merged.any():
            if run.converged.all():
                break
            last = True
            stats, lower = run.stats, run.lower
    fields_ = {f.name: getattr(run, f.name) for f in fields(_Accelerated)}
    return _Rounds(**fields_, merges=merges, n_spent=spent[0])


def _sample_stage(
    passes: Passes,
    priors: Priors,
    moments: Moments,
    config: FitConfig,
    init_and_stage: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
) -> tuple[Stats, dict[str, Any]]:
    """The staged schedule's first stage: ``n_init`` initialisations (from the first of
    ``init_and_stage``, the initialisation samples) on the stage samples (the second; their
    statistics scaled to each column's non-null count), each accelerated to tight convergence;
    per column the one with the best lower bound continues to the full data."""
    n_cols = priors.shift.size
    init_samples, samples = init_and_stage
    sizes = np.array([s.size for s in samples], dtype=np.float64)
    # NaN-padded to a rectangle: NaN is a null.
    on_sample = Passes(
        ArraySource(pad_columns(samples)),
        passes.backend,
        config.chunk_rows,
        passes.progress,
        moments.count / sizes,
        priors,
        prefix="sample ",
        compute_dtype=config.compute_dtype,
    )
    counts = moments.count
    tol = np.broadcast_to(
        _STAGE_TOL_FACTOR * (config.tol if config.tol_scale == "per_row" else config.tol / counts),
        (n_cols,),
    )
    # The budget of each restart, in passes over the sample: convergence decides, within
    # _STAGE_COST full passes' worth of rows (and between the two bounds).
    budget = _STAGE_COST * float(counts.max()) / max(float(sizes.max()), 1.0)
    max_evals = int(min(_STAGE_MAX_EVALS, max(_STAGE_MIN_EVALS, budget)))
    best: _Accelerated | None = None
    lowers, evals = [], 0
    n_merged = np.zeros(n_cols, dtype=np.int64)
    for restart in range(config.n_init):
        stats = initial_stats(on_sample, priors, init_samples, moments, config, restart)
        run = _stage_rounds(on_sample, priors, stats, counts, tol, max_evals)
        n_merged += run.merges
        evals += run.n_spent
        lowers.append((run.lower / counts).tolist())
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
    return best.stats, report


_RESOLVED_NATS = 1.0


def _polish(
    passes: Passes, priors: Priors, stats: Stats, counts: np.ndarray, config: FitConfig
) -> Iterations:
    """The staged schedule's full passes: safeguarded SQUAREM cycles (:func:`accelerate`)
    from the sample stage's statistics ``stats`` (scaled to all rows), until the plain
    iteration of a cycle gains less than ``tol`` per row, within ``max_iter`` passes; below
    one cycle's three passes, plain monotone iterations. ``lower_bounds_`` holds one value
    per cycle; it never falls.

    The first pass is the first step of the first cycle (the sample's fixed point is a point
    of the full-data map like any other), so no pass is spent on the hand-over. There are no
    full-data merge trials: measured on the 10**7-row benchmark column and the demo table
    they cost one pass per close pair (6 and 16 passes) and kept one merge in 22 trials,
    worth 8e-6 per row, less than a SQUAREM cycle gains there; the sample stage's merge
    moves decide the number of components.
    """
    n_cols = counts.size
    tol = config.tol if config.tol_scale == "per_row" else config.tol / counts
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), counts.shape)
    if config.tol_scale == "per_row":
        # What n rows can resolve: an iteration that raises the lower bound by less than
        # _RESOLVED_NATS in all (a likelihood ratio below e) does not change the fit in any
        # way the data can tell; per row that is looser than tol below 10**7 rows only.
        tol = np.maximum(tol, _RESOLVED_NATS / np.maximum(counts, 1))
    if config.max_iter < 3:
        post = _model.m_step(stats, priors)
        return iterate(passes.estep, priors, post, counts, config, monotone=True)
    acc = accelerate(passes.estep, priors, stats, counts, tol, config.max_iter)
    state = Iterations.start(_model.m_step(acc.stats, priors))
    state.lower = acc.lower
    state.n_iter[:] = acc.n_eval
    state.converged[:] = acc.converged
    state.traces = acc.traces
    assert state.traces and len(state.traces) == n_cols
    return state


@one_blas_thread  # every pass of the fit, the M-steps and the k-means seeding included
def fit_mixture(
    source: Source, backend: Backend, config: FitConfig, progress: Progress | None = None
) -> FitResult:
    """Fit a mixture to every column of ``source`` in shared passes over the data.

    ``progress(phase, rows)`` is called after each chunk of each pass (``phase`` is
    ``"prepass"``, ``"init"``, ``"iteration N"``, or ``"sample init"`` and ``"sample iteration
    N"`` for the staged schedule's passes over its sample), and ``progress.pass_done`` where it
    exists after each iteration's pass (:mod:`gpuvgm._progress`). Warns
    :class:`ConvergenceWarning` for the columns that did not converge.
    """
    timings: dict[str, float] = {}
    t_start, cpu_start = time.perf_counter(), time.process_time()
    n_cols = len(source.columns)
    with phase(timings, "prepass"):
        size = _reservoir_size(config, source.n_rows, n_cols)
        part, cache = prepass(source, backend, config, size, progress)
    moments = part.moments
    n_rows = int(moments.count[0] + moments.n_null[0])
    schedule = resolve_schedule(config, n_rows)
    try:
        cached = cache.source(source)
        priors = make_priors(moments, source.columns, config)
        passes = Passes(
            cached or source,
            backend,
            config.chunk_rows,
            progress,
            priors=priors,
            compute_dtype=config.compute_dtype,
        )
        init_samples = [part.reservoir.sample(j)[: config.init_sample_size] for j in range(n_cols)]
        staged = None
        if schedule == "staged":
            m = stage_sample_size(config, n_rows, n_cols)
            samples = [part.reservoir.sample(j)[:m] for j in range(n_cols)]
            with phase(timings, "sample_stage"):
                stats, staged = _sample_stage(
                    passes, priors, moments, config, (init_samples, samples)
                )
            with phase(timings, "iterations"):
                state = _polish(passes, priors, stats, moments.count, config)
            n_passes = 1 + int(state.n_iter.max(initial=0))
        else:
            state, n_passes = _sklearn_fit(passes, priors, moments, config, init_samples, timings)
        timings["total"] = time.perf_counter() - t_start
        run = Run(
            cached or source,
            backend,
            config,
            cache,
            moments,
            cached is not None,
            staged,
            schedule,
            n_passes,
            priors,
            time.process_time() - cpu_start,
        )
        return fit_result(run, state, timings)
    finally:
        cache.close()  # the spill file, if any


def _sklearn_fit(
    passes: Passes,
    priors: Priors,
    moments: Moments,
    config: FitConfig,
    init_samples: Sequence[np.ndarray],
    timings: dict[str, float],
) -> tuple[Iterations, int]:
    """scikit-learn's schedule, ``n_init`` times; per column the restart with the best lower
    bound. Returns the iterations and the full passes (with the pre-pass)."""
    best: Iterations | None = None
    n_passes = 1
    full_init = config.means_init is not None or config.init_params == "kmeans"
    for restart in range(config.n_init):
        with phase(timings, "init"):
            stats = initial_stats(passes, priors, init_samples, moments, config, restart)
            post = _model.m_step(stats, priors)
        with phase(timings, "iterations"):
            run = iterate(passes.estep, priors, post, moments.count, config)
        n_passes += int(full_init) + int(run.n_iter.max(initial=0))
        best = run if best is None else _best_columns(best, run)
    assert best is not None
    return best, n_passes
