"""Start-up: what importing gpuvgm and running its quick commands import.

Every command is a fresh interpreter, so an import it does not need is paid on every run: NumPy,
SciPy's special functions, pyarrow, Numba and pandas take 0.1 s to 0.5 s each. Each check runs
the command in a subprocess (this process has all of them loaded already) and reads
``sys.modules`` afterwards. Times are measured by ``bench/cli_startup.py``, not here.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gpuvgm

HEAVY = ("numpy", "scipy", "pyarrow", "numba", "pandas")
_HAS_CUPY = importlib.util.find_spec("cupy") is not None


def _modules_after(code: str, cwd=None) -> set[str]:
    """The top-level package names in ``sys.modules`` after running ``code`` in a fresh
    interpreter (its stdout is discarded)."""
    script = (
        "import contextlib, io, json, sys\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + "print(json.dumps(sorted({m.partition('.')[0] for m in sys.modules})))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def _cli(*argv: str) -> str:
    """Code that runs ``gpuvgm ARGV`` as the entry point does (``--help`` exits)."""
    return (
        f"from gpuvgm.cli import main\ntry:\n    main({list(argv)!r})\nexcept SystemExit:\n    pass"
    )


def test_importing_gpuvgm_imports_no_heavy_dependency():
    loaded = _modules_after("import gpuvgm\ngpuvgm.GPUVGMError, gpuvgm.__version__")
    assert "gpuvgm" in loaded
    assert loaded.isdisjoint(HEAVY), loaded & set(HEAVY)


def test_help_imports_no_heavy_dependency():
    loaded = _modules_after(_cli("--help"))
    assert "argparse" in loaded  # the command ran
    assert loaded.isdisjoint(HEAVY), loaded & set(HEAVY)


def test_info_imports_no_heavy_dependency():
    loaded = _modules_after(_cli("info"))
    # With CuPy installed, info imports the CUDA backend to ask it about the GPU (NumPy too).
    heavy = set(HEAVY) - ({"numpy"} if _HAS_CUPY else set())
    assert loaded.isdisjoint(heavy), loaded & heavy


def test_lazy_names_are_the_estimator_objects():
    """``VGM``, ``Encoded`` and ``load`` resolve on first access to the estimator's objects,
    are listed by ``dir``, and an unknown name is still an AttributeError."""
    loaded = _modules_after(
        "import gpuvgm\n"
        "from gpuvgm import VGM, Encoded, load\n"
        "import gpuvgm._estimator as e\n"
        "assert (VGM, Encoded, load) == (e.VGM, e.Encoded, e.load)\n"
        "assert {'VGM', 'Encoded', 'load'} <= set(dir(gpuvgm))\n"
        "try:\n"
        "    gpuvgm.no_such_name\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')"
    )
    assert "numpy" in loaded  # the estimator was imported on first access


def _fit_a_model(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 500), rng.normal(10, 2, 500)])
    x[::97] = np.nan  # nulls take the other conversion path
    pq.write_table(pa.table({"a": x}), tmp_path / "d.parquet")
    code = _cli("fit", "d.parquet", "-o", "m.gpuvgm", "-q", "--seed", "0", "--device", "numpy")
    return _modules_after(code, cwd=tmp_path)


def test_fit_reads_parquet_without_pandas_and_info_model_without_scipy(tmp_path):
    """pyarrow's NumPy conversion imports pandas when it is installed; reading the data goes
    around it (DLPack). Describing a model file needs neither SciPy nor Numba."""
    pytest.importorskip("pandas")  # what is checked is that it is not imported
    loaded = _fit_a_model(tmp_path)
    assert (tmp_path / "m.gpuvgm").exists()
    assert "scipy" in loaded and "pandas" not in loaded and "numba" not in loaded
    loaded = _modules_after(_cli("info", "m.gpuvgm"), cwd=tmp_path)
    assert loaded.isdisjoint({"scipy", "numba", "pandas"}), loaded


@pytest.mark.parametrize("offset", [0, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_arrays_convert_as_pyarrow_converts_them(dtype, offset):
    """The DLPack conversion against pyarrow's ``to_numpy`` (NaN for nulls): sliced arrays,
    with and without nulls, all nulls, and none."""
    from gpuvgm._sources import float_array_to_numpy

    rng = np.random.default_rng(1)
    values = rng.normal(size=40).astype(dtype)
    cases = [
        pa.array(values),
        pa.array(values, mask=rng.uniform(size=40) < 0.3),
        pa.array(values, mask=np.ones(40, dtype=bool)),
        pa.array(values[:0]),
    ]
    for arr in cases:
        arr = arr.slice(min(offset, len(arr)))
        got = float_array_to_numpy(arr)
        expected = arr.to_numpy(zero_copy_only=False)
        assert got.dtype == np.dtype(dtype) and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)  # NaN equals NaN here


def _two_columns(n: int) -> pa.Table:
    rng = np.random.default_rng(2)
    a = np.concatenate([rng.normal(0, 1, n // 2), rng.normal(10, 2, n - n // 2)])
    return pa.table({"a": pa.array(a, mask=rng.uniform(size=n) < 0.02), "b": rng.lognormal(size=n)})


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_auto_runs_small_inputs_on_the_numpy_backend_and_agrees_with_numba(tmp_path, fmt):
    """``--device auto`` fits a 1 000-row file on the NumPy backend (a new process would spend
    most of its time loading Numba), says so in the model, and agrees with ``--device cpu``
    within the fit-level tolerance; the encoded outputs are identical.

    A whole fit iterates the E-step map a hundred times, and this data's three near-equal
    components amplify the last-bit differences of the two backends' sums (the twin tolerance
    bounds one pass: ``tests/backends/test_numba.py``), so the fits are compared as the
    scikit-learn parity suite compares whole fits."""
    import pyarrow.csv as pacsv
    from conftest import rtol

    from gpuvgm.cli import main

    data = tmp_path / f"d.{fmt}"
    table = _two_columns(1000)
    pq.write_table(table, data) if fmt == "parquet" else pacsv.write_csv(table, data)
    models = {}
    for device in ("auto", "cpu"):
        out = tmp_path / f"{device}.gpuvgm"
        argv = ["fit", str(data), "-o", str(out), "-q", "--seed", "0", "--device", device]
        assert main(argv) == 0
        models[device] = gpuvgm.load(out)
    assert models["auto"].backend_ == "numpy" and models["cpu"].backend_ == "numba"
    tol = rtol(np.float64, "parity")
    np.testing.assert_allclose(models["auto"].means_, models["cpu"].means_, rtol=tol)
    np.testing.assert_allclose(models["auto"].covariances_, models["cpu"].covariances_, rtol=tol)
    np.testing.assert_allclose(models["auto"].weights_, models["cpu"].weights_, atol=tol)
    encoded = {}
    for device in ("auto", "cpu"):
        out = tmp_path / f"{device}.parquet"
        model = str(tmp_path / "auto.gpuvgm")
        assert main(["transform", model, str(data), "-o", str(out), "-q", "--device", device]) == 0
        encoded[device] = pq.read_table(out)
    assert encoded["auto"].equals(encoded["cpu"])


def test_auto_keeps_numba_above_the_small_input_bound(tmp_path):
    from gpuvgm.cli import SMALL_INPUT_VALUES, main

    x = np.random.default_rng(3).normal(size=SMALL_INPUT_VALUES + 1)
    pq.write_table(pa.table({"x": x}), tmp_path / "d.parquet")
    argv = ["fit", str(tmp_path / "d.parquet"), "-o", str(tmp_path / "m.gpuvgm"), "-q"]
    assert main([*argv, "--max-iter", "2", "--seed", "0"]) == 0  # warns on stderr
    assert gpuvgm.load(tmp_path / "m.gpuvgm").backend_ == "numba"


def test_csv_values_are_bounded_by_its_lines(tmp_path):
    """A CSV file's rows are known only once parsed: the bound counts its lines (at least its
    rows, header and a final newline included), and gives up on compressed files."""
    import gzip

    import pyarrow.csv as pacsv

    from gpuvgm._inputs import make_source
    from gpuvgm.cli import _values_bound

    pacsv.write_csv(_two_columns(1000), tmp_path / "d.csv")
    bound = _values_bound(make_source([str(tmp_path / "d.csv")]), [str(tmp_path / "d.csv")])
    assert bound is not None and 1000 * 2 <= bound <= 1003 * 2
    (tmp_path / "d.csv.gz").write_bytes(gzip.compress((tmp_path / "d.csv").read_bytes()))
    gz = [str(tmp_path / "d.csv.gz")]
    assert _values_bound(make_source(gz), gz) is None
