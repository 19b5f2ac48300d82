"""The HTML report as a browser shows it: headless Chromium renders the page, its DOM holds a
summary row and a section per column, and the screenshot is not blank.

Skipped when Chromium is not installed, unless ``GPUVGM_REQUIRE_CHROMIUM=1`` (CI, which installs
it), where its absence is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import gpuvgm

pytest.importorskip("matplotlib")
from PIL import Image

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def chromium() -> str:
    found = next((p for p in map(shutil.which, _NAMES) if p), None)
    if found is None:
        if os.environ.get("GPUVGM_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"GPUVGM_REQUIRE_CHROMIUM=1 but no browser was found ({', '.join(_NAMES)})")
        pytest.skip("chromium not found; set GPUVGM_REQUIRE_CHROMIUM=1 to make this a failure")
    return found


def _run(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        browser,
        "--headless",
        "--no-sandbox",  # as root in a container
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


class _Rows(HTMLParser):
    """The text of each ``<tr id=row-N>`` of the rendered DOM, and every element id."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, str] = {}
        self.ids: set[str] = set()
        self._row: str | None = None

    def handle_starttag(self, tag, attrs):
        ident = dict(attrs).get("id")
        if ident:
            self.ids.add(ident)
        if tag == "tr" and ident and ident.startswith("row-"):
            self._row = ident
            self.rows[ident] = ""

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._row:
            self.rows[self._row] += data + " "


def test_chromium_renders_the_report(chromium, tmp_path, rng):
    n = 4000
    heavy = np.where(rng.random(n) < 0.97, rng.normal(0, 1, n), rng.standard_t(1.5, n) * 10)
    zeros = np.where(rng.random(n) < 0.6, 0.0, rng.gamma(2.0, 3.0, n))
    zeros[::50] = np.nan
    X = np.column_stack([heavy, zeros, rng.normal(3, 2, n)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        model = gpuvgm.VGM(random_state=0, device="cpu", max_iter=10).fit(X)
    page = tmp_path / "report.html"
    rows = model.report(X, page, sample_rows=2000, dpi=60)

    dom = _run(chromium, tmp_path / "p1", "--dump-dom", page.as_uri()).stdout
    parsed = _Rows()
    parsed.feed(dom)
    assert sorted(parsed.rows) == [f"row-{j}" for j in range(3)]
    for j, row in enumerate(rows):
        text = parsed.rows[f"row-{j}"].split()
        assert text[:2] == [str(j), row["name"]]  # position, then the name
        assert f"{row['rows']:,}" in text and f"{row['nulls']:,}" in text
        assert f"col-{j}" in parsed.ids

    shot = tmp_path / "shot.png"
    _run(
        chromium, tmp_path / "p2", f"--screenshot={shot}", "--window-size=1400,2000", page.as_uri()
    )
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape == (2000, 1400, 3)
    colours = np.unique(image.reshape(-1, 3), axis=0)
    assert len(colours) > 50  # text, tables and plots, not one colour
    # The plots are on screen: pixels of the component curves' colours (blue, orange...).
    blue = np.all(np.abs(image.astype(int) - [0x1F, 0x77, 0xB4]) < 40, axis=2)
    assert blue.sum() > 200
