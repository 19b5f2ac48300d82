"""The embedded demo: a multimodal table written to Parquet, fitted, transformed and inverted
from file to file. ``gpuvgm demo`` (and ``make demo``) runs it and prints the summary."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ._errors import ConvergenceWarning
from ._estimator import VGM

logger = logging.getLogger("gpuvgm")

DEMO_ROWS = 5_000_000
DEMO_COLUMNS = ("amount", "age", "timestamp")
_BLOCK = 1_000_000


def _demo_block(rng: np.random.Generator, n: int) -> pa.Table:
    """``n`` rows of three multimodal columns with the quirks real tables have."""
    # Spend: two log-normal populations (skewed, 3 orders of magnitude), 1 % missing.
    big = rng.random(n) < 0.35
    amount = np.where(big, rng.lognormal(5.0, 0.3, n), rng.lognormal(3.0, 0.5, n))
    amount[rng.random(n) < 0.01] = np.nan
    # Age: three generations.
    group = rng.choice(3, size=n, p=[0.45, 0.35, 0.20])
    age = np.array([27.0, 44.0, 68.0])[group] + rng.normal(0, 1, n) * np.array([4.0, 6, 5])[group]
    # Event time: Unix seconds around 1.7e9, a morning and an evening peak.
    evening = rng.random(n) < 0.4
    ts = 1.7e9 + np.where(evening, rng.normal(64_800, 3_600, n), rng.normal(32_400, 5_400, n))
    return pa.table({"amount": amount, "age": age, "timestamp": ts})


def write_demo_data(path: Path, rows: int = DEMO_ROWS, seed: int = 2026) -> Path:
    """Write the demo table to ``path`` (Parquet) block by block, unless it is already there."""
    path = Path(path)
    if path.exists() and pq.read_metadata(path).num_rows == rows:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, _demo_block(rng, 1).schema) as writer:
        for start in range(0, rows, _BLOCK):
            writer.write_table(_demo_block(rng, min(_BLOCK, rows - start)))
    tmp.replace(path)
    return path


def run_demo(
    directory: str | Path = "demo_data",
    rows: int = DEMO_ROWS,
    device: str = "auto",
    max_iter: int = 100,
    chunk_rows: int = 1 << 20,
) -> dict[str, Any]:
    """Generate (once), fit, transform and invert the demo table; return the figures."""
    directory = Path(directory)
    t = time.perf_counter()
    data = write_demo_data(directory / f"demo-{rows}.parquet", rows)
    gen_seconds = time.perf_counter() - t

    model = VGM(
        n_components=10, max_iter=max_iter, device=device, chunk_rows=chunk_rows, random_state=0
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(data)
    not_converged = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    for message in not_converged:
        logger.warning(message)

    encoded_path = directory / f"demo-{rows}.encoded.parquet"
    tx = model.transform_parquet(data, encoded_path, layout="full")

    # Round trip, file to file: decode the written codes and compare with the input, by chunks.
    t = time.perf_counter()
    names = list(DEMO_COLUMNS)
    max_err = np.zeros(len(names))
    n_compared = np.zeros(len(names), dtype=np.int64)
    with pq.ParquetFile(data) as src, pq.ParquetFile(encoded_path) as enc:
        batches = zip(
            src.iter_batches(batch_size=chunk_rows, columns=names),
            enc.iter_batches(batch_size=chunk_rows),
            strict=True,
        )
        for raw, code in batches:
            x = np.column_stack([raw.column(c).to_numpy(zero_copy_only=False) for c in names])
            alpha = np.column_stack(
                [code.column(f"{c}.normalized").to_numpy(zero_copy_only=False) for c in names]
            )
            comp = np.column_stack([code.column(f"{c}.component").to_numpy() for c in names])
            back = model.inverse_transform((alpha, comp))
            ok = ~np.isnan(x) & (np.abs(alpha) < 0.99)  # clipped rows do not round trip
            err = np.where(ok, np.abs(back - x), 0.0)
            max_err = np.maximum(max_err, err.max(axis=0))
            n_compared += ok.sum(axis=0)
    inv_seconds = time.perf_counter() - t
    assert model.moments_ is not None  # set by fit
    std = np.sqrt(model.moments_.variance)
    report = model.fit_report_
    return {
        "rows": rows,
        "columns": names,
        "backend": model.backend_,
        "generate_seconds": gen_seconds,
        "fit_seconds": report["seconds"]["total"],
        "fit_passes": report["passes"],
        "fit_rows_per_second": rows / report["seconds"]["total"],
        "fit_row_passes_per_second": report["rows_per_second"],
        "transform_seconds": tx["seconds"],
        "transform_rows_per_second": tx["rows_per_second"],
        "inverse_seconds": inv_seconds,
        "inverse_rows_per_second": rows / inv_seconds,
        "components": model.valid_components_.sum(axis=1).tolist(),
        "n_iter": model.n_iter_.tolist(),
        "converged": model.converged_.tolist(),
        "n_clipped": tx["n_clipped"],
        "round_trip_max_error_over_std": (max_err / std).tolist(),
        "rows_compared": n_compared.tolist(),
        "nulls": report["nulls"],
        "data": str(data),
        "encoded": str(encoded_path),
        "warnings": not_converged,
    }
