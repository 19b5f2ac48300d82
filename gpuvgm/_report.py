"""A fitted model on a whole table, as one self-contained HTML page (:meth:`gpuvgm.VGM.report`).

One streaming pass over the data gathers, per column: rows and nulls, the range, the plots'
uniform sample, the values the transform clips, and the **round-trip error**
``max |x - inverse(transform(x))| / std`` over every row (a null must come back as a null; one
that does not counts as an infinite error). The page then holds a summary table (one row per
column, anchor links to each column's section) and, per column, the table of its valid
components (code, weight, mean, std) and its plot (:func:`gpuvgm._plot.draw_column`) as an inline
PNG. Nothing is fetched: CSS inline, images as ``data:`` URIs, no script, so the file can be
mailed or archived as it is. The images are small palette PNGs and load lazily, so a table of
hundreds of columns stays a page a browser opens at once (about 40 KB a column
for the two panels, linear and log).

matplotlib is needed for the plots (``pip install 'gpuvgm[plot]'``); its absence is a
:class:`~gpuvgm._errors.MissingDependencyError` raised before the pass.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _engine
from ._backends._api import Backend
from ._errors import OutputError, OverwriteError
from ._model import FittedMixture, Moments, TransformParams
from ._plot import (
    Gather,
    check_options,
    clipped_masks,
    draw_column,
    figure_classes,
    panel,
    selected_columns,
)
from ._sources import Progress, Source
from ._version import __version__
from ._writers import atomic_path, check_destination, writing

#: In the page's head: an existing file that carries it is a report and may be replaced.
GENERATOR = "gpuvgm report"

#: A round trip at most this (in standard deviations) is shown as exact.
EXACT = 1e-9


@dataclass(frozen=True)
class ColumnSummary:
    """One row of the report's summary table.

    ``codes``, ``weights``, ``means`` and ``stds`` are the valid components, by code (the
    value the transform writes); ``round_trip`` is ``max |x - inverse(transform(x))| / std``
    over every row read (``std`` the column's, ddof=1; the absolute error when it is 0).
    """

    name: str
    rows: int
    nulls: int
    n_components: int
    codes: list[int]
    weights: list[float]
    means: list[float]
    stds: list[float]
    pruned_weight: float
    n_iter: int
    converged: bool
    lower_bound: float
    n_clipped: int
    clipped_share: float
    round_trip: float
    std: float
    minimum: float
    maximum: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_report_destination(path: str | os.PathLike, inputs: Any, overwrite: bool) -> None:
    """Refuse a destination that is an input (or inside one), a directory, or an existing file
    that is not a gpuvgm report (unless ``overwrite``)."""
    check_destination(path, inputs)
    text = os.fspath(path)
    if os.path.isdir(text):
        raise OutputError(f"cannot write the report to {text!r}: it is a directory.")
    if os.path.exists(text) and not overwrite:
        with writing(text), open(text, "rb") as f:
            head = f.read(4096)
        if f'content="{GENERATOR}'.encode() not in head:
            raise OverwriteError(
                f"{text!r} exists and is not a gpuvgm report; refusing to replace it "
                "(pass overwrite=True, or --force on the command line, to replace it anyway)."
            )


def _rows(
    source: Source,
    chunk_rows: int,
    null_policy: str,
    max_rows: int | None,
) -> Iterator[tuple[int, np.ndarray, Any]]:
    """Checked chunks ``(offset, chunk, (offset, chunk))``, at most ``max_rows`` rows: the host
    chunk travels beside the transform (:func:`gpuvgm._engine.encode_chunks`)."""
    for offset, chunk, _ in _engine.checked_chunks(source, (), chunk_rows, null_policy):
        if max_rows is not None and offset >= max_rows:
            break
        if max_rows is not None and offset + len(chunk) > max_rows:
            chunk = chunk[: max_rows - offset]
        yield offset, chunk, (offset, chunk)


def summarize(
    fitted: FittedMixture,
    source: Source,
    backend: Backend,
    params: TransformParams,
    *,
    chunk_rows: int,
    null_policy: str,
    sample_rows: int,
    max_rows: int | None = None,
    progress: Progress | None = None,
) -> tuple[list[ColumnSummary], Any]:
    """One pass over ``source``: the summary of every column, and the plots' data
    (:class:`gpuvgm._plot.ColumnData`)."""
    n_cols = fitted.n_columns
    gather = Gather(n_cols, sample_rows, fitted.seed)
    moments = Moments.empty(n_cols)
    max_err = np.zeros(n_cols)
    n_clipped = np.zeros(n_cols, dtype=np.int64)
    to_host = backend.memory.to_host
    chunks = _rows(source, chunk_rows, null_policy, max_rows)
    for (normalized, component, _, clipped), (offset, x) in _engine.encode_chunks(
        chunks, backend, params
    ):
        x = np.asarray(x)
        gather.add(offset, x)
        moments = moments + gather.host.moments(x)
        n_clipped += np.asarray(clipped, dtype=np.int64)
        back = np.asarray(to_host(backend.inverse(normalized, component, params)))
        with np.errstate(invalid="ignore"):
            err = np.abs(back - x)
        # A null must come back as a null and a value as a value: anything else is a failure.
        err = np.where(np.isnan(x) != np.isnan(back), np.inf, np.nan_to_num(err, nan=0.0))
        if err.size:
            max_err = np.maximum(max_err, err.max(axis=0))
        if progress is not None:
            progress("report", len(x))
    data = gather.result()
    std = np.sqrt(moments.variance)
    history = fitted.history
    out = []
    for j in range(n_cols):
        valid = fitted.valid[j]
        ks = np.flatnonzero(valid)
        n_read = int(data.n_read[j])
        out.append(
            ColumnSummary(
                name=str(fitted.columns[j]),
                rows=n_read + int(data.n_null[j]),
                nulls=int(data.n_null[j]),
                n_components=int(valid.size),
                codes=list(range(ks.size)),
                weights=[float(w) for w in fitted.weights[j][ks]],
                means=[float(m) for m in fitted.means[j][ks]],
                stds=[float(s) for s in np.sqrt(fitted.covariances[j][ks])],
                pruned_weight=float(fitted.weights[j][~valid].sum()),
                n_iter=int(history.n_iter[j]),
                converged=bool(history.converged[j]),
                lower_bound=float(history.lower_bound[j]),
                n_clipped=int(n_clipped[j]),
                clipped_share=int(n_clipped[j]) / max(n_read, 1),
                round_trip=float(max_err[j] / std[j] if std[j] > 0 else max_err[j]),
                std=float(std[j]),
                minimum=float(data.minimum[j]),
                maximum=float(data.maximum[j]),
            )
        )
    return out, data


def _png(fig: Any, dpi: int) -> bytes:
    """``fig`` as a small PNG: 8-bit palette (the plots use few colours), optimised."""
    from PIL import Image  # matplotlib's own dependency

    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    image = Image.fromarray(rgba[..., :3]).quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True, dpi=(dpi, dpi))
    return buffer.getvalue()


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;
max-width:1500px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0}
.meta{color:#555;margin:0 0 16px}.meta code{background:#f3f3f3;padding:0 3px}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f0f3f7;position:sticky;top:0}
td.name,th.name{text-align:left}td.w{text-align:left;font-size:12px;color:#333;max-width:360px}
tr:nth-child(even) td{background:#fafafa}
td.bad{background:#fde2e1!important;color:#8a1c14}td.ok{color:#1d6b2f}
.scroll{overflow-x:auto;margin-bottom:24px}
section{border-top:1px solid #ccc;padding:10px 0}
details>summary{cursor:pointer;padding:4px 0}
.col{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start;margin-top:6px}
.col img{border:1px solid #eee;max-width:100%;height:auto}
.legend{color:#555;font-size:12px;margin:6px 0 14px}
a.top{font-size:12px;margin-left:10px}
"""


def _fmt(v: float, digits: int = 4) -> str:
    if not math.isfinite(v):
        return "∞" if v > 0 else ("−∞" if v < 0 else "n/a")
    return f"{v:.{digits}g}"


def _summary_rows(summaries: Sequence[ColumnSummary], index: Sequence[int]) -> list[str]:
    rows = []
    for s, j in zip(summaries, index, strict=True):
        weights = " · ".join(f"{c}: {w:.3f}" for c, w in zip(s.codes, s.weights, strict=True))
        if s.pruned_weight > 0:
            weights += f" (pruned {s.n_components - len(s.codes)}: {s.pruned_weight:.3g})"
        exact = s.round_trip <= EXACT
        rows.append(
            f'<tr id="row-{j}"><td>{j}</td>'
            f'<td class="name"><a href="#col-{j}">{html.escape(s.name)}</a></td>'
            f"<td>{s.rows:,}</td><td>{s.nulls:,}</td>"
            f"<td>{len(s.codes)} / {s.n_components}</td>"
            f'<td class="w">{weights}</td>'
            f"<td>{s.n_iter}</td>"
            f'<td class="{"ok" if s.converged else "bad"}">{"yes" if s.converged else "no"}</td>'
            f"<td>{_fmt(s.lower_bound, 8)}</td>"
            f'<td class="{"bad" if s.n_clipped else ""}">{s.n_clipped:,} ({s.clipped_share:.3%})'
            "</td>"
            f'<td class="{"ok" if exact else "bad"}">{_fmt(s.round_trip, 3)}</td></tr>'
        )
    return rows


def _component_table(s: ColumnSummary) -> str:
    body = "".join(
        f"<tr><td>{c}</td><td>{w:.4f}</td><td>{_fmt(m, 6)}</td><td>{_fmt(sd, 4)}</td></tr>"
        for c, w, m, sd in zip(s.codes, s.weights, s.means, s.stds, strict=True)
    )
    return f"<table><tr><th>code</th><th>weight</th><th>mean</th><th>std</th></tr>{body}</table>"


def render(
    summaries: Sequence[ColumnSummary],
    index: Sequence[int],
    images: Sequence[tuple[bytes, int, int]],
    header: dict[str, str],
    open_sections: bool,
) -> str:
    """The page: ``header`` (title and what it describes), the summary table and one section
    per column with its image (PNG bytes, width, height)."""
    n_exact = sum(s.round_trip <= EXACT for s in summaries)
    n_conv = sum(s.converged for s in summaries)
    n_clip = sum(s.n_clipped > 0 for s in summaries)
    meta = "".join(
        f"<div>{html.escape(k)}: <code>{html.escape(v)}</code></div>"
        for k, v in ((k, v) for k, v in header.items() if k != "title")
    )
    sections = []
    for s, j, (png, width, height) in zip(summaries, index, images, strict=True):
        src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        alt = html.escape(f"{s.name}: data histogram and fitted mixture", quote=True)
        sections.append(
            f'<section id="col-{j}"><details{" open" if open_sections else ""}>'
            f'<summary><h2 style="display:inline">{j}. {html.escape(s.name)}</h2> '
            f"— {len(s.codes)} valid components, {s.rows:,} rows, round trip "
            f"{_fmt(s.round_trip, 3)} σ"
            '<a class="top" href="#summary">↑ summary</a></summary>'
            f'<div class="col"><img loading="lazy" decoding="async" width="{width}" '
            f'height="{height}" alt="{alt}" src="{src}">{_component_table(s)}</div>'
            "</details></section>"
        )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta name="generator" content="{GENERATOR} {html.escape(__version__)}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(header['title'])}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>{html.escape(header['title'])}</h1>",
            f'<div class="meta">{meta}</div>',
            f'<p id="summary">{len(summaries)} columns: {n_conv} converged, '
            f"{n_clip} with clipped values, {n_exact} with an exact round trip "
            f"(≤ {EXACT:g} σ).</p>",
            '<div class="scroll"><table class="summary"><thead><tr><th>#</th>'
            '<th class="name">column</th><th>rows</th><th>nulls</th><th>components</th>'
            '<th class="name">weights by code</th><th>iterations</th><th>converged</th>'
            "<th>lower bound</th><th>clipped</th><th>round trip max |err| / σ</th></tr></thead>"
            "<tbody>",
            *_summary_rows(summaries, index),
            "</tbody></table></div>",
            '<p class="legend">Round trip: max |x − inverse(transform(x))| / σ over every row '
            "(σ the column's standard deviation); a null that does not come back as a null "
            "counts as ∞. Plots: histogram of a uniform sample, each valid component's weighted "
            "density labelled with its code (the value of the encoded <code>component</code>), "
            "pruned components dashed and unnumbered, the mixture in black; the x axis spans "
            "the whole data range, long tails compressed into the grey bands; clipped values "
            "in red.</p>",
            *sections,
            "</body></html>",
            "",
        ]
    )


def write_report(
    fitted: FittedMixture,
    source: Source,
    backend: Backend,
    path: str | os.PathLike,
    *,
    params: TransformParams,
    chunk_rows: int,
    null_policy: str,
    describe: dict[str, str],
    inputs: Any = None,
    columns: Sequence[str] | None = None,
    sample_rows: int = 50_000,
    max_rows: int | None = None,
    bins: int = 80,
    quantile_range: tuple[float, float] = (0.001, 0.999),
    log: bool | None = None,
    panel_size: tuple[float, float] = (7.5, 3.0),
    dpi: int = 96,
    open_sections: bool | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Write the report of ``fitted`` on ``source`` to ``path``; return the summary rows.

    Parameters
    ----------
    describe : dict of str
        Shown under the title (model file, data, parameters); ``"title"`` is the title.
    inputs : paths, optional
        The inputs of the run: ``path`` may not be one of them or inside one.
    columns : list of str, optional
        Columns to report (default: all the model's).
    sample_rows : int, default=50000
        The uniform sample of each column that the plot histograms (the summary is over every
        row read).
    max_rows : int, optional
        Read at most this many rows (default: all).
    bins, quantile_range
        As :func:`gpuvgm._plot.plot_mixture`.
    log : bool or None, default=None
        Density scale of the plots: None draws each column twice, linear above and log below
        (a spike and the modes beside it both show); True log only; False linear only.
    panel_size : (float, float), default=(7.5, 3.0)
        One panel's width and height in inches (the legend takes the right quarter).
    dpi : int, default=96
        Pixels per inch of the plots.
    open_sections : bool, optional
        Whether the columns' sections start expanded (default: up to 50 columns).
    overwrite : bool, default=False
        Replace an existing file at ``path`` that is not a gpuvgm report.

    Returns
    -------
    list of dict
        Per column reported, the fields of :class:`ColumnSummary`.
    """
    quantiles = check_options(
        sample_rows=sample_rows,
        max_rows=max_rows,
        bins=bins,
        dpi=dpi,
        quantile_range=quantile_range,
        log=False if log is None else log,
    )
    index = selected_columns(fitted, columns)
    Figure, FigureCanvasAgg = figure_classes()  # before the pass: a missing extra fails fast
    check_report_destination(path, inputs, overwrite)
    summaries, data = summarize(
        fitted,
        source,
        backend,
        params,
        chunk_rows=chunk_rows,
        null_policy=null_policy,
        sample_rows=int(sample_rows),
        max_rows=max_rows,
        progress=progress,
    )
    masks = clipped_masks(data.samples, backend, params)
    images = []
    scales = [False, True] if log is None else [bool(log)]
    for j in index:
        width_in, height_in = panel_size[0], panel_size[1] * len(scales)
        fig = Figure(figsize=(width_in, height_in), dpi=dpi)
        FigureCanvasAgg(fig)
        # Fixed margins (in inches: the tick labels, the title, the legend at the right): a
        # tight layout measures every text and takes most of the drawing time.
        fig.subplots_adjust(
            left=0.7 / width_in,
            right=1 - 2.0 / width_in,
            top=1 - 0.3 / height_in,
            bottom=0.5 / height_in,
            hspace=0.8 / panel_size[1],
        )
        col = panel(fitted, data, masks, params, j)
        for i, (ax, scale) in enumerate(
            zip(fig.subplots(len(scales), 1, squeeze=False)[:, 0], scales, strict=True)
        ):
            draw_column(ax, col, bins, quantiles, scale, legend=i == 0, title=i == 0, fontsize=7)
        width, height = fig.canvas.get_width_height()
        images.append((_png(fig, dpi), width, height))
        if progress is not None:
            progress("plots", 1)
    chosen = [summaries[j] for j in index]
    header = {
        "title": describe.get("title", "gpuvgm report"),
        **{k: v for k, v in describe.items() if k != "title"},
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        + f" by gpuvgm {__version__}",
    }
    page = render(
        chosen, index, images, header, len(index) <= 50 if open_sections is None else open_sections
    )
    with atomic_path(path) as tmp, writing(path):
        tmp.write_text(page, encoding="utf-8")
    return [s.as_dict() for s in chosen]
