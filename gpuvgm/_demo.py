"""The embedded demo: a multimodal table written to Parquet, fitted, transformed and inverted
from file to file. ``gpuvgm demo`` (and ``make demo``) runs it and prints the summary."""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ._errors import ConvergenceWarning
from ._estimator import VGM
from ._progress import end_phase
from ._sources import Progress

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


def write_demo_data(
    path: Path, rows: int = DEMO_ROWS, seed: int = 2026, progress: Progress | None = None
) -> Path:
    """Write the demo table to ``path`` (Parquet) block by block, unless it is already there;
    ``progress("generate", rows)`` after each block."""
    path = Path(path)
    if path.exists() and pq.read_metadata(path).num_rows == rows:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, _demo_block(rng, 1).schema) as writer:
        for start in range(0, rows, _BLOCK):
            n = min(_BLOCK, rows - start)
            writer.write_table(_demo_block(rng, n))
            if progress is not None:
                progress("generate", n)
    tmp.replace(path)
    return path


def _round_trip(
    model: VGM, data: Path, encoded: Path, chunk_rows: int, progress: Progress | None
) -> dict[str, Any]:
    """Decode the written codes chunk by chunk and compare every row with the input: the
    largest error per column over all non-null rows, over the rows the transform did not clip,
    and the nulls (every null must come back as a null, and nothing else)."""
    names = list(DEMO_COLUMNS)
    clip = math.inf if model.clip is None else float(model.clip)
    max_err, max_err_kept = np.zeros(len(names)), np.zeros(len(names))
    rows, nulls, nulls_back, lost = 0, *(np.zeros(len(names), dtype=np.int64) for _ in range(3))
    with pq.ParquetFile(data) as src, pq.ParquetFile(encoded) as enc:
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
            null, back_null = np.isnan(x), np.isnan(back)
            err = np.where(null | back_null, 0.0, np.abs(back - x))
            max_err = np.maximum(max_err, err.max(axis=0, initial=0.0))
            kept = np.abs(alpha) < clip  # NaN (a null) is not kept
            max_err_kept = np.maximum(max_err_kept, np.where(kept, err, 0.0).max(axis=0))
            rows += len(x)
            nulls += null.sum(axis=0)
            nulls_back += (null & back_null).sum(axis=0)
            lost += (~null & back_null).sum(axis=0)  # a value that came back as a null
            if progress is not None:
                progress("round trip", len(x))
    assert model.moments_ is not None  # set by fit
    std = np.sqrt(model.moments_.variance)
    return {
        "rows_compared": rows,
        "nulls_in": nulls.tolist(),
        "nulls_back": nulls_back.tolist(),
        "values_lost": lost.tolist(),
        "round_trip_max_error_over_std": (max_err / std).tolist(),
        "round_trip_max_error_over_std_unclipped": (max_err_kept / std).tolist(),
    }


def run_demo(
    directory: str | Path = "demo_data",
    rows: int = DEMO_ROWS,
    device: str = "auto",
    max_iter: int = 100,
    chunk_rows: int = 1 << 20,
    clip: float | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Generate (once), fit, transform and invert the demo table; return the figures.

    ``progress`` hears every phase (:mod:`gpuvgm._progress`): ``"generate"``, the fit's,
    ``"transform"`` and ``"round trip"``. ``clip``: the model's (None: gpuvgm's default, an
    exact round trip; 0.99 shows what CTGAN's clip does to the tails).
    """
    directory = Path(directory)
    t = time.perf_counter()
    data = write_demo_data(directory / f"demo-{rows}.parquet", rows, progress=progress)
    end_phase(progress)
    gen_seconds = time.perf_counter() - t

    model = VGM(
        n_components=10,
        max_iter=max_iter,
        device=device,
        chunk_rows=chunk_rows,
        clip=clip,
        random_state=0,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(data, progress=progress)
    not_converged = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    for message in not_converged:
        logger.warning(message)

    encoded_path = directory / f"demo-{rows}.encoded.parquet"
    tx = model.transform_parquet(data, encoded_path, layout="full", progress=progress)

    # Round trip, file to file: decode the written codes and compare with the input, by chunks.
    t = time.perf_counter()
    check = _round_trip(model, data, encoded_path, chunk_rows, progress)
    end_phase(progress)
    inv_seconds = time.perf_counter() - t
    report = model.fit_report_
    return {
        "rows": rows,
        "columns": list(DEMO_COLUMNS),
        "backend": model.backend_,
        "seed": model.seed_,
        "clip": model.clip,
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
        **check,
        "nulls": report["nulls"],
        "data": str(data),
        "encoded": str(encoded_path),
        "warnings": not_converged,
    }
