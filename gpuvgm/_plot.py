"""Diagnostics figure of a fitted mixture (:meth:`gpuvgm.VGM.plot`): what it looks like on the data.

One panel per column: the histogram of a uniform sample of the column, each component's weighted
density ``w_k N(x; mean_k, cov_k)`` (valid components in colour, pruned ones dashed grey), the
mixture ``sum_k w_k N(x; mean_k, cov_k)`` in black, and in the title the valid components and
the fraction of values whose ``alpha`` the transform clips.

matplotlib is optional (``pip install 'gpuvgm[plot]'``). The figure is built on matplotlib's
object API with the Agg canvas, never ``pyplot``: no display, no global figure state.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._backends import get_backend
from ._backends._api import Backend
from ._errors import DataError, MissingDependencyError, ParameterError
from ._model import FittedMixture, TransformParams
from ._sampling import Reservoir, pad_columns
from ._sources import Source

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


def _figure_class() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            "plotting needs matplotlib: pip install 'gpuvgm[plot]'"
        ) from exc
    return Figure, FigureCanvasAgg


def sample_columns(
    fitted: FittedMixture,
    source: Source,
    *,
    sample_rows: int,
    max_rows: int | None,
    chunk_rows: int,
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """A uniform sample without replacement of each column's non-null values, in one pass.

    Reads ``source`` chunk by chunk (at most ``max_rows`` rows when given); memory is
    O(``sample_rows`` x columns), whatever the size of the data. The sample is the fit's bottom-k
    reservoir keyed by ``fitted.seed``: it does not depend on the chunking.

    Returns
    -------
    samples : list of ndarray
        Per column, up to ``sample_rows`` values.
    n_read : ndarray of shape (n_columns,), int64
        Non-null values read per column.
    n_null : ndarray of shape (n_columns,), int64
        Nulls read per column.
    """
    n_cols = fitted.n_columns
    reservoir = Reservoir(n_cols, sample_rows, fitted.seed)
    host = get_backend("cpu")  # the chunks are read into host memory
    n_read = np.zeros(n_cols, dtype=np.int64)
    n_null = np.zeros(n_cols, dtype=np.int64)
    for offset, chunk in source.chunks(chunk_rows):
        if max_rows is not None and offset >= max_rows:
            break
        if max_rows is not None and offset + len(chunk) > max_rows:
            chunk = chunk[: max_rows - offset]
        nan = np.isnan(chunk)
        n_null += nan.sum(axis=0)
        n_read += (~nan).sum(axis=0)
        reservoir.add(offset, np.where(np.isinf(chunk), np.nan, chunk), host)
    return [reservoir.sample(j) for j in range(n_cols)], n_read, n_null


def _clipped_fraction(
    samples: list[np.ndarray], backend: Backend, params: TransformParams
) -> np.ndarray:
    """Fraction of each column's sample whose ``alpha`` the transform clips, shape (n_columns,)."""
    sizes = np.array([s.size for s in samples])
    if math.isinf(params.clip) or sizes.max(initial=0) == 0:
        return np.zeros(len(samples))
    ((offset, chunk, _),) = backend.memory.stage([(0, pad_columns(samples))])
    clipped = backend.transform(chunk, params, offset)[3]
    return clipped / np.maximum(sizes, 1)


def _normal_pdf(x: np.ndarray, mean: float, var: float) -> np.ndarray:
    return np.exp(-0.5 * (x - mean) ** 2 / var) / math.sqrt(2.0 * math.pi * var)


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
    n_cols: int = 2,
    panel_size: tuple[float, float] = (6.0, 3.6),
    dpi: int = 100,
) -> Any:
    """Plot each column's data and fitted mixture; write a PNG when ``path`` is given.

    Parameters
    ----------
    fitted : FittedMixture
        The fitted state.
    source : Source
        Data with the fitted columns (checked by the caller).
    backend : Backend
        Where the transform that counts the clipped values runs.
    path : str or PathLike, optional
        Where to write the figure (the format follows the suffix: ``.png``, ``.svg``, ``.pdf``).
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
        Histogram bins.
    quantile_range : (float, float), default=(0.001, 0.999)
        The x range drawn, as quantiles of the sample (heavy tails would squash the modes);
        ``(0, 1)`` draws everything.
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
    for name, value, low in (("sample_rows", sample_rows, 1), ("bins", bins, 1), ("dpi", dpi, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ParameterError(
                f"The {name!r} parameter of plot_model must be an int >= {low}. Got {value!r}."
            )
    if max_rows is not None and (not isinstance(max_rows, (int, np.integer)) or max_rows < 1):
        raise ParameterError(
            f"The 'max_rows' parameter must be an int >= 1 or None. Got {max_rows!r}."
        )
    lo_q, hi_q = quantile_range
    if not 0.0 <= lo_q < hi_q <= 1.0:
        raise ParameterError(
            f"The 'quantile_range' parameter must satisfy 0 <= low < high <= 1. "
            f"Got {quantile_range!r}."
        )
    if isinstance(n_cols, bool) or not isinstance(n_cols, (int, np.integer)) or n_cols < 1:
        raise ParameterError(f"The 'n_cols' parameter must be an int >= 1. Got {n_cols!r}.")
    names = list(fitted.columns)
    selected = list(range(len(names)))
    if columns is not None:
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise DataError(
                f"column {unknown[0]!r} is not one of the model's columns "
                f"({', '.join(map(repr, names))})."
            )
        selected = [names.index(c) for c in columns]
    Figure, FigureCanvasAgg = _figure_class()

    samples, n_read, n_null = sample_columns(
        fitted, source, sample_rows=int(sample_rows), max_rows=max_rows, chunk_rows=chunk_rows
    )
    clipped = _clipped_fraction(samples, backend, params)

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
        panel = _Panel(
            names[j],
            fitted.weights[j],
            fitted.means[j],
            fitted.covariances[j],
            fitted.valid[j],
            samples[j],
            (int(n_read[j]), int(n_null[j])),
            None if math.isinf(params.clip) else float(clipped[j]),
        )
        _draw_column(ax, panel, bins, (lo_q, hi_q))
    if path is not None:
        fig.savefig(os.fspath(path), dpi=dpi)
    return fig


@dataclass(frozen=True)
class _Panel:
    """What one column's panel shows: the mixture (arrays of shape (K,)), the sample, the
    values read and nulls, and the clipped fraction (None: clipping off)."""

    name: str
    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    valid: np.ndarray
    sample: np.ndarray
    counts: tuple[int, int]
    clipped: float | None


def _draw_column(ax: Any, panel: _Panel, bins: int, quantiles: tuple[float, float]) -> None:
    name, sample, (n_read, n_null) = panel.name, panel.sample, panel.counts
    weights, means, covs, valid = panel.weights, panel.means, panel.covs, panel.valid
    if sample.size:
        lo, hi = np.quantile(sample, quantiles)
    else:  # no data: draw the mixture over its own range
        sd = np.sqrt(covs)
        lo, hi = float(np.min(means - 4 * sd)), float(np.max(means + 4 * sd))
    if not hi > lo:  # a constant column
        pad = max(abs(lo) * 1e-3, 1e-3)
        lo, hi = lo - pad, hi + pad
    if sample.size:
        counts, edges = np.histogram(sample, bins=bins, range=(lo, hi))
        # Density relative to the whole sample, so it compares with the mixture's density.
        density = counts / (sample.size * np.diff(edges))
        ax.stairs(
            density, edges, fill=True, color="#c7d7e8", label=f"data (sample of {sample.size:,})"
        )
    grid = np.linspace(lo, hi, 800)
    total = np.zeros_like(grid)
    colour = 0
    for k in np.argsort(-weights):
        dens = weights[k] * _normal_pdf(grid, means[k], covs[k])
        total += dens
        if valid[k]:
            ax.plot(
                grid,
                dens,
                color=_VALID_COLOURS[colour % len(_VALID_COLOURS)],
                lw=1.2,
                label=f"k={k} w={weights[k]:.3f}",
            )
            colour += 1
        else:
            ax.plot(grid, dens, color="0.55", lw=0.8, ls="--")
    n_pruned = int((~valid).sum())
    if n_pruned:
        ax.plot([], [], color="0.55", lw=0.8, ls="--", label=f"pruned ({n_pruned})")
    ax.plot(grid, total, color="black", lw=1.6, label="mixture")
    clip_text = "clip off" if panel.clipped is None else f"clipped {panel.clipped:.2%}"
    ax.set_title(
        f"{name}: {int(valid.sum())}/{valid.size} valid components, {clip_text}", fontsize=10
    )
    null_text = f", {n_null:,} nulls" if n_null else ""
    ax.set_xlabel(
        f"{n_read:,} values read{null_text}; x: quantiles {quantiles[0]:g}-{quantiles[1]:g}",
        fontsize=8,
    )
    ax.set_ylabel("density", fontsize=8)
    ax.set_xlim(lo, hi)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7, frameon=False, loc="upper right")
