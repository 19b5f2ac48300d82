"""The diagnostics plot: a PNG of the expected size that decodes, from memory and from files;
what it shows: the whole data range, labels equal to the encoded codes, the clipped share, the
log scale."""

from __future__ import annotations

import re
import sys
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import five_modes, lognormal

import gpuvgm
from gpuvgm import DataError, NotFittedError, ParameterError
from gpuvgm._errors import MissingDependencyError

pytest.importorskip("matplotlib")
import matplotlib.image

from gpuvgm._estimator import plot_model, sample_columns


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(5)
    n = 6000
    skewed = lognormal(n, rng)
    skewed[::40] = np.nan
    X = np.column_stack([five_modes(n, rng), skewed, rng.standard_t(2, n)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        # CTGAN's clip (gpuvgm's default is none), so the titles give a clipped share.
        model = gpuvgm.VGM(random_state=0, device="cpu", max_iter=30, clip=0.99).fit(X)
    return model, X


def test_plot_writes_a_png_of_the_expected_size(fitted, tmp_path):
    model, X = fitted
    path = tmp_path / "fit.png"
    fig = model.plot(X, path, dpi=50, panel_size=(6.0, 4.0), n_cols=2)
    image = matplotlib.image.imread(path)
    # 3 columns on a 2-wide grid: 2 x 2 panels of 6 x 4 inches at 50 dpi.
    assert image.shape == (2 * 4 * 50, 2 * 6 * 50, 4)
    assert image[..., :3].std() > 0.05  # something was drawn
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 3
    for ax, j in zip(axes, range(3), strict=True):
        title = ax.get_title()
        n_valid = int(model.valid_components_[j].sum())
        assert title.startswith(f"{j}: {n_valid}/10 valid components, clipped ")
        labels = ax.get_legend_handles_labels()[1]
        assert "mixture" in labels
        codes = [int(m.group(1)) for m in map(re.compile(r"code (\d+):").match, labels) if m]
        assert codes == list(range(n_valid))
        assert ("pruned" in " ".join(labels)) == (n_valid < 10)


def test_plot_reads_files_through_sources_with_a_bounded_sample(fitted, tmp_path):
    _, X = fitted
    table = pa.table({"extra": np.arange(len(X)), "a": X[:, 0], "b": X[:, 1], "c": X[:, 2]})
    data = tmp_path / "data.parquet"
    pq.write_table(table, data, row_group_size=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        model_named = gpuvgm.VGM(random_state=0, device="cpu", max_iter=5, chunk_rows=1000).fit(
            data, columns=["a", "b", "c"]
        )
    got = sample_columns(model_named, data, sample_rows=500, max_rows=None)
    assert [s.size for s in got.samples] == [500, 500, 500]
    np.testing.assert_array_equal(got.n_read + got.n_null, [len(X)] * 3)
    assert got.n_null.tolist() == [0, int(np.isnan(X[:, 1]).sum()), 0]
    np.testing.assert_array_equal(got.minimum, np.nanmin(X, axis=0))
    np.testing.assert_array_equal(got.maximum, np.nanmax(X, axis=0))
    got = sample_columns(model_named, data, sample_rows=500, max_rows=2500)
    assert got.n_read.tolist() == [2500, 2500 - int(np.isnan(X[:2500, 1]).sum()), 2500]
    np.testing.assert_array_equal(got.maximum, np.nanmax(X[:2500], axis=0))

    path = tmp_path / "b.png"
    plot_model(model_named, data, path, columns=["b"], sample_rows=500, dpi=40)
    assert matplotlib.image.imread(path).shape == (int(3.6 * 40), 6 * 40, 4)


def test_plot_rejects_bad_input(fitted, tmp_path):
    model, X = fitted
    with pytest.raises(NotFittedError):
        gpuvgm.VGM().plot(X)
    with pytest.raises(ParameterError, match="bins"):
        model.plot(X, bins=0)
    with pytest.raises(ParameterError, match="quantile_range"):
        model.plot(X, quantile_range=(0.9, 0.1))
    with pytest.raises(ParameterError, match="'log'"):
        model.plot(X, log="yes")
    with pytest.raises(DataError, match="not one of the model's columns"):
        model.plot(X, columns=["nope"])
    with pytest.raises(DataError):
        model.plot(X[:, :2])  # two columns for a three-column model


def test_missing_matplotlib_is_a_typed_error_naming_the_extra(fitted, monkeypatch):
    model, X = fitted
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingDependencyError, match=r"gpuvgm\[plot\]"):
        model.plot(X)


def _axis(fig, j=0):
    return [ax for ax in fig.axes if ax.get_visible()][j]


def test_the_x_axis_spans_every_value_and_keeps_the_centre_at_full_scale(fitted):
    model, X = fitted
    t = X[:, 2]  # Student t with 2 degrees of freedom: a heavy tail both ways
    # A small sample misses the extremes; the range comes from every row read.
    fig = model.plot(X, columns=["2"], sample_rows=300, dpi=40)
    sample = sample_columns(model, X, sample_rows=300, max_rows=None).samples[2]
    assert sample.max() < t.max() and sample.min() > t.min()
    ax = _axis(fig)
    lo, hi = ax.get_xlim()
    assert lo <= t.min() and hi >= t.max()
    # The central 0.1 %-99.9 % range keeps most of the width: the tails are compressed.
    q_lo, q_hi = np.quantile(sample, [0.001, 0.999])
    px = ax.transData.transform(np.column_stack([[lo, q_lo, q_hi, hi], np.zeros(4)]))[:, 0]
    assert (px[2] - px[1]) / (px[3] - px[0]) > 0.7
    assert (t.max() - t.min()) / (q_hi - q_lo) > 3  # which a linear axis would squash
    # The extremes are marked and labelled as ticks.
    marks = next(line for line in ax.get_lines() if line.get_label() == "min / max")
    np.testing.assert_array_equal(marks.get_xdata(), [t.min(), t.max()])
    assert t.max() in ax.get_xticks() and t.min() in ax.get_xticks()


def test_component_labels_are_the_codes_the_transform_writes(rng):
    # Valid components at positions 1, 4 and 7 of 10 (the other centres get no rows and are
    # pruned), so a label counting all K components would say 1, 4, 7 where the codes are 0-2.
    x = np.concatenate([rng.normal(m, 0.3, 2000) for m in (-5.0, 0.0, 5.0)])
    centres = np.array([100.0, -5, 101, 102, 0, 103, 104, 5, 105, 106])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        model = gpuvgm.VGM(
            means_init=centres, component_selection="argmax", device="cpu", max_iter=20
        ).fit(x)
    assert np.flatnonzero(model.valid_components_[0]).tolist() == [1, 4, 7]
    ax = _axis(model.plot(x, dpi=40))
    peaks, labels = [], []
    for line in ax.get_lines():
        found = re.match(r"code (\d+):", str(line.get_label()))
        if found:
            peaks.append(line.get_xdata()[np.argmax(line.get_ydata())])
            labels.append(int(found.group(1)))
    assert sorted(labels) == [0, 1, 2]
    # A row at each labelled curve's peak is encoded with the label's code.
    codes = model.transform(np.array(peaks)).component[:, 0]
    assert codes.tolist() == labels


def test_the_clipped_share_is_shaded_and_matches_the_transform(fitted):
    model, X = fitted
    ax = _axis(model.plot(X, columns=["2"], sample_rows=5000, dpi=40))
    sample = sample_columns(model, X, sample_rows=5000, max_rows=None).samples[2]
    padded = np.full((sample.size, 3), 0.0)
    padded[:, 2] = sample
    n_clipped = int(model.transform(padded).n_clipped[2])
    assert n_clipped > 0
    assert ax.get_title().endswith(f"clipped {n_clipped / sample.size:.2%}")
    labels = ax.get_legend_handles_labels()[1]
    assert f"clipped |α| ≥ 0.99 ({n_clipped / sample.size:.3%})" in labels
    # The red band: beyond mean_k + 4 clip std_k of every valid component; every value there
    # is clipped whatever component it gets.
    valid = model.valid_components_[2]
    sd = np.sqrt(model.covariances_[2][valid])
    above = np.max(model.means_[2][valid] + 4 * 0.99 * sd)
    below = np.min(model.means_[2][valid] - 4 * 0.99 * sd)
    bands = [p for p in ax.patches if p.get_gid() == "clipped-region"]
    edges = sorted(
        ax.transData.inverted().transform(b.get_window_extent().get_points())[:, 0].tolist()
        for b in bands
    )
    assert len(edges) == 2
    width = sample.max() - sample.min()
    assert edges[0][1] == pytest.approx(below, abs=1e-6 * width)
    assert edges[1][0] == pytest.approx(above, abs=1e-6 * width)
    beyond = sample[(sample > above) | (sample < below)]
    assert beyond.size > 0
    alpha = model.transform(np.column_stack([beyond, beyond, beyond])).normalized[:, 2]
    assert np.all(np.abs(alpha) == 0.99)
    # Clipping off: no clipped values, no shading.
    unclipped = gpuvgm.VGM(**{**model.get_params(), "clip": None})._adopt(model._fitted)
    ax = _axis(unclipped.plot(X, columns=["2"], sample_rows=5000, dpi=40))
    assert ax.get_title().endswith("clip off")
    assert not any("clipped" in label for label in ax.get_legend_handles_labels()[1])


def test_log_option_sets_a_log_density_scale(fitted, tmp_path):
    model, X = fitted
    assert _axis(model.plot(X, dpi=40)).get_yscale() == "linear"
    ax = _axis(model.plot(X, dpi=40, log=True))
    assert ax.get_yscale() == "log"
    bottom, top = ax.get_ylim()
    assert 0 < bottom < top
    from gpuvgm.cli import main

    path = tmp_path / "m.gpuvgm"
    model.save(path)
    data = tmp_path / "d.parquet"
    pq.write_table(pa.table({str(j): X[:, j] for j in range(3)}), data)
    out = tmp_path / "log.png"
    assert main(["plot", str(path), str(data), "-o", str(out), "--log", "--dpi", "30", "-q"]) == 0
    assert matplotlib.image.imread(out).shape[2] == 4
