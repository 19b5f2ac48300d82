"""The CUDA sources (top-level ``kernels/``) ship as the package ``gpuvgm.kernels`` and load
through :mod:`importlib.resources`, from a non-editable wheel and from an editable install."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNELS = sorted(p.name for p in (ROOT / "kernels").iterdir() if p.suffix in {".cu", ".cuh"})
# Run in a fresh interpreter from an empty directory, so that the checkout cannot shadow the
# installed copy; print where gpuvgm and its kernels were found and how much code was read.
SCRIPT = (
    "import gpuvgm, importlib.resources as r; from gpuvgm._backends import _cuda; "
    "src = _cuda.family_source('estep'); assert '__global__' in src; "
    "print(repr((gpuvgm.__file__, str(r.files('gpuvgm.kernels').joinpath('estep.cu')), len(src))))"
)


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--quiet", *args], check=True)


def _run(python: str, cwd: Path, env: dict[str, str]) -> tuple[str, str, int]:
    out = subprocess.run(
        [python, "-c", SCRIPT], cwd=cwd, check=True, capture_output=True, text=True, env=env
    )
    return ast.literal_eval(out.stdout.strip())


def test_the_build_lists_every_package():
    """``packages`` is explicit (a mapped folder is invisible to ``packages.find``): every
    package folder of gpuvgm/ must be in it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "gpuvgm").rglob("__init__.py")
    }
    assert found | {"gpuvgm.kernels"} == set(config["packages"])
    assert config["package-dir"]["gpuvgm.kernels"] == "kernels"


@pytest.mark.slow
def test_wheel_contains_kernels_and_installed_copy_reads_them(tmp_path):
    _pip("wheel", "--no-deps", "-w", str(tmp_path), str(ROOT))
    (wheel,) = tmp_path.glob("gpuvgm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for kernel in KERNELS:
        assert f"gpuvgm/kernels/{kernel}" in names, kernel
    assert not [n for n in names if n.endswith(".h")], "the host-emulation header is test code"
    target = tmp_path / "site"
    _pip("install", "--no-deps", "--target", str(target), str(wheel))
    module, kernel, n_chars = _run(sys.executable, tmp_path, {"PYTHONPATH": str(target)})
    assert Path(module).is_relative_to(target), module
    assert Path(kernel) == target / "gpuvgm" / "kernels" / "estep.cu"
    assert n_chars > 1000


@pytest.mark.slow
def test_editable_install_reads_the_kernels_from_the_source_tree(tmp_path):
    """An editable install of a copy of the checkout finds ``gpuvgm.kernels`` in its top-level
    ``kernels/`` (setuptools' editable finder honours ``package-dir``)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("gpuvgm", "kernels"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "--quiet", "install", "--no-deps", "-e", str(src)], check=True
    )
    # gpuvgm's dependencies from this environment, after the new one's site-packages (a path in a
    # .pth file, read after the editable install's own; PYTHONPATH would come first and bring
    # this checkout's editable finder, a module of the same name).
    deps = next(p for p in sys.path if p.endswith("site-packages"))
    site = next((env_dir / "lib").glob("python*/site-packages"))
    (site / "zz_gpuvgm_test_deps.pth").write_text(deps + "\n")
    module, kernel, n_chars = _run(python, tmp_path, {})
    assert Path(module).is_relative_to(src / "gpuvgm"), module
    assert Path(kernel) == src / "kernels" / "estep.cu"
    assert n_chars > 1000
