"""Issue 13: a billion rows on this machine, as a user runs it.

Generates (once, cached on disk) a Parquet table with one float32 column ``x``: five modes,
heavy (Student-t) tails and 1 % nulls; then runs ``gpuvgm fit`` and ``gpuvgm transform``
(compact layout) file to file, each as its own process, and checks a sampled round trip
(the inverse of the written codes against the input). Records seconds per phase, full passes,
iterations, convergence, lower bound per row, peak RSS and CPU utilisation per process, and
bytes read and written, as JSON under ``bench/results/``.

    python bench/billion.py                 # 10**9 rows (needs ~4 GB for the table)
    python bench/billion.py --rows 10000000 # the smoke run

Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
GEN_CHUNK = 10_000_000


def column_chunk(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` values: five modes, 10 % of them from a Student-t(3) tail, 1 % null; float32."""
    centres = np.array([-5.0, 0.0, 3.0, 8.0, 15.0])
    scales = np.array([1.0, 0.5, 0.3, 2.0, 1.0])
    mode = rng.integers(0, 5, size=n)
    x = centres[mode] + scales[mode] * rng.standard_normal(n)
    tail = rng.random(n) < 0.1
    x[tail] = centres[mode[tail]] + 2.0 * scales[mode[tail]] * rng.standard_t(3.0, tail.sum())
    x = x.astype(np.float32)
    x[rng.random(n) < 0.01] = np.nan
    return x


def generate(path: Path, rows: int, seed: int) -> float:
    """Write the table once (seconds spent; 0 when it was cached)."""
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(tmp, pa.schema([("x", pa.float32())])) as writer:
        for start in range(0, rows, GEN_CHUNK):
            x = column_chunk(min(GEN_CHUNK, rows - start), rng)
            writer.write_table(pa.table({"x": pa.array(x, from_pandas=True)}))
    tmp.rename(path)
    return time.perf_counter() - t


def run(cmd: list[str]) -> dict:
    """Run one gpuvgm command; its seconds, and its own peak RSS and CPU (``os.wait4``)."""
    with tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        wall = time.perf_counter() - t
        err.seek(0)
        stderr = err.read()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{stderr}")
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "command": " ".join(cmd),
        "seconds": wall,
        "cpu_seconds": cpu,
        "cpu_utilisation": cpu / wall,  # of one core; os.cpu_count() cores in all
        "peak_rss_bytes": usage.ru_maxrss * 1024,  # kB on Linux; this command's own
        "stderr_tail": stderr[-2000:],
    }


def round_trip(data: Path, encoded: Path, model_path: Path, n_groups: int = 4) -> dict:
    """Decode a few row groups of the output with the model; compare with the input."""
    import gpuvgm

    model = gpuvgm.load(str(model_path))
    src, enc = pq.ParquetFile(data), pq.ParquetFile(encoded)
    rows_checked, worst, nulls_ok = 0, 0.0, True
    # The same rows of both files: walk both in batches and sample every k-th one.
    step = max(1, src.metadata.num_rows // (n_groups * GEN_CHUNK))
    batches = zip(
        src.iter_batches(batch_size=1 << 20), enc.iter_batches(batch_size=1 << 20), strict=True
    )
    for i, (a, b) in enumerate(batches):
        if i % (step * 64) != 0:
            continue
        x = a.column("x").to_numpy(zero_copy_only=False).astype(np.float64)
        norm = b.column("x.normalized").to_numpy(zero_copy_only=False).astype(np.float64)
        comp = b.column("x.component").to_numpy(zero_copy_only=False)
        null = np.isnan(x)
        comp = np.where(null, -1, comp).astype(np.int64)
        back = model.inverse_transform((norm[:, None], comp[:, None]))[:, 0]
        nulls_ok &= bool(np.array_equal(np.isnan(back), null))
        unclipped = ~null & (np.abs(norm) < (np.inf if model.clip is None else model.clip))
        scale = np.abs(x[unclipped]) + 1.0
        if unclipped.any():
            worst = max(worst, float(np.max(np.abs(back[unclipped] - x[unclipped]) / scale)))
        rows_checked += x.size
    return {"rows_checked": rows_checked, "max_rel_error": worst, "nulls_preserved": nulls_ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10**9)
    parser.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "gpuvgm-bench")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON (default: bench/results/)")
    args = parser.parse_args()

    data = args.data_dir / f"billion-{args.rows}.parquet"
    work = args.data_dir / f"run-{args.rows}"
    work.mkdir(parents=True, exist_ok=True)
    gen_seconds = generate(data, args.rows, args.seed)
    model, encoded = work / "model.gpuvgm", work / "encoded.parquet"
    fit_json, tr_json = work / "fit.json", work / "transform.json"
    py = [sys.executable, "-m", "gpuvgm"]
    fit = run(
        [
            *py,
            "fit",
            str(data),
            "-o",
            str(model),
            "--device",
            args.device,
            "-q",
            "--seed",
            "0",
            "--metrics-json",
            str(fit_json),
        ]
    )
    transform = run(
        [
            *py,
            "transform",
            str(model),
            str(data),
            "-o",
            str(encoded),
            "--layout",
            "compact",
            "--device",
            args.device,
            "-q",
            "--metrics-json",
            str(tr_json),
        ]
    )
    t = time.perf_counter()
    check = round_trip(data, encoded, model)
    check["seconds"] = time.perf_counter() - t
    fit["metrics"] = json.loads(fit_json.read_text())
    transform["metrics"] = json.loads(tr_json.read_text())
    result = {
        "rows": args.rows,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "processor": platform.processor(),
            "python": platform.python_version(),
        },
        "generate_seconds": gen_seconds,
        "input_bytes": data.stat().st_size,
        "output_bytes": encoded.stat().st_size,
        "fit": fit,
        "transform": transform,
        "round_trip": check,
        "fit_plus_transform_seconds": fit["seconds"] + transform["seconds"],
    }
    out = args.out or HERE / "results" / f"billion-{args.rows}-{time.strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: result[k] for k in ("rows", "fit_plus_transform_seconds")}), out)


if __name__ == "__main__":
    main()
