"""Parquet to Parquet: gpuvgm's passes against pyarrow alone reading and writing the same data.

In one run, on one generated float32 Parquet file:

- the floor: pyarrow reading the column into NumPy, and writing an encoded-size table
  (float32 alpha + int8 component) back to Parquet;
- gpuvgm's reader alone (the chunks a pass gets: row groups decoded in parallel, as NumPy), and
  its directory writer alone (the same table as part files encoded in parallel);
- gpuvgm's pre-pass, one E-step pass streamed from the file (host cache off) and one from the
  host cache, the transform alone to one Parquet file and to a directory of part files (written
  in parallel), and the whole job: fit (``--iterations``) + transform to one Parquet file
  (compact layout);
- with ``--memory``: peak RSS of ``fit`` in child processes at 10**7 and 2 x 10**8 rows
  (goal: under 2 GB, and within 200 MB of each other).

    python bench/io_bench.py [--rows 10000000] [--iterations 5] [--device cpu] [--memory]

Prints the figures as rows/s and as ratios to the floor; writes JSON to bench/results/.
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
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import gpuvgm  # noqa: E402
from gpuvgm._profiling import peak_rss_bytes  # noqa: E402

BLOCK = 5_000_000


def write_data(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    centers = np.array([-5.0, 0.0, 3.0, 8.0, 15.0], dtype=np.float32)
    with pq.ParquetWriter(path, pa.schema([("x", pa.float32())])) as w:
        for start in range(0, rows, BLOCK):
            n = min(BLOCK, rows - start)
            x = centers[rng.integers(0, 5, n)] + rng.normal(0, 0.7, n).astype(np.float32)
            w.write_table(pa.table({"x": x}), row_group_size=1 << 20)


def read_floor(path: Path, chunk_rows: int) -> float:
    """pyarrow alone reading the column into NumPy: the faster of streaming record batches and
    ``read_table`` (threads), each the best of two runs (the first warms the page cache)."""

    def batches() -> None:
        with pq.ParquetFile(path) as f:
            for batch in f.iter_batches(batch_size=chunk_rows, columns=["x"]):
                batch.column(0).to_numpy()

    def table() -> None:
        pq.read_table(path, columns=["x"]).column(0).to_numpy()

    best = float("inf")
    for fn in (batches, table, batches, table):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def source_read(path: Path, chunk_rows: int) -> float:
    """gpuvgm's own reader: the chunks a pass gets (row groups decoded in parallel, converted to
    NumPy), without computing on them."""
    from gpuvgm._inputs import make_source

    t = time.perf_counter()
    rows = sum(len(chunk) for _, chunk in make_source(path).chunks(chunk_rows))
    assert rows > 0
    return time.perf_counter() - t


def write_floor(path: Path, rows: int) -> float:
    alpha = np.zeros(min(rows, BLOCK), dtype=np.float32)
    comp = np.zeros(min(rows, BLOCK), dtype=np.int8)
    table = pa.table({"x.normalized": alpha, "x.component": comp})
    t = time.perf_counter()
    with pq.ParquetWriter(path, table.schema) as w:
        for start in range(0, rows, BLOCK):
            w.write_table(table.slice(0, min(BLOCK, rows - start)), row_group_size=1 << 20)
    return time.perf_counter() - t


def part_writer(folder: Path, rows: int) -> float:
    """The same encoded-size table as :func:`write_floor`, through gpuvgm's directory output
    (part files encoded in parallel on the I/O threads)."""
    from gpuvgm._writers import parquet_output

    alpha = np.zeros(min(rows, BLOCK), dtype=np.float32)
    comp = np.zeros(min(rows, BLOCK), dtype=np.int8)
    table = pa.table({"x.normalized": alpha, "x.component": comp})
    t = time.perf_counter()
    with parquet_output(folder, table.schema, 1 << 20) as write:
        for start in range(0, rows, 1 << 20):
            write(table.slice(0, min(1 << 20, rows - start, table.num_rows)))
    return time.perf_counter() - t


def fit(path: Path, iterations: int, device: str, chunk_rows: int, cache: bool) -> gpuvgm.VGM:
    model = gpuvgm.VGM(
        10,
        max_iter=iterations,
        tol=0.0,
        device=device,
        chunk_rows=chunk_rows,
        cache_bytes=(8 << 30) if cache else 0,
        # Streamed means from the file every pass: no device cache either (GPU).
        device_cache_fraction=0.5 if cache else 0.0,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        return model.fit(path)


def child(path: str, device: str) -> None:
    base = peak_rss_bytes()
    fit(Path(path), 2, device, 1 << 20, cache=False)
    print(json.dumps({"peak_rss": peak_rss_bytes(), "baseline": base}))


def memory(tmp: Path, device: str) -> dict:
    out = {}
    for rows in (10_000_000, 200_000_000):
        path = tmp / f"mem{rows}.parquet"
        write_data(path, rows)
        res = subprocess.run(
            [sys.executable, __file__, "--child", str(path), "--device", device],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        out[rows] = json.loads(res.strip().splitlines()[-1])["peak_rss"]
        path.unlink()
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--chunk-rows", type=int, default=1 << 20)
    p.add_argument("--memory", action="store_true")
    p.add_argument("--child")
    args = p.parse_args()
    if args.child:
        child(args.child, args.device)
        return

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        data = tmp / "data.parquet"
        write_data(data, args.rows)
        read_s = read_floor(data, args.chunk_rows)
        source_s = source_read(data, args.chunk_rows)
        write_s = write_floor(tmp / "floor.parquet", args.rows)
        parts_write_s = part_writer(tmp / "floor_parts", args.rows)
        floor = read_s + write_s

        streamed = fit(data, args.iterations, args.device, args.chunk_rows, cache=False)
        cached = fit(data, args.iterations, args.device, args.chunk_rows, cache=True)
        t = time.perf_counter()
        whole = fit(data, args.iterations, args.device, args.chunk_rows, cache=True)
        whole.transform_parquet(data, tmp / "out.parquet", layout="compact")
        whole_s = time.perf_counter() - t
        t = time.perf_counter()
        whole.transform_parquet(data, tmp / "again.parquet", layout="compact")
        transform_file_s = time.perf_counter() - t
        t = time.perf_counter()
        whole.transform_parquet(data, tmp / "parts", layout="compact")
        transform_parts_s = time.perf_counter() - t
        mem = memory(tmp, args.device) if args.memory else None

    s = streamed.fit_report_["seconds"]
    c = cached.fit_report_["seconds"]
    rows = args.rows
    figures = {
        "pyarrow_read": read_s,
        "pyarrow_write_encoded": write_s,
        "gpuvgm_source_read": source_s,
        "gpuvgm_write_part_files": parts_write_s,
        "gpuvgm_prepass": s["prepass"],
        "gpuvgm_estep_pass_streamed": s["iterations"] / args.iterations,
        "gpuvgm_estep_pass_cached": c["iterations"] / args.iterations,
        "gpuvgm_transform_to_one_file": transform_file_s,
        "gpuvgm_transform_to_part_files": transform_parts_s,
        "gpuvgm_fit_and_transform_to_parquet": whole_s,
    }
    result = {
        "date": dt.date.today().isoformat(),
        "machine": {
            "node": platform.node(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "backend": streamed.backend_,
        "rows": rows,
        "iterations": args.iterations,
        "seconds": figures,
        "rows_per_second": {k: rows / v for k, v in figures.items()},
        "ratio_to_floor": {k: v / floor for k, v in figures.items()},
        "peak_rss_bytes": mem,
    }
    print(
        f"{rows:,} float32 rows from Parquet, K=10, {args.iterations} iterations, backend "
        f"{streamed.backend_}, {os.cpu_count()} CPUs"
    )
    print(f"  {'phase':<38} {'seconds':>9} {'rows/s':>14} {'x floor':>8}")
    for k, v in figures.items():
        print(f"  {k:<38} {v:>9.3f} {rows / v:>14,.0f} {v / floor:>8.2f}")
    print(f"  floor = pyarrow read + write = {floor:.3f} s")
    if mem:
        lo, hi = mem[10_000_000], mem[200_000_000]
        print(
            f"  peak RSS of fit: 1e7 rows {lo / 1e6:.0f} MB, 2e8 rows {hi / 1e6:.0f} MB "
            f"(difference {(hi - lo) / 1e6:.0f} MB; goals < 2000 MB and < 200 MB)"
        )
    out = HERE / "results" / f"io_bench-{streamed.backend_}-{platform.node()}-{result['date']}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  wrote {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
