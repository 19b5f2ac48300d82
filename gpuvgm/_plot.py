"""Diagnostics figure of a fitted mixture (:meth:`gpuvgm.VGM.plot`): what it looks like on the data.

One panel per column: the histogram of a uniform sample of the column, each valid component's
weighted density ``w_k N(x; mean_k, cov_k)`` in colour, labelled with its **code** (the value the
transform writes in ``component``: the index among the column's valid components), pruned
components dashed grey and unnumbered, the mixture ``sum_k w_k N(x; mean_k, cov_k)`` in black.

The x axis spans the **whole** data range, ``[min, max]`` over every row read. The central
quantile range (0.1 % to 99.9 % by default) is drawn at full scale; a tail longer than
``TAIL_SHARE`` of it is compressed linearly into that share of the axis and shaded grey, so a heavy
tail is on screen without squashing the modes. Dotted lines mark the two quantiles and triangles
the minimum and maximum. With clipping on, the values whose ``|alpha|`` the transform clips are
drawn in red (their share is in the title) and the region beyond ``mean_k ± 4 clip std_k`` of
every valid component (clipped whatever the component) is shaded red. ``log=True`` draws the
density on a log scale, so a spike (a zero-inflated column) does not flatten the other modes.

matplotlib is optional (``pip install 'gpuvgm[plot]'``). The figure is built on matplotlib's
object API with the Agg canvas, never ``pyplot``: no display, no global figure state.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._backends import get_backend
from ._backends._api import Backend
from ._errors import DataError, MissingDependencyError, ParameterError
from ._model import STD_MULTIPLIER, FittedMixture, TransformParams
from ._sampling import Reservoir, pad_columns
from ._sources import Source
from ._writers import atomic_path, writing

_VALID_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#7f7f7f",
)
_CLIPPED_COLOUR = "#d62728"
_TAIL_COLOUR = "0.92"

#: A tail (data beyond the central quantile range) longer than this fraction of the central
#: range is compressed into this fraction of it on the x axis.
TAIL_SHARE = 0.15


def figure_classes() -> tuple[Any, Any]:
    """``(Figure, FigureCanvasAgg)``; :class:`MissingDependencyError` naming the extra without
    matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            "plotting needs matplotlib: pip install 'gpuvgm[plot]'"
        ) from exc
    return Figure, FigureCanvasAgg


@dataclass
class ColumnData:
    """What one streaming pass over the data gathers for the plots, per column (arrays of shape
    (n_columns,)): the sample, non-null values and nulls read, and the range of every value
    read (``inf``/``-inf`` when a column had none)."""

    samples: list[np.ndarray]
    n_read: np.ndarray
    n_null: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray


class Gather:
    """Accumulates :class:`ColumnData` chunk by chunk (host chunks, any order of offsets).

    The sample is the fit's bottom-k reservoir keyed by ``seed``: it does not depend on the
    chunking. Infinite values are counted as read and left out of the sample and the range.
    """

    def __init__(self, n_columns: int, sample_rows: int, seed: int):
        self.reservoir = Reservoir(n_columns, sample_rows, seed)
        self.host = get_backend("cpu")  # the chunks are in host memory
        self.n_read = np.zeros(n_columns, dtype=np.int64)
        self.n_null = np.zeros(n_columns, dtype=np.int64)
        self.minimum = np.full(n_columns, np.inf)
        self.maximum = np.full(n_columns, -np.inf)

    def add(self, offset: int, chunk: np.ndarray) -> None:
        nan = np.isnan(chunk)
        self.n_null += nan.sum(axis=0)
        self.n_read += (~nan).sum(axis=0)
        finite = np.where(np.isinf(chunk), np.nan, chunk)
        # fmin/fmax skip NaN, and the initial value covers an all-null chunk.
        self.minimum = np.fmin(self.minimum, np.fmin.reduce(finite, axis=0, initial=np.inf))
        self.maximum = np.fmax(self.maximum, np.fmax.reduce(finite, axis=0, initial=-np.inf))
        self.reservoir.add(offset, finite, self.host)

    def result(self) -> ColumnData:
        samples = [self.reservoir.sample(j) for j in range(len(self.n_read))]
        return ColumnData(samples, self.n_read, self.n_null, self.minimum, self.maximum)


def sample_columns(
    fitted: FittedMixture,
    source: Source,
    *,
    sample_rows: int,
    max_rows: int | None,
    chunk_rows: int,
) -> ColumnData:
    """A uniform sample without replacement of each column's non-null values and the range of
    all of them, in one pass.

    Reads ``source`` chunk by chunk (at most ``max_rows`` rows when given); memory is
    O(``sample_rows`` x columns), whatever the size of the data.
    """
    gather = Gather(fitted.n_columns, sample_rows, fitted.seed)
    for offset, chunk in source.chunks(chunk_rows):
        if max_rows is not None and offset >= max_rows:
            break
        if max_rows is not None and offset + len(chunk) > max_rows:
            chunk = chunk[: max_rows - offset]
        gather.add(offset, chunk)
    return gather.result()


def clipped_masks(
    samples: list[np.ndarray], backend: Backend, params: TransformParams
) -> list[np.ndarray] | None:
    """Per column, which sample values the transform clips (``|alpha|`` reaches ``clip``);
    None when clipping is off."""
    if math.isinf(params.clip):
        return None
    if max((s.size for s in samples), default=0) == 0:
        return [np.zeros(s.size, dtype=bool) for s in samples]
    ((offset, chunk, _),) = backend.memory.stage([(0, pad_columns(samples))])
    normalized = np.asarray(backend.memory.to_host(backend.transform(chunk, params, offset)[0]))
    # A clipped alpha is set to exactly +-clip; an unclipped value equal to it has probability 0.
    return [np.abs(normalized[: s.size, j]) >= params.clip for j, s in enumerate(samples)]


def _normal_pdf(x: np.ndarray, mean: float, var: float) -> np.ndarray:
    return np.exp(-0.5 * (x - mean) ** 2 / var) / math.sqrt(2.0 * math.pi * var)


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ParameterError(f"The {name!r} parameter must be an int >= {low}. Got {value!r}.")


def check_options(
    *, sample_rows: int, max_rows: int | None, bins: int, dpi: int, quantile_range: Any, log: Any
) -> tuple[float, float]:
    """Refuse bad plot options (:class:`ParameterError`); the quantile range as two floats."""
    for name, value, low in (("sample_rows", sample_rows, 1), ("bins", bins, 1), ("dpi", dpi, 1)):
        _check_int(name, value, low)
    if max_rows is not None:
        _check_int("max_rows", max_rows, 1)
    try:
        lo_q, hi_q = (float(q) for q in quantile_range)
    except (TypeError, ValueError):
        lo_q, hi_q = math.nan, math.nan
    if not 0.0 <= lo_q < hi_q <= 1.0:
        raise ParameterError(
            f"The 'quantile_range' parameter must satisfy 0 <= low < high <= 1. "
            f"Got {quantile_range!r}."
        )
    if not isinstance(log, (bool, np.bool_)):
        raise ParameterError(f"The 'log' parameter must be a bool. Got {log!r}.")
    return lo_q, hi_q


def selected_columns(fitted: FittedMixture, columns: Sequence[str] | None) -> list[int]:
    """Positions of ``columns`` among the model's columns (all when None)."""
    names = list(fitted.columns)
    if columns is None:
        return list(range(len(names)))
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise DataError(
            f"column {unknown[0]!r} is not one of the model's columns "
            f"({', '.join(map(repr, names))})."
        )
    return [names.index(c) for c in columns]


def plot_mixture(
    fitted: FittedMixture,
    source: Source,
    backend: Backend,
    path: str | os.PathLike | None = None,
    *,
    params: TransformParams,
    chunk_rows: int,
    columns: Sequence[str] | None = None,
    sample_rows: int = 200_000,
    max_rows: int | None = None,
    bins: int = 100,
    quantile_range: tuple[float, float] = (0.001, 0.999),
    log: bool = False,
    n_cols: int = 2,
    panel_size: tuple[float, float] = (6.0, 3.6),
    dpi: int = 100,
) -> Any:
    """Plot each column's data and fitted mixture; write an image when ``path`` is given.

    Parameters
    ----------
    fitted : FittedMixture
        The fitted state.
    source : Source
        Data with the fitted columns (checked by the caller).
    backend : Backend
        Where the transform that finds the clipped values runs.
    path : str or PathLike, optional
        Where to write the figure (the format follows the suffix: ``.png``, ``.svg``, ``.pdf``),
        under a temporary name renamed when complete.
    params : TransformParams
        The transform's parameters (component selection and clip).
    chunk_rows : int
        Rows per chunk read from ``source``.
    columns : list of str, optional
        Columns to draw (default: all the model's columns).
    sample_rows : int, default=200000
        Size of the uniform sample of each column that is histogrammed (memory bound).
    max_rows : int, optional
        Read at most this many rows of ``X`` (default: all, one streaming pass).
    bins : int, default=100
        Histogram bins (uniform along the drawn axis).
    quantile_range : (float, float), default=(0.001, 0.999)
        The central range, as quantiles of the sample, drawn at full scale; the tails beyond
        it, up to the data's minimum and maximum, are drawn compressed when they are long
        (``(0, 1)``: one linear axis over the whole range).
    log : bool, default=False
        Density on a log scale.
    n_cols : int, default=2
        Panels per row of the figure.
    panel_size : (float, float), default=(6.0, 3.6)
        Width and height of one panel in inches; the image is
        ``(n_cols * width * dpi) x (rows * height * dpi)`` pixels.
    dpi : int, default=100
        Pixels per inch of the written image.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    MissingDependencyError
        When matplotlib is not installed.
    DataError, ParameterError
        For columns that are not the model's, or bad options.
    """
    quantiles = check_options(
        sample_rows=sample_rows,
        max_rows=max_rows,
        bins=bins,
        dpi=dpi,
        quantile_range=quantile_range,
        log=log,
    )
    _check_int("n_cols", n_cols, 1)
    selected = selected_columns(fitted, columns)
    Figure, FigureCanvasAgg = figure_classes()

    data = sample_columns(
        fitted, source, sample_rows=int(sample_rows), max_rows=max_rows, chunk_rows=chunk_rows
    )
    masks = clipped_masks(data.samples, backend, params)

    n_panels = len(selected)
    grid_cols = min(int(n_cols), n_panels)
    grid_rows = math.ceil(n_panels / grid_cols)
    fig = Figure(
        figsize=(panel_size[0] * grid_cols, panel_size[1] * grid_rows), dpi=dpi, layout="tight"
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(grid_rows, grid_cols, squeeze=False)
    for ax in axes.ravel()[n_panels:]:
        ax.set_visible(False)
    for ax, j in zip(axes.ravel(), selected, strict=False):
        draw_column(ax, panel(fitted, data, masks, params, j), bins, quantiles, bool(log))
    if path is not None:
        save_figure(fig, path, dpi)
    return fig


def save_figure(fig: Any, path: str | os.PathLike, dpi: int) -> None:
    """Write ``fig`` to ``path`` under a temporary name, renamed when complete."""
    suffix = Path(path).suffix.lower().lstrip(".") or "png"
    with atomic_path(path) as tmp, writing(path):
        fig.savefig(tmp, dpi=dpi, format=suffix)


@dataclass(frozen=True)
class Panel:
    """What one column's panel shows: the mixture (arrays of shape (K,)), the sample, the
    values read and nulls, the data range, the clipped values of the sample (None: clipping
    off) and the clip bound."""

    name: str
    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    valid: np.ndarray
    sample: np.ndarray
    counts: tuple[int, int]
    data_range: tuple[float, float]
    clipped: np.ndarray | None
    clip: float


def panel(
    fitted: FittedMixture,
    data: ColumnData,
    masks: list[np.ndarray] | None,
    params: TransformParams,
    j: int,
) -> Panel:
    """Column ``j``'s :class:`Panel`."""
    sample = data.samples[j]
    return Panel(
        str(fitted.columns[j]),
        fitted.weights[j],
        fitted.means[j],
        fitted.covariances[j],
        fitted.valid[j],
        sample,
        (int(data.n_read[j]), int(data.n_null[j])),
        (float(data.minimum[j]), float(data.maximum[j])),
        None if masks is None else sample[masks[j]],
        float(params.clip),
    )


@dataclass(frozen=True)
class TailAxis:
    """A piecewise-linear x axis: data breakpoints ``xs`` drawn at positions ``us`` (both
    increasing), extended linearly past both ends. ``centre`` is the range drawn at full scale;
    ``tails`` lists the compressed tails as ``(start, end, factor)``."""

    xs: np.ndarray
    us: np.ndarray
    centre: tuple[float, float]
    tails: list[tuple[float, float, float]]

    def forward(self, x: Any) -> np.ndarray:
        return self._map(np.asarray(x, dtype=np.float64), self.xs, self.us)

    def inverse(self, u: Any) -> np.ndarray:
        return self._map(np.asarray(u, dtype=np.float64), self.us, self.xs)

    @staticmethod
    def _map(v: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        lo_slope = (b[1] - b[0]) / (a[1] - a[0])
        hi_slope = (b[-1] - b[-2]) / (a[-1] - a[-2])
        out = np.interp(v, a, b)
        out = np.where(v < a[0], b[0] + (v - a[0]) * lo_slope, out)
        return np.where(v > a[-1], b[-1] + (v - a[-1]) * hi_slope, out)


def tail_axis(lo: float, q_lo: float, q_hi: float, hi: float) -> TailAxis:
    """The x axis over ``[lo, hi]`` (``lo < hi``) with ``[q_lo, q_hi]`` at full scale and each
    tail beyond it that is longer than ``TAIL_SHARE`` of the central width compressed to that
    length."""
    width = q_hi - q_lo
    if not width > 0:  # a central spike (zero-inflated columns): no scale to keep, draw it all
        return TailAxis(np.array([lo, hi]), np.array([lo, hi]), (lo, hi), [])
    cap = TAIL_SHARE * width
    xs, us, tails = [q_lo, q_hi], [q_lo, q_hi], []
    left, right = q_lo - lo, hi - q_hi
    if left > 0:
        shown = min(left, cap)
        xs.insert(0, lo)
        us.insert(0, q_lo - shown)
        if left > cap:
            tails.append((lo, q_lo, left / shown))
    if right > 0:
        shown = min(right, cap)
        xs.append(hi)
        us.append(q_hi + shown)
        if right > cap:
            tails.append((q_hi, hi, right / shown))
    centre = (q_lo if left > cap else lo, q_hi if right > cap else hi)
    return TailAxis(np.array(xs), np.array(us), centre, tails)


def _number(v: float, span: float) -> str:
    """``v`` with enough significant digits to tell ticks ``span`` apart."""
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    if not span > 0:
        return f"{v:.6g}"
    digits = math.floor(math.log10(abs(v))) - math.floor(math.log10(span)) + 2
    return f"{v:.{min(max(digits, 2), 15)}g}"


def _ticks(axis: TailAxis) -> tuple[list[float], list[str]]:
    """Ticks of the central range, and the data's minimum or maximum at the far end of each
    compressed tail."""
    from matplotlib.ticker import MaxNLocator

    c_lo, c_hi = axis.centre
    ticks = [float(t) for t in MaxNLocator(6).tick_values(c_lo, c_hi) if c_lo <= t <= c_hi]
    span = (c_hi - c_lo) / 6
    room = 0.1 * (axis.us[-1] - axis.us[0])  # a central tick this close to an end label goes
    for start, end, _ in axis.tails:
        edge = start if start < c_lo else end
        u_edge = float(axis.forward(edge))
        ticks = [t for t in ticks if abs(float(axis.forward(t)) - u_edge) > room]
        ticks.append(edge)
    ticks = sorted(set(ticks))
    return ticks, [_number(t, span) for t in ticks]


def _grid(axis: TailAxis, lo: float, hi: float, means: np.ndarray, sds: np.ndarray) -> np.ndarray:
    """Where the densities are evaluated: uniform along the drawn axis, and dense around every
    component (a narrow spike falls between uniform points)."""
    uniform = axis.inverse(np.linspace(axis.forward(lo), axis.forward(hi), 1200))
    local = (means[:, None] + sds[:, None] * np.linspace(-6, 6, 61)[None, :]).ravel()
    grid = np.unique(np.concatenate([uniform, local, means]))
    return grid[(grid >= lo) & (grid <= hi)]


def component_codes(valid: np.ndarray) -> np.ndarray:
    """The code the transform writes for each component (its index among the valid ones), -1
    for a pruned one; shape (K,)."""
    codes = np.cumsum(valid) - 1
    return np.where(valid, codes, -1)


def draw_column(
    ax: Any,
    p: Panel,
    bins: int,
    quantiles: tuple[float, float],
    log: bool = False,
    *,
    legend: bool = True,
    title: bool = True,
    fontsize: float = 6.5,
) -> None:
    """Draw one column's panel on ``ax`` (``legend`` and ``title`` off for a second panel of
    the same column; ``fontsize`` of the legend)."""
    sample, (n_read, n_null) = p.sample, p.counts
    weights, means, covs, valid = p.weights, p.means, p.covs, p.valid
    sds = np.sqrt(covs)
    lo, hi = p.data_range
    if not (math.isfinite(lo) and math.isfinite(hi)):  # no data: the mixture over its own range
        lo, hi = float(np.min(means - 4 * sds)), float(np.max(means + 4 * sds))
    if not hi > lo:  # a constant column
        pad = max(abs(lo) * 1e-3, 1e-3)
        lo, hi = lo - pad, hi + pad
    if sample.size:
        q_lo, q_hi = (float(q) for q in np.quantile(sample, quantiles))
        q_lo, q_hi = max(q_lo, lo), min(q_hi, hi)
    else:
        q_lo, q_hi = lo, hi
    axis = tail_axis(lo, q_lo, q_hi, hi)
    ax.set_xscale("function", functions=(axis.forward, axis.inverse))

    for start, end, factor in axis.tails:
        ax.axvspan(start, end, color=_TAIL_COLOUR, lw=0, zorder=0)
        ax.text(
            float(axis.inverse(axis.forward([start, end]).mean())),
            0.97,
            f"tail\n×1/{factor:.3g}",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=6,
            color="0.35",
        )
    peak = 0.0
    positive = []
    edges = axis.inverse(np.linspace(axis.forward(lo), axis.forward(hi), bins + 1))
    edges[0], edges[-1] = lo, hi
    if sample.size:
        counts, _ = np.histogram(sample, bins=edges)
        # Density relative to the whole sample, so it compares with the mixture's density.
        density = counts / (sample.size * np.diff(edges))
        ax.stairs(
            density, edges, fill=True, color="#c7d7e8", label=f"data (sample of {sample.size:,})"
        )
        peak = max(peak, float(density.max()))
        positive.append(density[density > 0])
    if p.clipped is not None:
        _draw_clipped(ax, p, edges, sample.size, means, sds, (lo, hi))

    grid = _grid(axis, lo, hi, means, sds)
    codes = component_codes(valid)
    total = np.zeros_like(grid)
    for k in range(weights.size):
        dens = weights[k] * _normal_pdf(grid, means[k], covs[k])
        total += dens
        if not valid[k]:
            ax.plot(grid, dens, color="0.55", lw=0.8, ls="--", label="_pruned")
    for k in map(int, np.flatnonzero(valid)):
        dens = weights[k] * _normal_pdf(grid, means[k], covs[k])
        ax.plot(
            grid,
            dens,
            color=_VALID_COLOURS[codes[k] % len(_VALID_COLOURS)],
            lw=1.2,
            label=f"code {codes[k]}: w={weights[k]:.3f}",
            gid=f"component-{k}",
        )
    n_pruned = int((~valid).sum())
    if n_pruned:
        ax.plot([], [], color="0.55", lw=0.8, ls="--", label=f"pruned ({n_pruned}, no code)")
    ax.plot(grid, total, color="black", lw=1.4, label="mixture")
    peak = max(peak, float(total.max(initial=0.0)))

    # The tails' marks: the central quantiles (dotted) and the data's minimum and maximum.
    for q in (q_lo, q_hi):
        ax.axvline(q, color="0.4", lw=0.7, ls=":", zorder=1)
    ax.plot(
        [],
        [],
        color="0.4",
        lw=0.7,
        ls=":",
        label=f"{quantiles[0]:.3g}/{quantiles[1]:.3g} quantiles",
    )
    ends = [x for x in p.data_range if math.isfinite(x)]
    ax.plot(
        ends,
        [0.0] * len(ends),
        ls="none",
        marker="^",
        ms=6,
        color="black",
        clip_on=False,
        transform=ax.get_xaxis_transform(),
        label="min / max",
        zorder=5,
    )

    n_valid = int(valid.sum())
    share = (
        "clip off" if p.clipped is None else f"clipped {p.clipped.size / max(sample.size, 1):.2%}"
    )
    if title:
        ax.set_title(f"{p.name}: {n_valid}/{valid.size} valid components, {share}", fontsize=10)
    null_text = f", {n_null:,} nulls" if n_null else ""
    ax.set_xlabel(
        f"{n_read:,} values read{null_text}; range [{lo:.6g}, {hi:.6g}]",
        fontsize=8,
    )
    ax.set_ylabel("density (log)" if log else "density", fontsize=8)
    # A little room past both ends, so a spike at the minimum (zeros) is not on the frame.
    u_lo, u_hi = float(axis.forward(lo)), float(axis.forward(hi))
    pad = 0.015 * (u_hi - u_lo)
    ax.set_xlim(float(axis.inverse(u_lo - pad)), float(axis.inverse(u_hi + pad)))
    ticks, labels = _ticks(axis)
    ax.set_xticks(ticks, labels)
    if log:
        ax.set_yscale("log")
        floor = peak * 1e-6
        if positive and np.concatenate(positive).size:
            floor = min(floor, float(np.concatenate(positive).min()) * 0.5)
        ax.set_ylim(max(floor, peak * 1e-9) if peak > 0 else 1e-9, peak * 2 if peak > 0 else 1.0)
    else:
        ax.set_ylim(0, peak * 1.08 if peak > 0 else 1.0)
    ax.tick_params(labelsize=7)
    # No minor ticks: a log axis has dozens, and laying them out is most of the drawing time.
    from matplotlib.ticker import NullLocator

    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_locator(NullLocator())
    if legend:
        ax.legend(fontsize=fontsize, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _draw_clipped(
    ax: Any,
    p: Panel,
    edges: np.ndarray,
    n_sample: int,
    means: np.ndarray,
    sds: np.ndarray,
    data_range: tuple[float, float],
) -> None:
    """The clipped values of the sample in red, and the region every valid component clips."""
    assert p.clipped is not None
    share = p.clipped.size / max(n_sample, 1)
    if p.clipped.size:
        counts, _ = np.histogram(p.clipped, bins=edges)
        ax.stairs(
            counts / (n_sample * np.diff(edges)),
            edges,
            fill=True,
            color=_CLIPPED_COLOUR,
            alpha=0.75,
            label=f"clipped |α| ≥ {p.clip:g} ({share:.3%})",
        )
    reach = STD_MULTIPLIER * p.clip * sds[p.valid]
    below, above = float(np.min(means[p.valid] - reach)), float(np.max(means[p.valid] + reach))
    lo, hi = data_range
    spans = [(lo, below), (above, hi)]
    label = "clipped by every component"
    for start, end in spans:
        if end > start:
            ax.axvspan(
                start,
                end,
                color=_CLIPPED_COLOUR,
                alpha=0.10,
                lw=0,
                zorder=0,
                label=label,
                gid="clipped-region",
            )
            label = "_"
