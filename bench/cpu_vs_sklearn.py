"""gpuvgm on the CPU (device="cpu", the compiled backend) against scikit-learn's BGM.

Speed: both fit the same 1 000 000-row column in this process for the same fixed numbers of
iterations; seconds per iteration are the difference between a long and a short fit divided by
the difference in iterations (so k-means initialisation is not counted for either).

Memory: peak resident memory of a fresh child process per case (``ru_maxrss``), for
scikit-learn in memory and for gpuvgm streaming the column from Parquet with the host cache off,
at two sizes, to show that gpuvgm's memory does not grow with rows.

    python bench/cpu_vs_sklearn.py            # full run (a few minutes on 2 cores)
    python bench/cpu_vs_sklearn.py --quick    # smaller sizes, a smoke check

Prints a table and writes JSON to bench/results/cpu_vs_sklearn-<host>-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report its parent's.
from gpuvgm._profiling import peak_rss_bytes  # noqa: E402


def column(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = [(-5, 1.0), (0, 0.5), (3, 0.3), (8, 2.0), (15, 1.0)]
    return rng.permutation(np.concatenate([rng.normal(m, s, n // 5) for m, s in parts]))[:n]


def sklearn_fit(x: np.ndarray, max_iter: int) -> float:
    from sklearn.mixture import BayesianGaussianMixture

    bgm = BayesianGaussianMixture(
        n_components=10,
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=1e-3,
        max_iter=max_iter,
        tol=0.0,
        random_state=0,
    )
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bgm.fit(x[:, None])
    return time.perf_counter() - t


def gpuvgm_fit(x, max_iter: int, **kw) -> float:
    import gpuvgm

    # schedule="sklearn": every iteration is one full pass, as scikit-learn's (the staged
    # schedule, the default from 200 000 rows, spends max_iter on sample passes and merge trials)
    kw = {"schedule": "sklearn", **kw}
    model = gpuvgm.VGM(10, max_iter=max_iter, tol=0.0, device="cpu", random_state=0, **kw)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        model.fit(x)
    return time.perf_counter() - t


def per_iteration(fit, x, short: int, long: int) -> float:
    return (fit(x, long) - fit(x, short)) / (long - short)


def write_parquet(path: Path, n: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    block = 2_000_000
    with pq.ParquetWriter(path, pa.schema([("x", pa.float64())])) as w:
        for start in range(0, n, block):
            w.write_table(pa.table({"x": column(min(block, n - start), seed=start)}))


def child(kind: str, rows: int, path: str | None) -> None:
    """Run one fit and print the peak RSS (bytes) as JSON."""
    base = peak_rss_bytes()
    if kind == "sklearn":
        sklearn_fit(column(rows), max_iter=3)
    else:
        gpuvgm_fit(path, max_iter=3, cache_bytes=0)
    print(json.dumps({"peak_rss": peak_rss_bytes(), "baseline_rss": base}))


def peak_rss(kind: str, rows: int, path: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--rows", str(rows)]
    if path is not None:
        cmd += ["--path", str(path)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=["sklearn", "gpuvgm"])
    parser.add_argument("--rows", type=int)
    parser.add_argument("--path")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rows, args.path)
        return

    rows = 200_000 if args.quick else 1_000_000
    short, long = (2, 5) if args.quick else (2, 12)
    mem_sizes = (200_000, 2_000_000) if args.quick else (1_000_000, 20_000_000)
    sk_mem_rows = 1_000_000 if args.quick else 5_000_000
    from gpuvgm._parallel import n_threads

    x = column(rows)
    # The compiled kernels load from Numba's cache (or compile) on their first call: not an
    # iteration's cost, so one small fit first (per_iteration runs the long fit first).
    gpuvgm_fit(x[:20_000], 1)
    sk = per_iteration(sklearn_fit, x, short, long)
    ours = per_iteration(gpuvgm_fit, x, short, long)

    mem = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in mem_sizes:
            path = Path(tmp) / f"x{n}.parquet"
            write_parquet(path, n)
            mem[f"gpuvgm_parquet_{n}"] = peak_rss("gpuvgm", n, path)["peak_rss"]
            path.unlink()
    mem[f"sklearn_{sk_mem_rows}"] = peak_rss("sklearn", sk_mem_rows)["peak_rss"]
    growth = mem[f"gpuvgm_parquet_{mem_sizes[1]}"] - mem[f"gpuvgm_parquet_{mem_sizes[0]}"]

    result = {
        "date": dt.date.today().isoformat(),
        "machine": {
            "node": platform.node(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "threads": n_threads(),
        },
        "rows": rows,
        "iterations": [short, long],
        "sklearn_seconds_per_iteration": sk,
        "gpuvgm_seconds_per_iteration": ours,
        "speedup": sk / ours,
        "sklearn_us_per_row_iteration": sk / rows * 1e6,
        "gpuvgm_us_per_row_iteration": ours / rows * 1e6,
        "peak_rss_bytes": mem,
        "gpuvgm_rss_growth_bytes": growth,
        "goals": {"speedup_at_least": 5.0, "rss_growth_below_bytes": 200e6},
    }
    print(f"{rows:,} rows, K=10, iterations {short}->{long}, {result['machine']['cpus']} CPUs")
    print(
        f"  scikit-learn  {sk:8.4f} s/iteration  ({result['sklearn_us_per_row_iteration']:.3f}"
        " us per row-iteration)"
    )
    print(
        f"  gpuvgm cpu    {ours:8.4f} s/iteration  ({result['gpuvgm_us_per_row_iteration']:.3f}"
        " us per row-iteration)"
    )
    print(f"  speed-up      {sk / ours:8.1f}x   (goal >= 5x)")
    for name, value in mem.items():
        print(f"  peak RSS {name:<26} {value / 1e6:8.0f} MB")
    print(
        f"  gpuvgm peak RSS growth {mem_sizes[0]:,} -> {mem_sizes[1]:,} rows: "
        f"{growth / 1e6:.0f} MB   (goal < 200 MB)"
    )
    out = HERE / "results" / f"cpu_vs_sklearn-{platform.node()}-{result['date']}.json"
    if not args.quick:
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"  wrote {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
