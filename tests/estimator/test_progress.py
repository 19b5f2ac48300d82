"""Progress events of the fit, transform and inverse, and the bars and lines drawn from them
(gpuvgm._progress)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from conftest import five_modes, rtol

import gpuvgm
from gpuvgm._progress import ProgressBars


class Recorder:
    """Every event, in order."""

    def __init__(self):
        self.chunks: list[tuple[str, int]] = []
        self.passes: list[tuple[str, list[int], np.ndarray]] = []
        self.ends = 0

    def __call__(self, phase, rows):
        self.chunks.append((phase, rows))

    def pass_done(self, phase, columns, lower_bound_per_row):
        self.passes.append((phase, list(columns), np.asarray(lower_bound_per_row)))

    def end_phase(self):
        self.ends += 1


@pytest.fixture
def X(rng):
    x = np.column_stack([five_modes(3000, rng), rng.lognormal(0, 1, 3000)])
    x[::50, 1] = np.nan
    return x


def fit(X, progress, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        params = dict(max_iter=12, chunk_rows=1000, device="cpu", random_state=0)
        return gpuvgm.VGM(5, **{**params, **kw}).fit(X, progress=progress)


def test_the_lower_bound_reported_after_each_pass_is_the_fits(X):
    """scikit-learn's schedule: one pass_done per iteration with the active columns, whose
    values are the fit's own lower bounds (lower_bounds_) per non-null row."""
    rec = Recorder()
    model = fit(X, rec, schedule="sklearn")
    n_iter = model.n_iter_
    assert len(rec.passes) == n_iter.max()
    counts = (~np.isnan(X)).sum(axis=0)
    for it, (phase, cols, lower) in enumerate(rec.passes, start=1):
        assert phase == f"iteration {it}"
        assert cols == [j for j in range(2) if n_iter[j] >= it]  # converged columns drop out
        want = [model.lower_bounds_[j][it - 1] / counts[j] for j in cols]
        np.testing.assert_allclose(lower, want, rtol=rtol(np.float64, "twin"))
    # Chunk events: every pass reads every row, three chunks each.
    phases = [p for p, _ in rec.chunks]
    assert phases[:3] == ["prepass"] * 3 and phases[3:6] == ["init"] * 3
    assert sum(r for p, r in rec.chunks if p == "iteration 1") == len(X)
    assert rec.ends == 1  # the fit ended


def test_staged_fit_reports_its_sample_and_its_full_passes(X):
    rec = Recorder()
    model = fit(X, rec, schedule="staged", max_iter=20)
    sample = [p for p, _, _ in rec.passes if p.startswith("sample iteration")]
    full = [p for p, _, _ in rec.passes if p.startswith("iteration")]
    assert len(sample) + len(full) == len(rec.passes) and sample and full
    assert len(full) == model.fit_report_["passes"] - 1  # every full pass but the pre-pass
    # The sample's passes come first, and their chunks carry their own phase names.
    assert rec.passes.index(next(p for p in rec.passes if p[0] in full)) == len(sample)
    assert {p for p, _ in rec.chunks} >= {"prepass", "sample init", "iteration 1"}


def test_plain_functions_still_work_and_see_chunks_only(X, tmp_path):
    seen = []
    model = fit(X, lambda phase, rows: seen.append((phase, rows)))
    assert seen[0] == ("prepass", 1000)
    seen.clear()
    model.transform_parquet(X, tmp_path / "e.parquet", progress=lambda p, r: seen.append((p, r)))
    assert seen == [("transform", 1000)] * 3


def test_bars_and_lines():
    out, lines = io.StringIO(), []
    bars = ProgressBars(None, max_iter=10, bars=True, lines=lines.append, file=out)
    for _ in range(4):
        bars("prepass", 250)
    for it in (1, 2):
        bars(f"iteration {it}", 600)
        bars(f"iteration {it}", 400)
        bars.pass_done(f"iteration {it}", np.array([0, 1]), np.array([-1.5, -2.25]) * it)
    bars.end_phase()
    bars("transform", 1000)
    bars.close()
    assert [line.split()[:3] for line in lines] == [
        ["pre-pass", "1,000", "rows"],
        ["iterations", "2", "passes"],
        ["transform", "1,000", "rows"],
    ]
    assert lines[1].endswith("lower bound/row -3, -4.5")
    drawn = out.getvalue()
    assert "lower bound/row -1.5, -2.25" in drawn and "2.00/10" in drawn  # 2 of max_iter passes
    assert bars.summaries == lines
    # Off: no bars drawn, the lines still come.
    quiet, lines = io.StringIO(), []
    with ProgressBars(100, bars=False, lines=lines.append, file=quiet) as off:
        off("inverse", 100)
    assert quiet.getvalue() == "" and lines[0].split()[:2] == ["inverse", "100"]


def test_progress_true_draws_bars_on_stderr(X, capsys):
    fit(X, True)
    err = capsys.readouterr().err
    assert "pre-pass" in err and "iterations" in err and "lower bound/row" in err
