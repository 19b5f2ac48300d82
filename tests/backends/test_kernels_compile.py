"""nvcc compiles every CUDA kernel for sm_80 and sm_90 with every warning an error.

The code compiled is what the CUDA backend hands NVRTC (``_cuda.family_source``: the .cu files
with their headers inlined and ``#line`` directives), and the template instances are the backend's
own name expressions (``_cuda.kernel_names``), so a kernel the backend would ask for but that does
not compile fails here, on machines without a GPU. Skipped when nvcc is missing, unless
``GPUVGM_REQUIRE_NVCC=1`` (CI), where a missing nvcc fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gpuvgm._backends import _cuda
from gpuvgm._validation import MAX_COMPONENTS

ARCHS = ("sm_80", "sm_90")
# K = 1 and 10 (CTGAN's) and the largest supported: every loop bound the unrolling sees.
COMPONENTS = (1, 10, MAX_COMPONENTS)
KERNEL_DIR = Path(__file__).resolve().parents[2] / "kernels"


def _find_nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    return None


@pytest.fixture(scope="module")
def nvcc() -> str:
    path = _find_nvcc()
    if path is None:
        if os.environ.get("GPUVGM_REQUIRE_NVCC") == "1":
            pytest.fail(
                "GPUVGM_REQUIRE_NVCC=1 but nvcc was not found (PATH, CUDA_HOME, /usr/local/cuda)"
            )
        pytest.skip("nvcc not found; set GPUVGM_REQUIRE_NVCC=1 to make this a failure")
    return path


def _translation_unit(family: str) -> str:
    """One family's NVRTC code, and a reference to every instance the backend names in it."""
    ks = (0,) if family in ("moments", "sample") else COMPONENTS
    names = list(dict.fromkeys(n for k in ks for n in _cuda.kernel_names(family, k)))
    table = ",\n".join(f"    reinterpret_cast<const void*>(&{name})" for name in names)
    return (
        f"{_cuda.family_source(family)}\n\nconst void* const gpuvgm_kernels[] = {{\n{table}\n}};\n"
    )


def _compile(
    nvcc: str, source: Path, arch: str, out: Path, options: tuple[str, ...] | None = None
) -> subprocess.CompletedProcess:
    """nvcc on ``source`` with NVRTC's options (the backend's ``-D`` constants included)."""
    options = _cuda.compile_options() if options is None else options
    cmd = [
        nvcc, *options, f"-arch={arch}", "-cubin", "-Werror", "all-warnings",
        "-Xptxas", "-Werror", str(source), "-o", str(out),
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("family", ["moments", "estep", "transform", "sample"])
def test_backend_kernels_compile(nvcc, tmp_path, family, arch):
    source = tmp_path / f"gpuvgm_{family}.cu"  # one program per family, as NVRTC gets them
    source.write_text(_translation_unit(family))
    done = _compile(nvcc, source, arch, tmp_path / f"gpuvgm_{family}_{arch}.cubin")
    assert done.returncode == 0, f"nvcc failed for {family} on {arch}:\n{done.stderr}{done.stdout}"


@pytest.mark.parametrize("name", ["estep.cu", "transform.cu", "inverse.cu", "sample.cu"])
def test_each_file_compiles_on_its_own(nvcc, tmp_path, name):
    """The files as shipped, with a plain -I include path (what a reader or IDE compiles)."""
    done = subprocess.run(
        [nvcc, *_cuda.COMPILE_OPTIONS, "-arch=sm_90", "-cubin", "-Werror", "all-warnings",
         f"-I{KERNEL_DIR}", str(KERNEL_DIR / name), "-o", str(tmp_path / "out.cubin")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_line_directives_point_at_the_real_files():
    """Compiler messages name the real file and line (STYLE.md: the httomolibgpu loader)."""
    code = _cuda.family_source("transform").splitlines()
    assert code[0] == '#line 1 "transform.cu"'
    assert '#line 1 "vgm_math.cuh"' in code
    assert code.count('#line 1 "vgm_math.cuh"') == 1  # shared header inlined once per program
    real = (KERNEL_DIR / "transform.cu").read_text().splitlines()
    # After the header, the line numbering resumes at the line that follows the #include.
    include_at = next(i for i, line in enumerate(real) if line.startswith('#include "vgm_math'))
    resume = code.index(f'#line {include_at + 2} "transform.cu"')
    assert code[resume + 1] == real[include_at + 1]


def test_the_sources_defaults_are_the_python_constants():
    """Threads per block and the largest K are defined in Python and passed as -D defines; the
    #ifndef defaults (for a file compiled on its own, and the emulation) must say the same."""
    header = (KERNEL_DIR / "vgm_math.cuh").read_text()
    for name, value in (("GPUVGM_THREADS", _cuda.THREADS), ("GPUVGM_MAX_K", MAX_COMPONENTS)):
        assert f"#ifndef {name}\n#define {name} {value}\n" in header, name
        assert f"-D{name}={value}" in _cuda.compile_options()
    for name in ("estep.cu", "transform.cu", "inverse.cu", "sample.cu"):
        assert "= 256;" not in (KERNEL_DIR / name).read_text(), name


def test_the_largest_k_reaches_the_kernels(nvcc, tmp_path):
    """The -D define is what the kernels see: with GPUVGM_MAX_K=8, a K=10 instance fails its
    static_assert."""
    source = tmp_path / "gpuvgm_transform.cu"
    source.write_text(_translation_unit("transform"))
    options = (*_cuda.COMPILE_OPTIONS, f"-DGPUVGM_THREADS={_cuda.THREADS}", "-DGPUVGM_MAX_K=8")
    done = _compile(nvcc, source, "sm_80", tmp_path / "out.cubin", options)
    assert done.returncode != 0
    assert "valid mask" in done.stderr + done.stdout
