"""The HTML report of a wide table: seconds (the pass, then the drawing) and bytes per column.

    python bench/report.py [--columns 120] [--rows 100000] [--scale both|linear|log]

Prints the figures and writes nothing but a temporary report. The machine is shared: seconds
are noisy, bytes are not. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np

import gpuvgm


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--columns", type=int, default=120)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--scale", choices=["both", "linear", "log"], default="both")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    c = args.columns
    X = rng.normal(size=(args.rows, c)) * rng.uniform(0.5, 3, c) + rng.uniform(-5, 5, c)
    X[:, ::3] = np.where(rng.random((args.rows, len(range(0, c, 3)))) < 0.6, 0.0, X[:, ::3] ** 2)
    X[:, 1::3] = np.where(
        rng.random((args.rows, len(range(1, c, 3)))) < 0.01, X[:, 1::3] * 40, X[:, 1::3]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        model = gpuvgm.VGM(random_state=0, device="cpu", max_iter=10).fit(X)
    log = {"both": None, "log": True, "linear": False}[args.scale]
    path = os.path.join(tempfile.mkdtemp(), "report.html")
    model.report(X[:1000, :], path, columns=["0"])  # compile and import first
    t = time.perf_counter()
    model.report(X, path, log=log)
    seconds = time.perf_counter() - t
    size = os.path.getsize(path)
    print(
        f"report of {args.rows:,} rows x {c} columns ({args.scale}): {seconds:.1f} s "
        f"({seconds / c:.2f} s a column), {size / 1e6:.2f} MB ({size / c / 1e3:.1f} KB a column)"
    )


if __name__ == "__main__":
    main()
