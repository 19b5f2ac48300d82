"""The diagnostics plot: a PNG of the expected size that decodes, from memory and from files."""

from __future__ import annotations

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
        assert sum(label.startswith("k=") for label in labels) == n_valid
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
    samples, n_read, n_null = sample_columns(model_named, data, sample_rows=500, max_rows=None)
    assert [s.size for s in samples] == [500, 500, 500]
    np.testing.assert_array_equal(n_read + n_null, [len(X)] * 3)
    assert n_null.tolist() == [0, int(np.isnan(X[:, 1]).sum()), 0]
    _, n_read, _ = sample_columns(model_named, data, sample_rows=500, max_rows=2500)
    assert n_read.tolist() == [2500, 2500 - int(np.isnan(X[:2500, 1]).sum()), 2500]

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
    with pytest.raises(DataError, match="not one of the model's columns"):
        model.plot(X, columns=["nope"])
    with pytest.raises(DataError):
        model.plot(X[:, :2])  # two columns for a three-column model


def test_missing_matplotlib_is_a_typed_error_naming_the_extra(fitted, monkeypatch):
    model, X = fitted
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingDependencyError, match=r"gpuvgm\[plot\]"):
        model.plot(X)
