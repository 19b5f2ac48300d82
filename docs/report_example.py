"""Writes docs/report-example.png: the HTML report of a small table, as Chromium shows it.

The table has four columns a user meets in real data: flight delays (a heavy right tail, nulls
for cancelled flights), daily rain (64 % zeros), a bimodal temperature and a plain measurement.
The model is fitted with ``clip=0.99`` (CTGAN's setting), so the report shows the clipped tail
and its round-trip error. Run from the repository root::

    .venv/bin/python docs/report_example.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import gpuvgm


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", help="write the table, model and report here")
    parser.add_argument("--out", default="docs/report-example.png")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    n = 20_000
    delay = np.where(
        rng.random(n) < 0.8, rng.normal(-3, 6, n), rng.exponential(35, n) + rng.pareto(1.6, n) * 20
    )
    delay[rng.random(n) < 0.02] = np.nan  # cancelled
    rain = np.where(rng.random(n) < 0.64, 0.0, rng.gamma(0.8, 6.0, n))
    temp = np.where(rng.random(n) < 0.55, rng.normal(4, 3, n), rng.normal(19, 4, n))
    mass = rng.normal(4200, 800, n).round(-1)
    data = work / "table.parquet"
    table = {"dep_delay": delay, "rain_mm": rain, "temp_c": temp, "body_mass_g": mass}
    pq.write_table(pa.table(table), data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        model = gpuvgm.VGM(clip=0.99, random_state=0, device="cpu").fit(data)
    model.save(work / "model.gpuvgm", overwrite=True)
    page = work / "report.html"
    model.report(data, page, overwrite=True, title="gpuvgm report: example table")
    profile = tempfile.mkdtemp()
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={Path(args.out).resolve()}",
            "--window-size=1400,2000",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
    )
    print(f"wrote {args.out} (report: {page}, {page.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
