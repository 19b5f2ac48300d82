"""The HTML report: its figures against an independent computation, a page that needs nothing
outside itself, the destination rules of every output, and the CLI command."""

from __future__ import annotations

import base64
import io
import json
import sys
import warnings
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gpuvgm
from gpuvgm import DataError, OverwriteError, ParameterError
from gpuvgm._errors import MissingDependencyError

pytest.importorskip("matplotlib")
from PIL import Image

from gpuvgm.cli import main


def table(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A heavy tail (delays), a zero-inflated column (rain) with nulls, two modes."""
    delay = np.where(rng.random(n) < 0.97, rng.normal(5, 8, n), rng.pareto(1.2, n) * 40 + 20)
    rain = np.where(rng.random(n) < 0.64, 0.0, rng.gamma(1.5, 4.0, n))
    rain[::37] = np.nan
    modes = np.where(rng.random(n) < 0.5, rng.normal(-4, 1, n), rng.normal(6, 0.5, n))
    return {"delay": delay, "rain": rain, "temp": modes}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    rng = np.random.default_rng(15)
    cols = table(6000, rng)
    data = tmp_path_factory.mktemp("report") / "table.parquet"
    pq.write_table(pa.table(cols), data, row_group_size=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        model = gpuvgm.VGM(random_state=0, device="cpu", max_iter=15, clip=0.99, chunk_rows=1500)
        model.fit(data)
    return model, data, np.column_stack(list(cols.values()))


class _Page(HTMLParser):
    """The tags of a page: every element's attributes, by tag."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def test_summary_figures_match_an_independent_round_trip(fitted, tmp_path):
    model, data, X = fitted
    out = tmp_path / "report.html"
    rows = model.report(data, out, sample_rows=2000, log=False, dpi=40)
    enc = model.transform(X)
    back = model.inverse_transform(enc)
    assert [r["name"] for r in rows] == ["delay", "rain", "temp"]
    for j, r in enumerate(rows):
        x = X[:, j]
        ok = ~np.isnan(x)
        assert r["rows"] == len(x) and r["nulls"] == int((~ok).sum())
        np.testing.assert_array_equal(np.isnan(back[:, j]), ~ok)  # nulls back as nulls
        expected = np.max(np.abs(back[ok, j] - x[ok])) / np.std(x[ok], ddof=1)
        np.testing.assert_allclose(r["round_trip"], expected, rtol=1e-9)
        assert r["n_clipped"] == int(enc.n_clipped[j])
        assert r["clipped_share"] == pytest.approx(enc.n_clipped[j] / ok.sum())
        valid = model.valid_components_[j]
        np.testing.assert_array_equal(r["weights"], model.weights_[j][valid])
        assert r["codes"] == list(range(int(valid.sum())))
        assert sum(r["weights"]) + r["pruned_weight"] == pytest.approx(1.0)
        assert r["n_iter"] == model.n_iter_[j] and r["converged"] == model.converged_[j]
        assert r["lower_bound"] == model.lower_bound_[j]
        assert (r["minimum"], r["maximum"]) == (np.nanmin(x), np.nanmax(x))
    # The heavy tail is clipped at |alpha| = 0.99 and does not round trip; a column does
    # exactly when none of its values is clipped.
    assert rows[0]["n_clipped"] > 0 and rows[0]["round_trip"] > 1.0
    assert all((r["n_clipped"] == 0) == (r["round_trip"] < 1e-12) for r in rows)
    # Without clipping every column round trips exactly.
    unclipped = gpuvgm.VGM(**{**model.get_params(), "clip": None})._adopt(model._fitted)
    exact = unclipped.report(data, tmp_path / "exact.html", sample_rows=500, log=False, dpi=30)
    assert all(r["round_trip"] <= 1e-12 and r["n_clipped"] == 0 for r in exact)


def test_the_page_is_self_contained_with_one_summary_row_and_plot_per_column(fitted, tmp_path):
    model, data, _ = fitted
    out = tmp_path / "report.html"
    model.report(data, out, sample_rows=2000, dpi=40)
    text = out.read_text(encoding="utf-8")
    page = _parse(text)
    ids = {a["id"] for _, a in page.tags if a.get("id")}
    for j in range(3):
        assert {f"row-{j}", f"col-{j}"} <= ids
    for tag, attrs in page.tags:
        # Nothing is fetched: no script, no stylesheet link, no remote URL.
        assert tag not in ("script", "link", "iframe")
        if tag == "a":
            assert attrs["href"].startswith("#") and attrs["href"][1:] in ids
        if "src" in attrs:
            assert tag == "img" and attrs["src"].startswith("data:image/png;base64,")
    assert "http://" not in text and "https://" not in text
    images = [a for t, a in page.tags if t == "img"]
    assert len(images) == 3
    for attrs in images:
        assert attrs["loading"] == "lazy"
        png = Image.open(io.BytesIO(base64.b64decode(attrs["src"].split(",", 1)[1])))
        assert png.size == (int(attrs["width"]), int(attrs["height"]))
        assert png.size == (int(7.5 * 40), int(2 * 3.0 * 40))  # linear above, log below
        assert len(png.getcolors(256) or range(257)) > 4  # drawn, not blank
    assert f'content="gpuvgm report {gpuvgm.__version__}"' in text


def test_columns_subset_and_many_columns(tmp_path, rng):
    # Of a 120-column model, two columns (their ids are their positions in the model).
    X = rng.normal(size=(300, 120)) * rng.uniform(0.5, 3, 120) + rng.uniform(-5, 5, 120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        model = gpuvgm.VGM(3, random_state=0, device="cpu", max_iter=3).fit(X)
    out = tmp_path / "sub.html"
    rows = model.report(X, out, columns=["7", "119"], dpi=30, log=True)
    assert [r["name"] for r in rows] == ["7", "119"]
    ids = {a.get("id") for _, a in _parse(out.read_text()).tags}
    assert {"row-7", "col-7", "row-119", "col-119"} <= ids and "col-0" not in ids
    with pytest.raises(DataError, match="not one of the model's columns"):
        model.report(X, out, columns=["nope"])


def test_destination_rules_and_atomic_write(fitted, tmp_path, monkeypatch):
    model, data, _ = fitted
    with pytest.raises(OverwriteError, match="is the input"):
        model.report(data, data)
    other = tmp_path / "notes.html"
    other.write_text("<html>my notes</html>")
    with pytest.raises(OverwriteError, match="not a gpuvgm report"):
        model.report(data, other, dpi=30, log=False)
    assert other.read_text() == "<html>my notes</html>"
    model.report(data, other, dpi=30, log=False, overwrite=True)  # asked for
    model.report(data, other, dpi=30, log=False)  # a report replaces a report
    with pytest.raises(ParameterError, match="sample_rows"):
        model.report(data, tmp_path / "r.html", sample_rows=0)

    # A failure while the page is built leaves nothing at the destination, and no temporary.
    import gpuvgm._report as report

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(report, "render", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        model.report(data, tmp_path / "new.html", dpi=30, log=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.html"]


def test_missing_matplotlib_fails_before_the_pass(fitted, tmp_path, monkeypatch):
    model, data, _ = fitted
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingDependencyError, match=r"gpuvgm\[plot\]"):
        model.report(data, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_cli_report_writes_the_page_and_the_metrics(fitted, tmp_path, capsys):
    model, data, _ = fitted
    path = tmp_path / "m.gpuvgm"
    model.save(path)
    out, metrics = tmp_path / "r.html", tmp_path / "r.json"
    argv = ["report", str(path), str(data), "-o", str(out), "--dpi", "30", "--scale", "log"]
    assert main([*argv, "--device", "cpu", "--metrics-json", str(metrics)]) == 0
    assert "wrote" in capsys.readouterr().out and out.read_text().startswith("<!DOCTYPE html>")
    columns = json.loads(metrics.read_text())["columns"]
    assert [c["name"] for c in columns] == ["delay", "rain", "temp"]
    # The output may not be an input; a file that is not a report needs --force.
    assert main(["report", str(path), str(data), "-o", str(data)]) == 1
    assert "is the input" in capsys.readouterr().err
    other = tmp_path / "x.txt"
    other.write_text("keep")
    assert main(["report", str(path), str(data), "-o", str(other)]) == 1
    assert "--force" in capsys.readouterr().err and other.read_text() == "keep"
