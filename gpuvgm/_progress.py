"""Progress: tqdm bars for the progress events of fit, transform and inverse, and one summary
line per phase as it finishes.

The events (``progress`` arguments of :meth:`gpuvgm.VGM.fit`, ``transform_parquet``,
``inverse_parquet`` and the demo) are

- ``progress(phase, rows)`` after each chunk of each pass: ``phase`` is ``"prepass"``,
  ``"init"``, ``"iteration N"`` (a full pass), ``"sample init"`` and ``"sample iteration N"``
  (passes over the staged schedule's sample), ``"transform"``, ``"inverse"``, or the demo's
  ``"generate"`` and ``"round trip"``;
- ``progress.pass_done(phase, columns, lower_bound_per_row)``, for an object that has that
  method, after each pass of the fit's iterations: the lower bound per row of the columns
  (indices, an int array) that the pass iterated;
- ``progress.end_phase()``, for an object that has that method, when a fit, a
  ``transform_parquet`` or an ``inverse_parquet`` returns (or fails).

A plain function receives the first kind only. :class:`ProgressBars` draws both; the command
line turns its bars on when stderr is a terminal (or ``--progress``), and prints its lines.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import numpy as np

_LABELS = {"prepass": "pre-pass"}


def _group(phase: str) -> str:
    """The bar a phase belongs to: every pass of the iterations shares one."""
    if phase.startswith("sample "):
        return "sample stage"
    if phase.startswith("iteration"):
        return "iterations"
    return phase


class ProgressBars:
    """A tqdm bar per phase of a run, and a summary line per phase when it finishes.

    Parameters
    ----------
    total_rows : int or None
        Rows of the data (the bars' total); None: learnt from the pre-pass.
    max_iter : int or None
        The iterations bar's total (full passes at most).
    bars : bool, default=True
        Draw the bars (tqdm with ``disable=not bars`` otherwise: the summary lines still come).
    lines : callable or None
        ``lines(text)`` is called with one line per phase as it finishes (the command line
        prints them); :attr:`summaries` keeps them too.
    file : file-like, default=sys.stderr
        Where the bars are drawn.
    """

    def __init__(
        self,
        total_rows: int | None = None,
        *,
        max_iter: int | None = None,
        bars: bool = True,
        lines: Callable[[str], None] | None = None,
        file: IO[str] | None = None,
    ):
        from tqdm import tqdm

        self._tqdm = tqdm
        self.total_rows = total_rows
        self.max_iter = max_iter
        self.bars = bars
        self.lines = lines
        self.file = file
        self.summaries: list[str] = []
        self._group: str | None = None
        self._bar: Any = None
        # A phase runs from the previous one's last event (or its end) to its own end, so
        # what happens between two passes (k-means, an M-step) counts in the next one.
        self._since = self._last = time.perf_counter()
        self._rows = 0
        self._passes = 0
        self._lower: dict[int, float] = {}

    # ------------------------------------------------------------------ events
    def __call__(self, phase: str, rows: int) -> None:
        self._enter(_group(phase))
        self._last = time.perf_counter()
        self._rows += rows
        if self._group == "iterations":
            if self.total_rows:  # fractions of a pass, set exactly at each pass's end
                self._bar.update(rows / self.total_rows)
        elif self._group != "sample stage":  # a sample's passes are counted, not its rows
            self._bar.update(rows)

    def pass_done(self, phase: str, columns: np.ndarray, lower_bound_per_row: np.ndarray) -> None:
        self._enter(_group(phase))
        self._last = time.perf_counter()
        self._passes += 1
        for j, value in zip(np.asarray(columns).tolist(), lower_bound_per_row, strict=True):
            self._lower[int(j)] = float(value)
        bar = self._bar
        if self._group == "iterations" and self.total_rows:
            bar.n = self._passes
        else:
            bar.n = self._passes - 1
            bar.update(1)
        bar.set_postfix_str(f"lower bound/row {self._lower_text()}", refresh=False)
        bar.refresh()

    def end_phase(self) -> None:
        """End the current phase now (its bar closed, its line given); the next event starts
        a new one."""
        if self._group is not None:
            self._last = time.perf_counter()
        self._finish()

    close = end_phase

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ phases
    def _enter(self, group: str) -> None:
        if group == self._group:
            return
        self._finish()
        label = _LABELS.get(group, group)
        if group == "iterations":
            total: float | None = self.max_iter
            unit = " passes"
        elif group == "sample stage":
            total, unit = None, " passes"
        else:
            total, unit = self.total_rows, " rows"
        bar = self._tqdm(
            total=total,
            desc=f"{label:<12}",
            unit=unit,
            unit_scale=True,
            leave=False,
            dynamic_ncols=True,
            file=self.file if self.file is not None else sys.stderr,
            disable=not self.bars,
        )
        # Set together, after the bar exists: an interrupt (Ctrl-C) in between leaves no phase
        # half open for close() to trip on.
        self._group, self._bar, self._since = group, bar, self._last
        self._rows, self._passes, self._lower = 0, 0, {}

    def _finish(self) -> None:
        group, bar = self._group, self._bar
        if group is None or bar is None:
            return
        self._group, self._bar = None, None
        bar.close()
        seconds = self._last - self._since  # to its last event, or to end_phase
        label = _LABELS.get(group, group)
        if group == "prepass" and self.total_rows is None:
            self.total_rows = self._rows
        if group in ("iterations", "sample stage"):
            what = "over the sample" if group == "sample stage" else "over all rows"
            line = (
                f"{label:<12} {self._passes:>13,} passes {seconds:>8.2f} s   {what}; "
                f"lower bound/row {self._lower_text()}"
            )
        else:
            rate = self._rows / max(seconds, 1e-12)
            line = f"{label:<12} {self._rows:>13,} rows {seconds:>10.2f} s {rate:>14,.0f} rows/s"
        self.summaries.append(line)
        if self.lines is not None:
            self.lines(line)

    def _lower_text(self) -> str:
        values = [self._lower[j] for j in sorted(self._lower)]
        if not values:
            return "-"
        if len(values) <= 4:
            return ", ".join(f"{v:.6g}" for v in values)
        return f"mean {np.mean(values):.6g} over {len(values)} columns"


@contextlib.contextmanager
def progress_for(
    progress: Any, total_rows: int | None, max_iter: int | None = None
) -> Iterator[Any]:
    """``progress`` as the library's functions take it: a callable as given, None or False for
    none, True for :class:`ProgressBars` on stderr (closed when the block ends)."""
    if progress is True:
        with ProgressBars(total_rows, max_iter=max_iter) as bars:
            yield bars
        return
    try:
        yield progress or None
    finally:
        end_phase(progress)


def end_phase(progress: Any) -> None:
    """Tell ``progress`` that a phase ended, if it listens (``progress.end_phase()``)."""
    end = getattr(progress, "end_phase", None)
    if end is not None:
        end()
