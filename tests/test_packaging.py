"""The wheel ships the CUDA sources, and an installed (non-editable) copy can read them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = sorted(p.name for p in (ROOT / "gpuvgm" / "kernels").iterdir() if p.is_file())


@pytest.mark.slow
def test_wheel_contains_kernels_and_installed_copy_reads_them(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("gpuvgm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for kernel in KERNELS:
        assert f"gpuvgm/kernels/{kernel}" in names, kernel
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    # Run from an empty directory so that the checkout cannot shadow the installed copy.
    script = (
        "import gpuvgm, pathlib; from gpuvgm._backends import _cuda; "
        "assert 'site' in pathlib.Path(gpuvgm.__file__).parts, gpuvgm.__file__; "
        "src = _cuda.family_source('estep'); assert '__global__' in src; print(len(src))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(target)},
    )
    assert int(out.stdout) > 1000
