"""Seconds per iteration of a Dask fit on a LocalCluster (1 and 2 workers) against the
single-process fit of the same data, in one run; and the scheduler overhead per iteration.

    python bench/dask_bench.py --rows 4000000 --columns 2 --iterations 10

Overhead: a 1 000-row, one-partition fit on the cluster minus the same fit in one process, per
iteration (round trip to the scheduler, graph submission, the reduction, the result's transfer).
Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np


def per_iteration(x, **kw) -> float:
    import gpuvgm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        model = gpuvgm.VGM(n_components=10, tol=0.0, random_state=0, device="cpu", **kw).fit(x)
    return model.fit_report_["seconds"]["iterations"] / int(model.n_iter_.max())


def main() -> None:
    import dask.array as da
    from distributed import Client, LocalCluster

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--columns", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=8)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    x = np.column_stack(
        [
            np.where(
                rng.random(args.rows) < 0.5,
                rng.normal(0, 1, args.rows),
                rng.normal(6, 2, args.rows),
            )
            for _ in range(args.columns)
        ]
    )
    tiny = x[:1000]
    it = args.iterations
    single = per_iteration(x, max_iter=it)
    single_tiny = per_iteration(tiny, max_iter=50)
    out = {"rows": args.rows, "columns": args.columns, "single_s_per_iter": single}
    for workers in (1, 2):
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster),
        ):
            xd = da.from_array(x, chunks=(-(-args.rows // args.partitions), args.columns))
            t = per_iteration(xd, max_iter=it)
            overhead = per_iteration(da.from_array(tiny), max_iter=50) - single_tiny
        out[f"dask_{workers}w_s_per_iter"] = t
        out[f"dask_{workers}w_ratio_to_single"] = t / single
        out[f"overhead_{workers}w_ms_per_iter"] = overhead * 1e3
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
