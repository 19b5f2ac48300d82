"""The benchmark users run on their machine or card: gpuvgm's passes from 10**6 rows up.

For each size (as far as memory allows) it times, on generated float32 data held in the
backend's memory: the pre-pass, one E-step pass, the full fit (``--iterations`` passes), the
transform, and Parquet -> Parquet end to end (fit + transform to a file) for the sizes up to
``--parquet-max-rows``. Figures are rows/s, GB/s of input read, and the fraction of a floor
measured or known for this machine:

- CUDA: the card's memory bandwidth (DESIGN.md §5; H100 3.0 TB/s, A100 1.5-2.0 TB/s), i.e. the
  time to read 4 bytes per value once;
- CPU: a plain NumPy pass evaluating K exponentials per value, measured in the same run.

Side by side, where they finish (<= 10**7 rows): scikit-learn's BayesianGaussianMixture per
iteration and RDT's ClusterBasedNormalizer transform (its per-row Python loop).

    python bench/throughput.py --quick          # CPU, under a minute
    python bench/throughput.py --device cuda    # on a GPU box: 10**6 .. 10**9 rows
    python bench/throughput.py --compare-cpu --sizes 10000000   # the CPU backends, interleaved

``--compare-cpu`` times, interleaved in one run on the same data and the same fitted parameters:
the NumPy reference backend, the compiled backend (float32 and float64 compute), a bare NumPy
pass of K exponentials, and scikit-learn per iteration; it reports rows/s, rows per CPU-second
(process CPU time) and the ratios the compiled backend's goals are stated in (issue 12).

Writes bench/results/throughput-<backend>-<machine>-<date>.json and a log-log PNG of rows/s
against rows (when matplotlib is installed).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import gpuvgm  # noqa: E402
from gpuvgm._backends import get_backend  # noqa: E402

K = 10
CENTERS = np.array([-5.0, 0.0, 3.0, 8.0, 15.0], dtype=np.float32)
# Memory bandwidth of known cards, bytes/s (DESIGN.md §5 uses 3.0 TB/s measured on an H100).
CARD_BANDWIDTH = {"H100": 3.0e12, "H200": 4.0e12, "A100-SXM4-80GB": 2.0e12, "A100": 1.5e12}


def data(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return CENTERS[rng.integers(0, 5, n)] + rng.normal(0, 0.7, n).astype(np.float32)


def card() -> tuple[str, float | None]:
    """The GPU's name and known bandwidth, or the CPU's description and None."""
    try:
        import cupy

        name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        for key, bw in CARD_BANDWIDTH.items():
            if key in name:
                return name, bw
        return name, None
    except Exception:
        return f"{platform.processor() or platform.machine()} x{os.cpu_count()}", None


def cpu_info() -> dict:
    """The CPU's model, ``os.cpu_count()`` and its SIMD flags (Linux ``/proc/cpuinfo``)."""
    info: dict = {"cpu_count": os.cpu_count(), "model": platform.processor() or None}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and "model name" not in info:
            info["model name"] = value.strip()
        if key.strip() == "flags":
            flags = value.split()
            info["simd_flags"] = sorted(f for f in flags if f.startswith(("avx", "fma", "sse4")))
            break
    try:
        import numba
        from llvmlite import binding

        info["numba"] = numba.__version__
        info["numba_cpu_name"] = numba.config.CPU_NAME or binding.get_host_cpu_name()
    except ImportError:
        pass
    return info


FLOOR_BLOCK = 16384  # values per block of the bare NumPy K-exp pass
FLOOR_MAX_BLOCKS = 2000  # blocks it times; a longer pass is scaled from these


def cpu_floor_seconds(n: int) -> float:
    """A plain NumPy pass evaluating K exponentials per value, in cache-sized blocks."""
    block = np.linspace(-50, 0, K * FLOOR_BLOCK).reshape(K, -1)
    out = np.empty_like(block)
    reps = max(1, n // FLOOR_BLOCK)
    t = time.perf_counter()
    for _ in range(min(reps, FLOOR_MAX_BLOCKS)):
        np.exp(block, out=out)
    return (time.perf_counter() - t) * reps / min(reps, FLOOR_MAX_BLOCKS)


def fit(x, iterations: int, device: str) -> gpuvgm.VGM:
    model = gpuvgm.VGM(K, max_iter=iterations, tol=0.0, device=device, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        return model.fit(x)


def sklearn_seconds_per_iteration(x: np.ndarray) -> float:
    from sklearn.mixture import BayesianGaussianMixture

    def run(it: int) -> float:
        bgm = BayesianGaussianMixture(
            n_components=K,
            weight_concentration_prior=1e-3,
            weight_concentration_prior_type="dirichlet_process",
            max_iter=it,
            tol=0.0,
            random_state=0,
        )
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bgm.fit(x[:, None].astype(np.float64))
        return time.perf_counter() - t

    return (run(4) - run(1)) / 3


def rdt_transform_seconds(x: np.ndarray) -> float:
    import pandas as pd
    from rdt.transformers.numerical import ClusterBasedNormalizer

    frame = pd.DataFrame({"x": x.astype(np.float64)})
    cbn = ClusterBasedNormalizer(max_clusters=K)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cbn.fit(frame, "x")
        t = time.perf_counter()
        cbn.transform(frame)
    return time.perf_counter() - t


def parquet_end_to_end(x: np.ndarray, iterations: int, device: str) -> float:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.parquet", Path(tmp) / "out.parquet"
        pq.write_table(pa.table({"x": x}), src, row_group_size=1 << 20)
        t = time.perf_counter()
        model = fit(src, iterations, device)
        model.transform_parquet(src, dst, layout="compact")
        return time.perf_counter() - t


def _timed(fn) -> tuple[float, float]:
    """``(wall seconds, process CPU seconds)`` of ``fn()``."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def compare_cpu(n: int, reps: int, sklearn_rows: int) -> dict:
    """The CPU backends and their references, interleaved, on ``n`` float32 rows (one column)."""
    from gpuvgm._backends import _numba, _numpy

    x = data(n)[:, None]
    model = fit(x[:200_000].astype(np.float64), 10, "numpy")  # realistic parameters
    e = model._params()
    sampled = model._transform_params()
    argmax = dataclasses.replace(sampled, sample=False)
    t0 = time.perf_counter()
    for dtype in (np.float32, np.float64):  # compile (or load from the cache) before timing
        _numba.estep_stats(x[:1000], e, compute_dtype=dtype)
    _numba.transform(x[:1000], sampled, 0)
    _numba.transform(x[:1000], argmax, 0)
    first_call = time.perf_counter() - t0
    cases = {
        "estep_numpy": lambda: _numpy.estep_stats(x, e),
        "estep_numba_f32": lambda: _numba.estep_stats(x, e, compute_dtype=np.float32),
        "estep_numba_f64": lambda: _numba.estep_stats(x, e, compute_dtype=np.float64),
        "numpy_k_exp_pass": lambda: cpu_floor_seconds(n),
        "transform_sampled_numpy": lambda: _numpy.transform(x, sampled, 0),
        "transform_sampled_numba": lambda: _numba.transform(x, sampled, 0),
        "transform_argmax_numpy": lambda: _numpy.transform(x, argmax, 0),
        "transform_argmax_numba": lambda: _numba.transform(x, argmax, 0),
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    sk: list[float] = []
    xs = x[:sklearn_rows, 0].astype(np.float64)
    for _ in range(reps):  # interleaved: every case sees the same machine load, rep by rep
        for name, fn in cases.items():
            times[name].append(_timed(fn))
        sk.append(sklearn_seconds_per_iteration(xs) * n / xs.size)
    out: dict = {"rows": n, "reps": reps, "first_call_seconds_compile_or_cache": first_call}
    # identical components are required (issue 12): count the rows where the backends differ
    want, got = _numpy.transform(x, sampled, 0), _numba.transform(x, sampled, 0)
    out["sampled_component_mismatches"] = int(np.count_nonzero(want[1] != got[1]))
    out["sampled_alpha_identical"] = bool(np.array_equal(want[0], got[0], equal_nan=True))
    del want, got
    for name, ts in times.items():
        wall = float(np.median([w for w, _ in ts]))
        cpu = float(np.median([c for _, c in ts]))
        # the K-exp floor times at most FLOOR_MAX_BLOCKS blocks: its rows are those it ran
        rows = min(n, FLOOR_MAX_BLOCKS * FLOOR_BLOCK) if name == "numpy_k_exp_pass" else n
        out[name] = {"rows_per_second": rows / wall, "rows_per_cpu_second": rows / max(cpu, 1e-9)}
    out["numpy_k_exp_pass"]["note"] = (
        "timed on one thread over at most 2000 blocks of 16384 values; rows/s = rows per CPU-second"
    )
    out["sklearn_per_iteration"] = {
        "rows_per_second": n / float(np.median(sk)),
        "measured_on_rows": int(xs.size),
        "note": "seconds per iteration (fit(4) - fit(1)) / 3, scaled linearly to the rows",
    }
    r = {k: v["rows_per_second"] for k, v in out.items() if isinstance(v, dict)}
    c = {k: v.get("rows_per_cpu_second") for k, v in out.items() if isinstance(v, dict)}
    goals = {
        "estep_f32_vs_numpy": (r["estep_numba_f32"] / r["estep_numpy"], 8.0),
        "estep_f64_vs_numpy": (r["estep_numba_f64"] / r["estep_numpy"], 5.0),
        "transform_sampled_vs_numpy": (
            r["transform_sampled_numba"] / r["transform_sampled_numpy"],
            10.0,
        ),
        "estep_f32_vs_sklearn_iteration": (
            r["estep_numba_f32"] / r["sklearn_per_iteration"],
            40.0,
        ),
        "estep_f32_vs_numpy_per_cpu_second": (
            c["estep_numba_f32"] / c["estep_numpy"],
            8.0,
        ),
        "estep_f64_vs_numpy_per_cpu_second": (
            c["estep_numba_f64"] / c["estep_numpy"],
            5.0,
        ),
    }
    out["ratios"] = {
        k: {"ratio": v, "goal": g, "fraction_of_goal": v / g} for k, (v, g) in goals.items()
    }
    return out


def plot(results: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = [r["rows"] for r in results]
    for key, label in [
        ("estep_rows_per_second", "E-step pass"),
        ("transform_rows_per_second", "transform"),
        ("prepass_rows_per_second", "pre-pass"),
        ("sklearn_rows_per_second", "scikit-learn iteration"),
        ("rdt_transform_rows_per_second", "RDT transform"),
    ]:
        pts = [(r["rows"], r[key]) for r in results if r.get(key)]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows")
    ax.set_ylabel("rows / s")
    ax.set_xlim(min(rows) / 2, max(rows) * 2)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(f"gpuvgm throughput, K={K}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="CPU smoke run, under a minute")
    p.add_argument("--sizes", default=None, help="comma-separated row counts")
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--reference-max-rows", type=int, default=10_000_000)
    p.add_argument("--parquet-max-rows", type=int, default=100_000_000)
    p.add_argument("--compare-cpu", action="store_true", help="CPU backends, interleaved")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions (--compare-cpu)")
    p.add_argument("--sklearn-rows", type=int, default=1_000_000)
    args = p.parse_args()
    if args.compare_cpu:
        sizes = [int(s) for s in (args.sizes or "10000000").split(",")]
        load_before = os.getloadavg()  # the machine may be shared: the ratios move with it
        results = [compare_cpu(n, args.reps, args.sklearn_rows) for n in sizes]
        load_after = os.getloadavg()
        for res in results:
            print(f"  {res['rows']:,} rows, {res['reps']} interleaved reps (median):")
            for k, v in res.items():
                if isinstance(v, dict) and "rows_per_second" in v:
                    print(
                        f"    {k:26s} {v['rows_per_second'] / 1e6:8.2f} M rows/s"
                        + (
                            f"  {v['rows_per_cpu_second'] / 1e6:8.2f} M rows/CPU-s"
                            if "rows_per_cpu_second" in v
                            else ""
                        )
                    )
            for k, v in res["ratios"].items():
                print(
                    f"    {k:34s} {v['ratio']:7.2f}x  (goal {v['goal']:g}x: "
                    f"{v['fraction_of_goal']:.2f} of it)"
                )
        name, _ = card()
        stem = f"throughput-cpu-backends-{platform.node()}-{dt.date.today().isoformat()}"
        if sizes != [10_000_000]:  # the default size keeps the plain name; others are named
            stem += "-rows-" + "_".join(str(n) for n in sizes)
        (HERE / "results").mkdir(exist_ok=True)
        doc = {
            "date": dt.date.today().isoformat(),
            "device": name,
            "cpu": cpu_info(),
            "threads": os.environ.get("GPUVGM_NUM_THREADS") or os.cpu_count(),
            "command": " ".join(sys.argv),
            "load_average_1_5_15": {"before": load_before, "after": load_after},
            "results": results,
        }
        (HERE / "results" / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
        print(f"  wrote bench/results/{stem}.json")
        return
    if args.quick:
        sizes = [100_000, 1_000_000]
        args.iterations, args.reference_max_rows, args.parquet_max_rows = 3, 100_000, 1_000_000
    elif args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [10**6, 10**7, 10**8, 10**9]
    backend = get_backend(args.device)
    name, bandwidth = card()
    results = []
    for n in sizes:
        need = n * 4 * 3  # the data, a copy in the chunk, the transform's outputs (roughly)
        if backend.NAME == "numpy" and need > 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf(
            "SC_PHYS_PAGES"
        ):
            print(f"  {n:,} rows: skipped (needs more than half of host memory)")
            continue
        x = data(n)
        if backend.NAME == "cupy":
            x = backend.to_device(x)
        m = fit(x, args.iterations, args.device)
        s = m.fit_report_["seconds"]
        estep = s["iterations"] / args.iterations
        t = time.perf_counter()
        m.transform(x)
        transform = time.perf_counter() - t
        floor = n * 4 / bandwidth if bandwidth else cpu_floor_seconds(n)
        r = {
            "rows": n,
            "prepass_seconds": s["prepass"],
            "estep_seconds": estep,
            "fit_seconds": s["total"],
            "transform_seconds": transform,
            "prepass_rows_per_second": n / s["prepass"],
            "estep_rows_per_second": n / estep,
            "transform_rows_per_second": n / transform,
            "estep_gb_per_second": n * 4 / estep / 1e9,
            "floor_seconds": floor,
            "estep_fraction_of_floor": floor / estep,
        }
        host_x = x if isinstance(x, np.ndarray) else x.get()
        if n <= args.parquet_max_rows:
            r["parquet_end_to_end_seconds"] = parquet_end_to_end(
                host_x, args.iterations, args.device
            )
        if n <= args.reference_max_rows:
            sk = sklearn_seconds_per_iteration(host_x)
            r["sklearn_seconds_per_iteration"] = sk
            r["sklearn_rows_per_second"] = n / sk
            if n <= 1_000_000:
                r["rdt_transform_rows_per_second"] = n / rdt_transform_seconds(host_x)
        results.append(r)
        print(
            f"  {n:>13,} rows: pre-pass {r['prepass_rows_per_second']:.3g} rows/s, E-step "
            f"{r['estep_rows_per_second']:.3g} rows/s ({r['estep_gb_per_second']:.3g} GB/s, "
            f"{r['estep_fraction_of_floor']:.2f} of floor), transform "
            f"{r['transform_rows_per_second']:.3g} rows/s"
            + (
                f", scikit-learn {r['sklearn_rows_per_second']:.3g} rows/s"
                if "sklearn_rows_per_second" in r
                else ""
            )
        )
    stem = f"throughput-{backend.NAME}-{platform.node()}-{dt.date.today().isoformat()}"
    out = {
        "date": dt.date.today().isoformat(),
        "backend": backend.NAME,
        "device": name,
        "bandwidth_bytes_per_second": bandwidth,
        "iterations": args.iterations,
        "results": results,
    }
    if not args.quick:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / f"{stem}.json").write_text(json.dumps(out, indent=2) + "\n")
        if plot(results, HERE / "results" / f"{stem}.png"):
            print(f"  wrote bench/results/{stem}.json and .png")
        else:
            print(f"  wrote bench/results/{stem}.json (install matplotlib for the plot)")


if __name__ == "__main__":
    main()
