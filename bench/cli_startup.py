"""How long the ``gpuvgm`` commands take on a small file, start-up included.

Every command is a fresh interpreter, so on a 1 000-row file the imports (NumPy, SciPy, pyarrow,
Numba) and Numba's loading of its compiled kernels are most of the time. In one run, rounds
interleaved so that the machine's load falls on every command alike, N runs of each:

- ``python -c pass`` and ``python -c "import numpy, scipy.special, pyarrow"``: the floors (an
  interpreter; the imports a fit cannot avoid), the references the ratios are to;
- ``gpuvgm --help``, ``gpuvgm info``, ``gpuvgm info model.gpuvgm`` (goal: under 0.5 s each);
- ``gpuvgm fit`` of the 1 000-row table from Parquet and from CSV (goal: under 1.5 s; the
  default ``--device auto`` runs such a small input on the NumPy backend), and from Parquet with
  ``--device cpu`` (Numba: what loading it costs);
- ``gpuvgm transform`` of the same file to Parquet, by default and with ``--device cpu``.

Then, once each: the first fit, transform and inverse on ``--device cpu`` with an empty Numba
cache (the JIT compile a first run pays once per machine), a second fit with that cache (checked
to load, not compile: ``NUMBA_DEBUG_CACHE``), and the NumPy backend's iteration on 1 200 rows as
gpuvgm runs it (BLAS held to one thread), with that hold switched off, and with
``OPENBLAS_NUM_THREADS=1``.

gpuvgm's bytecode is compiled first (``compileall``), as ``pip install`` leaves it.

    python bench/cli_startup.py [--runs 7] [--rows 1000] [--no-cold] [--out PATH]

Prints medians of wall time and of CPU time (user + system); writes JSON to bench/results/. The
VM is shared: wall times move with the load of other work (recorded as the load average at
start and end), CPU times much less; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
GOALS = {"help": 0.5, "info": 0.5, "info_model": 0.5, "fit_parquet": 1.5, "fit_csv": 1.5}

# The NumPy backend's seconds per iteration on 1 200 rows (one column, one block), printed by a
# child process so that OPENBLAS_NUM_THREADS can differ between runs of it; with the argument
# "unheld", gpuvgm's hold on BLAS is switched off (what it was before the hold).
ITERATION_SCRIPT = """
import json, sys, warnings
import numpy as np
import gpuvgm
from gpuvgm import _parallel
if sys.argv[1:] == ["unheld"]:
    _parallel._OneBlasThread.__enter__ = lambda self: None
    _parallel._OneBlasThread.__exit__ = lambda self, *exc: None
rng = np.random.default_rng(0)
X = np.concatenate([rng.normal(0, 1, 600), rng.normal(10, 2, 600)])
warnings.simplefilter("ignore")
per_iter = []
for _ in range(5):
    m = gpuvgm.VGM(10, max_iter=50, tol=0, device="numpy", random_state=0).fit(X)
    per_iter.append(m.fit_report_["seconds"]["iterations"] / m.fit_report_["n_iter"][0])
print(json.dumps(sorted(per_iter)[len(per_iter) // 2]))
"""


def gpuvgm_command() -> list[str]:
    """The installed entry point next to this interpreter (what a user runs), else ``-m``."""
    script = Path(sys.executable).parent / "gpuvgm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gpuvgm"]


def gpuvgm_package() -> str:
    """The directory of the gpuvgm package this interpreter imports (without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("gpuvgm")
    assert spec is not None and spec.origin is not None, "gpuvgm is not installed"
    return str(Path(spec.origin).parent)


def write_table(directory: Path, rows: int) -> tuple[Path, Path]:
    """A two-column table (bimodal with nulls; heavy-tailed) as Parquet and as CSV."""
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.normal(0, 1, rows // 2), rng.normal(10, 2, rows - rows // 2)])
    b = rng.lognormal(1.0, 0.8, rows)
    table = pa.table({"a": pa.array(a, mask=rng.uniform(size=rows) < 0.02), "b": b})
    pq.write_table(table, directory / "data.parquet")
    pacsv.write_csv(table, directory / "data.csv")
    return directory / "data.parquet", directory / "data.csv"


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child, its stdout and stderr) of one run; fails on a
    non-zero exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout + proc.stderr


def commands(cwd: Path, parquet: Path, csv: Path) -> dict[str, list[str]]:
    g = gpuvgm_command()
    fit = [*g, "fit", "-q", "--force", "--seed", "0"]
    transform = [*g, "transform", "-q", "model.gpuvgm", str(parquet)]
    return {
        "python": [sys.executable, "-c", "pass"],
        "imports": [sys.executable, "-c", "import numpy, scipy.special, pyarrow"],
        "help": [*g, "--help"],
        "info": [*g, "info"],
        "info_model": [*g, "info", "model.gpuvgm"],
        "fit_parquet": [*fit, str(parquet), "-o", "fit_p.gpuvgm"],
        "fit_csv": [*fit, str(csv), "-o", "fit_c.gpuvgm"],
        "fit_parquet_cpu": [*fit, str(parquet), "-o", "fit_n.gpuvgm", "--device", "cpu"],
        "transform": [*transform, "-o", "enc.parquet"],
        "transform_cpu": [*transform, "-o", "enc_cpu.parquet", "--device", "cpu"],
    }


def cold_numba(cwd: Path, parquet: Path) -> dict[str, object]:
    """The first fit, transform and inverse with an empty Numba cache, then a second fit that
    must load the kernels it compiled rather than compile them again."""
    g = gpuvgm_command()
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        cpu = ["-q", "--device", "cpu"]
        fit = [*g, "fit", *cpu, "--force", "--seed", "0", str(parquet), "-o", "cold.gpuvgm"]
        out: dict[str, object] = {}
        out["fit_seconds"], out["fit_cpu_seconds"], _ = run(fit, cwd, env)
        out["transform_seconds"], _, _ = run(
            [*g, "transform", *cpu, "cold.gpuvgm", str(parquet), "-o", "cold.parquet"], cwd, env
        )
        out["inverse_seconds"], _, _ = run(
            [*g, "inverse", *cpu, "cold.gpuvgm", "cold.parquet", "-o", "back.parquet"], cwd, env
        )
        warm_wall, _, log = run(fit, cwd, {**env, "NUMBA_DEBUG_CACHE": "1"})
        out["warm_fit_seconds"] = warm_wall
        out["warm_fit_kernels_loaded"] = log.count("[cache] data loaded")
        out["warm_fit_kernels_compiled"] = log.count("[cache] data saved")
    return out


def blas_iteration(cwd: Path, rounds: int = 5) -> dict[str, float]:
    """Seconds per NumPy-backend iteration on 1 200 rows (median of ``rounds`` interleaved
    child processes): as gpuvgm runs it (BLAS held to one thread), with the hold switched off,
    and with ``OPENBLAS_NUM_THREADS=1``. Held against the environment's one thread should be
    about 1; unheld against held is what the hold saves."""
    variants = {
        "held": ([], {}),
        "unheld": (["unheld"], {}),
        "openblas_1": ([], {"OPENBLAS_NUM_THREADS": "1"}),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (argv, extra) in variants.items():
            proc = subprocess.run(
                [sys.executable, "-c", ITERATION_SCRIPT, *argv],
                cwd=cwd,
                env={**os.environ, **extra},
                capture_output=True,
                text=True,
                check=True,
            )
            times[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    out = {f"{name}_seconds": statistics.median(v) for name, v in times.items()}
    out["held_over_openblas_1"] = out["held_seconds"] / out["openblas_1_seconds"]
    out["unheld_over_held"] = out["unheld_seconds"] / out["held_seconds"]
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--no-cold", action="store_true", help="skip the empty-cache runs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    # Bytecode as ``pip install`` leaves it: an editable install under PYTHONDONTWRITEBYTECODE
    # would otherwise compile gpuvgm's sources on every command (about 60 ms of CPU).
    package = Path(gpuvgm_package())
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as tmp:
        cwd = Path(tmp)
        parquet, csv = write_table(cwd, args.rows)
        g = gpuvgm_command()
        run([*g, "fit", "-q", "--seed", "0", str(parquet), "-o", "model.gpuvgm"], cwd)
        cmds = commands(cwd, parquet, csv)
        for argv in cmds.values():  # warm the page cache and Numba's cache
            run(argv, cwd)
        walls: dict[str, list[float]] = {name: [] for name in cmds}
        cpus: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.runs):  # interleaved rounds
            for name, argv in cmds.items():
                wall, cpu, _ = run(argv, cwd)
                walls[name].append(wall)
                cpus[name].append(cpu)
        cold = None if args.no_cold else cold_numba(cwd, parquet)
        blas = blas_iteration(cwd)
    load_end = os.getloadavg()

    median = {name: statistics.median(v) for name, v in walls.items()}
    median_cpu = {name: statistics.median(v) for name, v in cpus.items()}
    floor = median["imports"]
    print(
        f"gpuvgm commands on a {args.rows:,}-row file, median of {args.runs} "
        f"(load average {load_start[0]:.1f} -> {load_end[0]:.1f} on {os.cpu_count()} cores)"
    )
    print(f"  {'command':<20} {'wall s':>8} {'cpu s':>8} {'wall / imports':>15} {'goal':>8}")
    for name in cmds:
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"{'<' if median[name] < goal else '>='} {goal:g} s"
        print(
            f"  {name:<20} {median[name]:>8.3f} {median_cpu[name]:>8.3f} "
            f"{median[name] / floor:>15.2f} {verdict:>8}"
        )
    if cold is not None:
        print(
            f"  empty Numba cache: first fit {cold['fit_seconds']:.1f} s, transform "
            f"{cold['transform_seconds']:.1f} s, inverse {cold['inverse_seconds']:.1f} s; "
            f"the next fit {cold['warm_fit_seconds']:.2f} s "
            f"({cold['warm_fit_kernels_loaded']} kernels loaded, "
            f"{cold['warm_fit_kernels_compiled']} compiled)"
        )
    print(
        f"  NumPy-backend iteration, 1 200 rows: {blas['held_seconds'] * 1e3:.2f} ms "
        f"(BLAS held); {blas['unheld_seconds'] * 1e3:.2f} ms unheld "
        f"(x{blas['unheld_over_held']:.2f}); {blas['openblas_1_seconds'] * 1e3:.2f} ms with "
        f"OPENBLAS_NUM_THREADS=1 (held / that: {blas['held_over_openblas_1']:.2f})"
    )

    result = {
        "date": dt.date.today().isoformat(),
        "rows": args.rows,
        "runs": args.runs,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "pythondontwritebytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
        "bytecode_compiled_first": True,
        "load_average_start": load_start,
        "load_average_end": load_end,
        "goals_seconds": GOALS,
        "median_wall_seconds": median,
        "median_cpu_seconds": median_cpu,
        "wall_seconds": walls,
        "ratio_to_imports": {name: v / floor for name, v in median.items()},
        "cold_numba_cache": cold,
        "blas_iteration": blas,
    }
    out = args.out or HERE / "results" / f"cli_startup-vm-{result['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
