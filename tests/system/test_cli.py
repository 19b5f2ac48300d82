"""The command line and the file-to-file transform."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import five_modes

import gpuvgm
from gpuvgm._layouts import LAYOUTS
from gpuvgm.cli import build_parser, main


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
    captured = capsys.readouterr()
    out = captured.out
    assert "backend numba, seed 0, clip none" in out and "round trip" in out
    # One line per phase, in the order they ran (printed as each finished).
    phases = ["generate", "pre-pass", "init", "iterations", "transform", "round trip"]
    lines = out.splitlines()
    at = [next(i for i, line in enumerate(lines) if line.strip().startswith(p)) for p in phases]
    assert at == sorted(at), at
    assert "60,000 rows" in lines[at[1]] and "lower bound/row" in lines[at[3]]
    assert "\r" not in captured.err  # stderr is not a terminal: no bars without --progress
    result = json.loads(metrics.read_text())
    assert result["rows"] == 60000 and result["columns"] == ["amount", "age", "timestamp"]
    # Every row is compared, and nothing is clipped by default: float64 all the way (the rdt
    # layout), exact to rounding on every row, even for the 1.7e9 timestamps.
    assert result["rows_compared"] == 60000 and result["clip"] is None
    assert result["n_clipped"] == [0, 0, 0]
    assert all(e <= 1e-12 for e in result["round_trip_max_error_over_std"])
    assert result["nulls_in"][0] > 0 and result["nulls_back"] == result["nulls_in"]
    assert result["values_lost"] == [0, 0, 0]
    assert f"all 60,000 rows x 3 columns decoded and compared; {result['nulls_in'][0]:,} of" in out


def test_demo_with_ctgans_clip_says_what_the_clip_costs(tmp_path, capsys):
    metrics = tmp_path / "m.json"
    argv = ["demo", "--dir", str(tmp_path), "--rows", "30000", "--max-iter", "10",
            "--device", "cpu", "--clip", "0.99", "--metrics-json", str(metrics)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    result = json.loads(metrics.read_text())
    clipped = sum(result["n_clipped"])
    assert result["clip"] == 0.99 and clipped > 0
    assert f"{clipped:,} values were clipped" in out
    # The clipped rows are in the error (they decode to at most 3.96 std from their mode)...
    assert max(result["round_trip_max_error_over_std"]) > 1e-6
    # ...and every other row still comes back exactly.
    assert all(e <= 1e-12 for e in result["round_trip_max_error_over_std_unclipped"])


def test_progress_bars_draw_on_request_with_the_lower_bound(tmp_path, capsys):
    data = tmp_path / "d.parquet"
    _write(data, 5000, np.random.default_rng(1), extra=False)
    argv = ["fit", str(data), "-o", str(tmp_path / "m.gpuvgm"), "--columns", "v",
            "--max-iter", "8", "--device", "cpu", "--progress"]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        assert main(argv) == 0
    captured = capsys.readouterr()
    assert "pre-pass" in captured.err and "iterations" in captured.err
    assert "lower bound/row" in captured.err and "passes" in captured.err
    assert [line.split()[0] for line in captured.out.splitlines()[:3]] == [
        "pre-pass",
        "init",
        "iterations",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        assert main([*argv, "-q"]) == 0  # --quiet wins: nothing on either stream
    captured = capsys.readouterr()
    assert captured.out == "" and "lower bound/row" not in captured.err


def _fit_cli(tmp_path, data, name, *extra):
    path = tmp_path / name
    argv = ["fit", str(data), "-o", str(path), "--columns", "v", "--max-iter", "15",
            "--device", "cpu", *extra]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        assert main(argv) == 0
    return gpuvgm.load(path)


def test_fit_is_reproducible_by_default_and_random_on_request(tmp_path, capsys):
    data = tmp_path / "d.parquet"
    _write(data, 6000, np.random.default_rng(2), extra=False)
    a, b = _fit_cli(tmp_path, data, "a.gpuvgm"), _fit_cli(tmp_path, data, "b.gpuvgm")
    out = capsys.readouterr().out
    assert out.count(", seed 0; model written to") == 2  # printed...
    assert a.seed_ == b.seed_ == 0 and a.random_state == 0  # ...and stored
    np.testing.assert_array_equal(a.means_, b.means_)
    x = pq.read_table(data).column("v").to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(a.transform(x).component, b.transform(x).component)

    r1 = _fit_cli(tmp_path, data, "r1.gpuvgm", "--seed", "random")
    r2 = _fit_cli(tmp_path, data, "r2.gpuvgm", "--seed", "random")
    out = capsys.readouterr().out
    assert r1.random_state is None and r1.seed_ != r2.seed_  # two draws of 64 bits
    assert f"seed {r1.seed_} (drawn for --seed random; --seed {r1.seed_} repeats" in out
    again = _fit_cli(tmp_path, data, "again.gpuvgm", "--seed", str(r1.seed_))
    np.testing.assert_array_equal(again.means_, r1.means_)
    np.testing.assert_array_equal(again.transform(x).component, r1.transform(x).component)


@pytest.mark.parametrize(
    ("option", "value"), [("--seed", "-1"), ("--seed", "often"), ("--clip", "0"), ("--clip", "x")]
)
def test_bad_seed_or_clip_is_a_usage_error(tmp_path, option, value):
    proc = subprocess.run(
        [sys.executable, "-m", "gpuvgm", "fit", "x.parquet", "-o", "m", option, value],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and f"argument {option}" in proc.stderr


def test_make_demo_passes_rows_through():
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parents[2]
    cmd = [make, "-n", "-C", str(root), "demo", "ROWS=12345", "VENV=/nonexistent-venv"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "demo --dir demo_data --rows 12345" in out
    assert "installing gpuvgm" in out  # first setup says what it installs
    plain = subprocess.run([*cmd[:-2], cmd[-1]], capture_output=True, text=True, check=True)
    assert "--rows" not in plain.stdout.splitlines()[-1]


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


def test_cli_offers_every_layout_and_defaults_to_full():
    """The CLI spells the layouts out (so --help imports no pyarrow): the same list."""
    parser = build_parser()
    args = parser.parse_args(["transform", "m.gpuvgm", "d.parquet", "-o", "e.parquet"])
    assert args.layout == "full"
    (sub,) = [a for a in parser._actions if a.dest == "command" or a.choices]
    option = next(a for a in sub.choices["transform"]._actions if a.dest == "layout")
    assert tuple(option.choices) == LAYOUTS


@pytest.mark.parametrize("layout", LAYOUTS)
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
    elif layout in ("rdt", "rdt_random"):  # RDT's: a null is the mean's encoding, float64
        ok = ~enc.null[:, 0]
        comp = out.column("v.component").to_numpy()
        assert out.schema.field("v.component").type == pa.float64()
        np.testing.assert_array_equal(comp[ok], enc.component[ok, 0])  # row order preserved
        np.testing.assert_array_equal(alpha[ok], enc.normalized[ok, 0])
        filled = model.transform(np.where(np.isnan(x), np.nanmean(x), x))
        np.testing.assert_array_equal(comp[~ok], filled.component[~ok, 0])
        assert not np.isnan(alpha).any()
        assert ("v.is_null" in out.column_names) == (layout == "rdt")
        if layout == "rdt":
            np.testing.assert_array_equal(out.column("v.is_null").to_numpy(), np.isnan(x) * 1.0)
    else:
        comp = out.column("v.component").to_numpy()
        np.testing.assert_array_equal(comp, enc.component[:, 0])  # row order preserved
        rtol = 1e-6 if layout == "compact" else 0
        np.testing.assert_allclose(alpha, enc.normalized[:, 0], rtol=rtol, equal_nan=True)
    if layout == "full":
        np.testing.assert_array_equal(out.column("v.is_null").to_numpy(), np.isnan(x))
    back = tmp_path / "back.parquet"
    model.inverse_parquet(dst, back)
    decoded = pq.read_table(back).column("v").to_numpy(zero_copy_only=False)
    if layout != "rdt_random":  # the one layout that does not mark nulls
        np.testing.assert_array_equal(np.isnan(decoded), np.isnan(x))
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


def _write(path, n, rng, extra=True):
    x = five_modes(n, rng)
    x[::101] = np.nan
    cols = {"id": np.arange(n), "v": x}
    if extra:
        cols["label"] = np.where(np.arange(n) % 2 == 0, "even", "odd")
    pq.write_table(pa.table(cols), path, row_group_size=50_000)
    return x


def test_cli_fit_transform_inverse_round_trip_in_row_order(tmp_path, rng, capsys):
    data = tmp_path / "data.parquet"
    x = _write(data, 120_000, rng)
    model = tmp_path / "m.gpuvgm"
    assert (
        main(
            [
                "fit",
                str(data),
                "-o",
                str(model),
                "--columns",
                "v",
                "--seed",
                "3",
                "--max-iter",
                "30",
                "--device",
                "cpu",
                "--chunk-rows",
                "40000",
            ]
        )
        == 0
    )
    assert "model written to" in capsys.readouterr().out
    encoded = tmp_path / "enc.parquet"
    assert (
        main(
            [
                "transform",
                str(model),
                str(data),
                "-o",
                str(encoded),
                "--passthrough",
                "id",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out = pq.read_table(encoded)
    assert out.column_names[0] == "id"
    np.testing.assert_array_equal(out.column("id").to_numpy(), np.arange(len(x)))
    back_path = tmp_path / "back.parquet"
    assert main(["inverse", str(model), str(encoded), "-o", str(back_path), "-q"]) == 0
    back = pq.read_table(back_path).column("v").to_numpy(zero_copy_only=False)
    alpha = out.column("v.normalized").to_numpy(zero_copy_only=False)
    assert np.nanmax(np.abs(alpha)) > 0.99  # tails beyond CTGAN's clip: none by default
    ok = ~np.isnan(x)  # every row comes back
    np.testing.assert_array_equal(np.isnan(back), np.isnan(x))
    assert np.max(np.abs(back[ok] - x[ok])) <= 1e-12 * np.nanstd(x)
    assert main(["info", str(model)]) == 0
    assert "components" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("truncated", "cannot be read"),
        ("missing_column", "column 'nope' is not in"),
        ("non_numeric", "column 'label' has type string, which is not numeric"),
        ("empty", "the input is empty"),
        ("not_there", "does not exist"),
    ],
)
def test_cli_bad_files_exit_1_with_one_line(tmp_path, rng, capsys, setup, message):
    data = tmp_path / "data.parquet"
    _write(data, 5000, rng)
    columns = "v"
    if setup == "truncated":
        raw = data.read_bytes()
        data.write_bytes(raw[: len(raw) // 2])
    elif setup == "missing_column":
        columns = "v,nope"
    elif setup == "non_numeric":
        columns = "label"
    elif setup == "empty":
        pq.write_table(pa.table({"v": pa.array([], pa.float64())}), data)
    elif setup == "not_there":
        data = tmp_path / "absent.parquet"
    code = main(["fit", str(data), "-o", str(tmp_path / "m"), "--columns", columns, "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("gpuvgm: error: ") and message in err[0], err
    assert not (tmp_path / "m").exists()


def test_killed_transform_leaves_no_output_and_the_input_intact(tmp_path, rng):
    import os
    import signal
    import time

    data = tmp_path / "data.parquet"
    _write(data, 3_000_000, rng, extra=False)
    before = data.read_bytes()
    model = tmp_path / "m.gpuvgm"
    assert (
        main(
            [
                "fit",
                str(data),
                "-o",
                str(model),
                "--columns",
                "v",
                "--max-iter",
                "2",
                "-q",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    dst = tmp_path / "out.parquet"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpuvgm",
            "transform",
            str(model),
            str(data),
            "-o",
            str(dst),
            "--chunk-rows",
            "100000",
            "--device",
            "cpu",
        ]
    )
    deadline = time.monotonic() + 60
    # Wait until the temporary file has data in it, then kill without warning.
    while time.monotonic() < deadline:
        tmps = list(tmp_path.glob(".out.parquet.*.tmp"))
        if tmps and tmps[0].stat().st_size > 0:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert tmps, "the transform never started writing"
    assert not dst.exists()
    assert data.read_bytes() == before


@pytest.mark.slow
def test_cli_round_trip_on_ten_million_rows(tmp_path):
    """Issue #4: fit -> transform -> inverse on 10^7 rows from Parquet, on the CPU."""
    n = 10_000_000
    rng = np.random.default_rng(7)
    data = tmp_path / "big.parquet"
    with pq.ParquetWriter(data, pa.schema([("x", pa.float32())])) as w:
        for _ in range(0, n, 2_000_000):
            w.write_table(pa.table({"x": five_modes(2_000_000, rng).astype(np.float32)}))
    model = tmp_path / "m.gpuvgm"
    assert (
        main(["fit", str(data), "-o", str(model), "--max-iter", "5", "-q", "--device", "cpu"]) == 0
    )
    enc = tmp_path / "enc.parquet"
    assert (
        main(
            [
                "transform",
                str(model),
                str(data),
                "-o",
                str(enc),
                "--layout",
                "compact",
                "-q",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    back = tmp_path / "back.parquet"
    assert main(["inverse", str(model), str(enc), "-o", str(back), "-q"]) == 0
    with pq.ParquetFile(data) as a, pq.ParquetFile(back) as b, pq.ParquetFile(enc) as e:
        assert a.metadata.num_rows == b.metadata.num_rows == n
        batches = zip(
            a.iter_batches(1 << 20),
            b.iter_batches(1 << 20),
            e.iter_batches(1 << 20, columns=["x.normalized"]),
            strict=True,
        )
        std = None
        for xa, xb, xe in batches:
            x = xa.column(0).to_numpy().astype(np.float64)
            y = xb.column(0).to_numpy()
            alpha = xe.column(0).to_numpy()
            std = std or float(np.std(x))
            ok = np.abs(alpha) < 0.99
            # compact stores alpha in float32: the bound is float32's, times 4 sigma of the mode
            assert np.max(np.abs(y[ok] - x[ok])) <= 1e-5 * std


def test_bench_command_reports_rates(tmp_path, capsys):
    metrics = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "--rows",
                "30000",
                "--columns",
                "2",
                "--iterations",
                "2",
                "--device",
                "cpu",
                "--metrics-json",
                str(metrics),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "values/s" in out and "backend numba" in out
    result = json.loads(metrics.read_text())
    for key in (
        "prepass_values_per_second",
        "estep_values_per_second",
        "transform_values_per_second",
    ):
        assert result[key] > 0


def test_info_and_its_device_smoke_check(capsys):
    from gpuvgm._backends import _cuda_backend

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"gpuvgm {gpuvgm.__version__}") and "cuda:" in out
    try:
        _cuda_backend()
        gpu = True
    except gpuvgm.BackendUnavailableError:
        gpu = False
    assert main(["info", "--device"]) == (0 if gpu else 1)


@pytest.mark.filterwarnings("ignore::gpuvgm.ConvergenceWarning")
def test_directory_output_is_part_files_in_row_order(tmp_path):
    """A ``dst`` without a Parquet suffix is a directory of part files written in parallel;
    read back as a directory (sorted names), it is the single-file output, and it decodes."""
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(-3, 1, 6_000), rng.normal(2, 0.3, 4_000)])
    src = tmp_path / "x.parquet"
    pq.write_table(pa.table({"v": x, "id": np.arange(x.size)}), src, row_group_size=1_500)
    model = gpuvgm.VGM(4, max_iter=20, chunk_rows=700, device="cpu", random_state=0).fit(
        src, columns=["v"]
    )
    one = tmp_path / "enc.parquet"
    parts = tmp_path / "enc"
    model.transform_parquet(src, one, columns=["v"], passthrough=["id"])
    info = model.transform_parquet(
        src, parts, columns=["v"], passthrough=["id"], rows_per_file=2_000
    )
    names = sorted(p.name for p in parts.iterdir())
    assert names == [f"part-{i:06d}.parquet" for i in range(len(names))] and len(names) == 5
    assert all(pq.read_metadata(parts / n).num_rows >= 2_000 for n in names[:-1])
    whole = pa.concat_tables([pq.read_table(parts / n) for n in names])
    assert whole.equals(pq.read_table(one)) and info["rows"] == x.size
    # Decoding reads the directory; writing the decoded data as parts again.
    back = tmp_path / "back"
    model.inverse_parquet(parts, back)
    decoded = pa.concat_tables([pq.read_table(p) for p in sorted(back.iterdir())])
    ok = np.abs(whole.column("v.normalized").to_numpy()) < 0.99
    np.testing.assert_allclose(decoded.column("v").to_numpy()[ok], x[ok], rtol=1e-12, atol=1e-9)


def test_directory_output_replaces_only_an_earlier_output(tmp_path):
    from gpuvgm._writers import parquet_output

    schema = pa.schema([("a", pa.float64())])
    dst = tmp_path / "out"
    t = pa.table({"a": np.arange(10.0)})
    with parquet_output(dst, schema, 4, rows_per_file=4) as write:
        write(t)
        write(t)
    assert sorted(p.name for p in dst.iterdir()) == ["part-000000.parquet", "part-000001.parquet"]
    # A failure midway leaves the earlier output as it was, and nothing beside it.
    with pytest.raises(ValueError, match="schema"):
        with parquet_output(dst, schema, 4, rows_per_file=4) as write:
            write(t)
            write(pa.table({"b": np.arange(3)}))
    assert len(list(dst.iterdir())) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # Replaced by a new output (here: empty, so one empty part keeps the schema).
    with parquet_output(dst, schema, 4) as write:
        pass
    (only,) = dst.iterdir()
    assert pq.read_table(only).schema.equals(schema) and pq.read_table(only).num_rows == 0
    # A directory with anything else in it is never replaced.
    (dst / "notes.txt").write_text("mine")
    with pytest.raises(gpuvgm.DataError, match=r"notes\.txt"):
        with parquet_output(dst, schema, 4) as write:
            write(t)
    assert (dst / "notes.txt").read_text() == "mine"


def test_directories_are_read_in_natural_order(tmp_path):
    """Dask and pyarrow name parts part.2, part.10: numbers sort as numbers; files starting
    with '.' or '_' are skipped, as pyarrow's discovery does."""
    folder = tmp_path / "d"
    folder.mkdir()
    for i in (10, 2, 1):
        pq.write_table(pa.table({"x": np.full(3, float(i))}), folder / f"part.{i}.parquet")
    pq.write_table(pa.table({"x": np.full(3, -1.0)}), folder / "_ignored.parquet")
    src = gpuvgm._inputs.make_source(folder)
    values = np.concatenate([c[:, 0] for _, c in src.chunks(100)])
    np.testing.assert_array_equal(values, np.repeat([1.0, 2.0, 10.0], 3))


def test_cli_round_trip_through_part_files(tmp_path):
    from gpuvgm.cli import main

    rng = np.random.default_rng(8)
    x = np.concatenate([rng.normal(0, 1, 3_000), rng.normal(6, 0.5, 2_000)])
    data = tmp_path / "x.parquet"
    pq.write_table(pa.table({"v": x}), data)
    model, enc, back = tmp_path / "m.gpuvgm", tmp_path / "enc", tmp_path / "back"
    common = ["--device", "cpu", "--chunk-rows", "900", "-q"]
    assert main(["fit", str(data), "-o", str(model), "--max-iter", "30", *common]) == 0
    assert main(["transform", str(model), str(data), "-o", str(enc), "--rows-per-file", "1000",
                 "--layout", "compact", *common]) == 0  # fmt: skip
    assert len(list(enc.iterdir())) == 3  # parts close at >= 1000 rows: 2 chunks of 900
    assert main(["inverse", str(model), str(enc), "-o", str(back), *common]) == 0
    got = pq.read_table(back).column("v").to_numpy()  # pyarrow reads the directory
    codes = pq.read_table(enc).column("v.normalized").to_numpy()
    ok = np.abs(codes) < 0.99
    np.testing.assert_allclose(got[ok], x[ok], rtol=1e-6, atol=1e-5)  # float32 alpha


def test_n_jobs_and_compute_dtype_flags_reach_the_model(tmp_path, rng, capsys):
    data = tmp_path / "data.parquet"
    _write(data, 6000, rng, extra=False)
    model, metrics = tmp_path / "m.gpuvgm", tmp_path / "fit.json"
    common = ["--device", "cpu", "-q"]
    fit = ["fit", str(data), "-o", str(model), "--columns", "v", "--seed", "1", "--max-iter", "5"]
    flags = ["--n-jobs", "1", "--compute-dtype", "float32", "--metrics-json", str(metrics)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        assert main([*fit, *common, *flags]) == 0
    loaded = gpuvgm.load(model)
    assert (loaded.n_jobs, loaded.compute_dtype) == (1, "float32")
    encoded = tmp_path / "enc.parquet"
    transform = ["transform", str(model), str(data), "-o", str(encoded), "--n-jobs", "2"]
    assert main([*transform, *common]) == 0
    assert pq.read_metadata(encoded).num_rows == 6000
    capsys.readouterr()
    assert main([*fit, *common, "--n-jobs", "0", "--force"]) == 2  # a parameter error
    assert "n_jobs" in capsys.readouterr().err


def test_info_lists_the_weights_and_the_valid_components_by_code(tmp_path, rng, capsys):
    x = np.concatenate([rng.normal(m, 0.3, 2000) for m in (-5.0, 0.0, 5.0)])
    centres = np.array([100.0, -5, 101, 102, 0, 103, 104, 5, 105, 106])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        model = gpuvgm.VGM(means_init=centres, device="cpu", max_iter=20).fit(
            np.column_stack([x, five_modes(x.size, rng)])
        )
    path = tmp_path / "m.gpuvgm"
    model.save(path)
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    # No random_state: the drawn seed is stored in the model, and info tells it.
    assert f"  seed {model.seed_} (`gpuvgm fit --seed {model.seed_}`" in out
    blocks = re.split(r"\n  (?=\S)", out)[1:]  # one block per column
    for j in range(2):
        block = next(b for b in blocks if b.startswith(f"{j}: "))
        valid = model.valid_components_[j]
        listed = re.search(r"weights \(all 10\): \[(.*)\]", block)[1]
        weights = [float(w) for w in listed.split(",")]
        np.testing.assert_allclose(weights, model.weights_[j], rtol=1e-3)
        assert abs(sum(weights) - 1) < 1e-3
        table = re.findall(r"^\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)$", block, re.MULTILINE)
        assert [int(r[0]) for r in table] == list(range(int(valid.sum())))
        got = np.array([[float(v) for v in r[1:]] for r in table])
        np.testing.assert_allclose(got[:, 0], model.weights_[j][valid], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[:, 1], model.means_[j][valid], rtol=1e-5)
        np.testing.assert_allclose(got[:, 2], np.sqrt(model.covariances_[j][valid]), rtol=1e-5)
        pruned = re.search(r"pruned (\d+) .*total weight (\S+)", block)
        if valid.all():
            assert pruned is None
        else:
            assert int(pruned[1]) == int((~valid).sum())
            # The valid weights and the pruned remainder make the whole mixture.
            assert abs(got[:, 0].sum() + float(pruned[2]) - 1) < 1e-5
    # The first column's valid components are 1, 4 and 7 of 10: listed as codes 0, 1, 2.
    assert np.flatnonzero(model.valid_components_[0]).tolist() == [1, 4, 7]
