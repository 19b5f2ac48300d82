"""The command line and the file-to-file transform."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import five_modes

import gpuvgm
from gpuvgm.cli import main


def test_demo_runs_end_to_end_and_round_trips(tmp_path, capsys):
    metrics = tmp_path / "m.json"
    code = main(
        [
            "demo",
            "--dir",
            str(tmp_path),
            "--rows",
            "60000",
            "--max-iter",
            "10",
            "--device",
            "cpu",
            "--metrics-json",
            str(metrics),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "backend numpy" in out and "round-trip" in out
    result = json.loads(metrics.read_text())
    assert result["rows"] == 60000 and result["columns"] == ["amount", "age", "timestamp"]
    assert all(e <= 1e-6 for e in result["round_trip_max_error_over_std"])
    assert result["nulls"][0] > 0 and result["rows_compared"][1] > 59000


def test_errors_exit_1_with_one_line(tmp_path, capsys, monkeypatch):
    import gpuvgm._demo as demo

    def broken(*args, **kwargs):
        raise gpuvgm.DataError("column 'x' is broken")

    monkeypatch.setattr(demo, "run_demo", broken)
    assert main(["demo", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "gpuvgm: error: column 'x' is broken"


def test_usage_errors_exit_2():
    proc = subprocess.run([sys.executable, "-m", "gpuvgm", "fly"], capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


@pytest.mark.parametrize("layout", ["rdt", "compact", "ctgan"])
def test_transform_parquet_layouts_preserve_rows(tmp_path, layout, rng):
    n = 20_000
    x = five_modes(n, rng)
    x[::97] = np.nan
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"v": x, "other": np.arange(n)}), src, row_group_size=3000)
    model = gpuvgm.VGM(5, max_iter=20, chunk_rows=4096, device="cpu", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        model.fit(src, columns=["v"])
    dst = tmp_path / "out.parquet"
    info = model.transform_parquet(src, dst, layout=layout, columns=["v"])
    assert info["rows"] == n
    out = pq.read_table(dst)
    enc = model.transform(x)
    n_valid = int(model.valid_components_.sum())
    alpha = out.column("v.normalized").to_numpy(zero_copy_only=False)
    if layout == "ctgan":
        onehot = np.column_stack(
            [out.column(f"v.component_{i}").to_numpy() for i in range(n_valid)]
        )
        ok = ~enc.null[:, 0]
        np.testing.assert_array_equal(np.argmax(onehot[ok], axis=1), enc.component[ok, 0])
        assert np.all(onehot[~ok] == 0) and np.all(onehot.sum(axis=1)[ok] == 1)
        np.testing.assert_allclose(alpha[ok], enc.normalized[ok, 0], rtol=1e-6, atol=1e-7)
    else:
        comp = out.column("v.component").to_numpy()
        np.testing.assert_array_equal(comp, enc.component[:, 0])  # row order preserved
        rtol = 1e-6 if layout == "compact" else 0
        np.testing.assert_allclose(alpha, enc.normalized[:, 0], rtol=rtol, equal_nan=True)
    if layout == "rdt":
        np.testing.assert_array_equal(out.column("v.is_null").to_numpy(), np.isnan(x))
    assert not list(tmp_path.glob(".out.parquet.*"))  # no temporary file left behind


def test_failed_transform_leaves_no_file_and_keeps_the_old_one(tmp_path, rng):
    x = five_modes(5000, rng)
    model = gpuvgm.VGM(3, max_iter=100, chunk_rows=1000, device="cpu").fit(x)
    dst = tmp_path / "out.parquet"
    dst.write_bytes(b"previous")
    bad = x.copy()
    bad[4321] = np.inf  # fails in the fifth chunk, after four were written
    with pytest.raises(gpuvgm.DataError, match="row 4321"):
        model.transform_parquet(bad, dst)
    assert dst.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]
