"""The ``gpuvgm`` command line. The only module that prints.

Exit codes: 0 done; 1 a data, model-file or output error (one line, no traceback unless
``-v``); 2 a usage error: argparse's own, or an option value outside its range (a
:class:`ParameterError`, e.g. ``--n-components 0`` or ``GPUVGM_NUM_THREADS=abc``); 130 interrupted
(SIGINT), 143 terminated (SIGTERM, as ``docker stop`` sends): either way the outputs being
written are removed and any earlier file at the destination is left as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from ._errors import GPUVGMError, ParameterError
from ._version import __version__


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like SIGINT's KeyboardInterrupt so that every
    ``finally`` and atomic write on the way out runs (temporary files removed)."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_output(output: str | None, *inputs: Any) -> None:
    """Refuse an output that is one of the inputs or inside/around one (before any work)."""
    if output:
        from ._writers import check_destination

        check_destination(output, [i for i in inputs if i])


def _print_demo(result: dict[str, Any]) -> None:
    clip = result["clip"]
    print()
    print(
        f"  backend {result['backend']}, seed {result['seed']}, "
        f"clip {'none (exact codes)' if clip is None else clip}"
    )
    print(f"  {'phase':<10} {'seconds':>9} {'rows/s':>14}")
    print(
        f"  {'fit':<10} {result['fit_seconds']:>9.2f} {result['fit_rows_per_second']:>14,.0f}"
        f"   ({result['fit_passes']} full passes; "
        f"{result['fit_row_passes_per_second']:,.0f} row-passes/s)"
    )
    print(
        f"  {'transform':<10} {result['transform_seconds']:>9.2f} "
        f"{result['transform_rows_per_second']:>14,.0f}   (Parquet -> Parquet, full layout)"
    )
    print(
        f"  {'inverse':<10} {result['inverse_seconds']:>9.2f} "
        f"{result['inverse_rows_per_second']:>14,.0f}   (Parquet -> memory, every row checked)"
    )
    print()
    print(
        f"  {'column':<10} {'components':>10} {'iterations':>10} {'converged':>9} "
        f"{'nulls':>9} {'clipped':>9} {'max |err| / std':>16}"
    )
    for j, name in enumerate(result["columns"]):
        print(
            f"  {name:<10} {result['components'][j]:>10} {result['n_iter'][j]:>10} "
            f"{'yes' if result['converged'][j] else 'no':>9} {result['nulls_in'][j]:>9,} "
            f"{result['n_clipped'][j]:>9,} "
            f"{result['round_trip_max_error_over_std'][j]:>16.2e}"
        )
    print()
    nulls, back = sum(result["nulls_in"]), sum(result["nulls_back"])
    lost, clipped = sum(result["values_lost"]), sum(result["n_clipped"])
    print(
        f"  round trip: all {result['rows_compared']:,} rows x {len(result['columns'])} columns "
        f"decoded and compared; {back:,} of {nulls:,} nulls came back as nulls"
        + (f", {lost:,} values came back as nulls (a bug: please report it)" if lost else "")
        + "."
    )
    if clipped:
        kept = max(result["round_trip_max_error_over_std_unclipped"])
        print(
            f"  {clipped:,} values were clipped (|alpha| capped at {clip}, as CTGAN does): they "
            f"decode to at most {4 * clip:g} std from their component, hence the error above; "
            f"the other rows come back to {kept:.2e} std. Without --clip nothing is clipped."
        )
    else:
        print("  nothing was clipped: the error above is float64 rounding, over every row.")
    print(f"  encoded output: {result['encoded']}")


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import DEMO_COLUMNS, run_demo

    lines = None if args.quiet else lambda line: print(f"  {line}", flush=True)
    if not args.quiet:
        print(
            f"gpuvgm {__version__} demo: {args.rows:,} rows x {len(DEMO_COLUMNS)} columns "
            f"in {args.dir}/",
            flush=True,
        )
    bars = _progress(args, args.rows, max_iter=args.max_iter, lines=lines)
    try:
        result = run_demo(
            args.dir,
            rows=args.rows,
            device=args.device,
            max_iter=args.max_iter,
            chunk_rows=args.chunk_rows,
            clip=args.clip,
            progress=bars,
        )
    finally:
        bars.close()
    _write_metrics(args.metrics_json, result)
    if not args.quiet:
        _print_demo(result)
    return 0


def _progress(
    args: argparse.Namespace,
    total: int | None,
    max_iter: int | None = None,
    lines: Any = None,
) -> Any:
    """Progress bars on stderr when it is a terminal or ``--progress`` is given, never with
    ``--quiet``; ``lines(text)`` hears one line per phase as it finishes."""
    from ._progress import ProgressBars

    draw = not args.quiet and (args.progress or sys.stderr.isatty())
    return ProgressBars(total, max_iter=max_iter, bars=draw, lines=lines)


def _clip_arg(text: str) -> float | None:
    """``--clip``: ``none`` (no clip, the default) or a bound on ``|alpha|`` (CTGAN: 0.99)."""
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'none' or a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected 'none' or a number > 0, got {text!r}")
    return value


def _seed_arg(text: str) -> int | None:
    """``--seed``: an integer >= 0, or ``random`` (a fresh seed drawn from the OS)."""
    if text.lower() == "random":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 0 or 'random', got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 or 'random', got {text!r}")
    return value


#: ``gpuvgm fit``'s seed without ``--seed``: the same model on every run (``--seed random``
#: for a fresh one).
DEFAULT_SEED = 0


def _model_columns(model: Any) -> list[str]:
    """A fitted model's column names, from its public attributes."""
    if hasattr(model, "feature_names_in_"):
        return [str(c) for c in model.feature_names_in_]
    return [str(i) for i in range(model.n_features_in_)]


def _columns(text: str | None) -> list[str] | None:
    return None if text is None else [c for c in text.split(",") if c]


#: ``--device auto`` runs the NumPy backend on an input of at most this many values (rows x
#: columns). Every command is a new process, in which the compiled backend first pays for
#: importing Numba and loading its cached kernels (about 0.5 s of CPU), more than the NumPy
#: backend's whole fit of such an input. The two are twins: on inputs this small the fitted
#: parameters agree to about 1e-12 relative and the encoded outputs are identical; the model
#: records the backend that fitted it (``backend_``, printed). ``--device cpu`` forces Numba.
#: The library's ``device="auto"`` has no such rule: a process that fits many small columns
#: (the RDT and CTGAN integrations) loads Numba once and gains from it on every column.
SMALL_INPUT_VALUES = 1 << 15

#: CSV files up to this size are scanned for their line count (a bound on their rows).
_CSV_COUNT_BYTES = 4 << 20


def _values_bound(source: Any, data: Sequence[str]) -> int | None:
    """At least the number of values ``source`` (read from the files ``data``) holds, or None
    when that is not known before reading it: rows x columns, or for plain CSV files, whose
    rows are known only once parsed, their lines x columns when they are small."""
    if source.n_rows is not None:
        return int(source.n_rows) * len(source.columns)
    from ._files import expand_paths

    paths = expand_paths(data)
    if not all(p.suffix.lower() in (".csv", ".tsv") for p in paths):
        return None  # compressed CSV: its bytes do not count lines
    if sum(p.stat().st_size for p in paths) > _CSV_COUNT_BYTES:
        return None
    return sum(p.read_bytes().count(b"\n") + 1 for p in paths) * len(source.columns)


def _device(device: str, n_values: int | None) -> str:
    """The backend a command runs: ``device``, except ``"numpy"`` for ``auto`` on a small
    input (:data:`SMALL_INPUT_VALUES`)."""
    if device == "auto" and n_values is not None and n_values <= SMALL_INPUT_VALUES:
        return "numpy"
    return device


def _write_metrics(path: str | None, metrics: dict[str, Any]) -> None:
    if path:
        from ._writers import atomic_path, writing

        with atomic_path(path) as tmp, writing(path), open(tmp, "w") as f:
            json.dump(metrics, f, indent=2, default=str)


def _dask_client_and_frame(args: argparse.Namespace) -> tuple[Any, Any]:
    """(client, Dask DataFrame of the files) for --scheduler/--local-cluster, else (None, None)."""
    if not (args.scheduler or args.local_cluster):
        return None, None
    try:
        import dask.dataframe as dd
        from distributed import Client, LocalCluster
    except ImportError as exc:
        from ._errors import MissingDependencyError

        raise MissingDependencyError(
            f"--scheduler/--local-cluster need Dask ({exc}): pip install 'gpuvgm[dask]'"
        ) from None

    from ._files import CSV_SUFFIXES, expand_paths

    client = (
        Client(args.scheduler)
        if args.scheduler
        else Client(LocalCluster(n_workers=args.local_cluster, threads_per_worker=1))
    )
    paths = [str(p) for p in expand_paths(args.data)]  # sorted: a stable row order
    columns = _columns(args.columns)
    csv = paths[0].lower().endswith(CSV_SUFFIXES)
    frame = dd.read_csv(paths, usecols=columns) if csv else dd.read_parquet(paths, columns=columns)
    return client, frame


def _cmd_fit(args: argparse.Namespace) -> int:
    import warnings

    from ._errors import ConvergenceWarning
    from ._estimator import VGM
    from ._inputs import make_source
    from ._persistence import check_model_destination

    # Before the fit, not after an hour of it: the model must not replace an input, nor a file
    # that is not a model unless --force.
    _check_output(args.output, *args.data)
    _check_output(args.metrics_json, *args.data, args.output)
    check_model_destination(args.output, overwrite=args.force)
    client, frame = _dask_client_and_frame(args)
    source = (
        make_source(frame) if frame is not None else make_source(args.data, _columns(args.columns))
    )
    model = VGM(
        n_components=args.n_components,
        max_iter=args.max_iter,
        tol=args.tol,
        tol_scale=args.tol_scale,
        component_selection=args.component_selection,
        chunk_rows=args.chunk_rows,
        cache_bytes=args.cache_bytes,
        device_cache_fraction=args.device_cache_fraction,
        schedule=args.schedule,
        n_init=args.n_init,
        clip=args.clip,
        device=_device(
            args.device, None if frame is not None else _values_bound(source, args.data)
        ),
        compute_dtype=args.compute_dtype,
        n_jobs=args.n_jobs,
        random_state=args.seed,
    )
    lines = None if args.quiet else lambda line: print(f"  {line}", flush=True)
    bars = _progress(args, source.n_rows, max_iter=args.max_iter, lines=lines)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            model.fit(source, progress=bars)
        finally:
            bars.close()
            if client is not None:
                client.close()
    for w in caught:
        print(f"gpuvgm: warning: {w.message}", file=sys.stderr)
    model.save(args.output, overwrite=args.force)
    report = model.fit_report_
    _write_metrics(args.metrics_json, report)
    if not args.quiet:
        seconds = report["seconds"]["total"]
        seed = f"seed {model.seed_}"
        if args.seed is None:
            seed += f" (drawn for --seed random; --seed {model.seed_} repeats this fit)"
        print(
            f"fitted {report['rows']:,} rows x {len(report['columns'])} columns on "
            f"{report['backend']} in {seconds:.2f} s ({report['passes']} passes), {seed}; "
            f"model written to {args.output}"
        )
        print(f"  {'column':<24} {'components':>10} {'iterations':>10} {'converged':>9}")
        for j, name in enumerate(report["columns"]):
            print(
                f"  {name:<24} {int(model.valid_components_[j].sum()):>10} "
                f"{report['n_iter'][j]:>10} {'yes' if report['converged'][j] else 'no':>9}"
            )
    return 0


def _load(path: str, device: str, chunk_rows: int, n_jobs: int | None = None) -> Any:
    from ._estimator import load as load_model

    model = load_model(path).set_params(device=device, chunk_rows=chunk_rows)
    return model if n_jobs is None else model.set_params(n_jobs=n_jobs)


_OUTPUT_HELP = "a .parquet file, or (any other name) a directory of part files written in parallel"
_CLIP_HELP = (
    "clip |alpha| to this on transform, as CTGAN does with 0.99; 'none' (the default) keeps "
    "the exact value, so the round trip returns every row"
)


def _cmd_transform(args: argparse.Namespace) -> int:
    from ._inputs import make_source

    _check_output(args.output, args.model, *args.data)
    _check_output(args.metrics_json, args.model, *args.data, args.output)
    model = _load(args.model, args.device, args.chunk_rows, args.n_jobs)
    columns = _columns(args.columns) or _model_columns(model)
    source = make_source(args.data, columns)
    model.set_params(device=_device(args.device, _values_bound(source, args.data)))
    bars = _progress(args, source.n_rows)
    try:
        info = model.transform_parquet(
            source,
            args.output,
            layout=args.layout,
            passthrough=_columns(args.passthrough) or (),
            rows_per_file=args.rows_per_file,
            progress=bars,
        )
    finally:
        bars.close()
    _write_metrics(args.metrics_json, info)
    if not args.quiet:
        print(
            f"transformed {info['rows']:,} rows in {info['seconds']:.2f} s "
            f"({info['rows_per_second']:,.0f} rows/s, {args.layout} layout) -> {args.output}; "
            f"clipped per column: {info['n_clipped']}"
        )
    return 0


def _cmd_inverse(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from ._files import expand_paths

    _check_output(args.output, args.model, args.data)
    _check_output(args.metrics_json, args.model, args.data, args.output)
    model = _load(args.model, args.device, args.chunk_rows, args.n_jobs)
    total = None
    try:  # a file, or a directory of part files
        total = sum(pq.read_metadata(p).num_rows for p in expand_paths(args.data))
    except Exception:  # the inverse itself reports an unreadable input with a clear error
        pass
    n_values = None if total is None else total * model.n_features_in_
    model.set_params(device=_device(args.device, n_values))
    bars = _progress(args, total)
    try:
        info = model.inverse_parquet(
            args.data, args.output, rows_per_file=args.rows_per_file, progress=bars
        )
    finally:
        bars.close()
    _write_metrics(args.metrics_json, info)
    if not args.quiet:
        print(
            f"decoded {info['rows']:,} rows in {info['seconds']:.2f} s "
            f"({info['rows_per_second']:,.0f} rows/s) -> {args.output}"
        )
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    _check_output(args.output, args.model, *args.data)
    model = _load(args.model, args.device, args.chunk_rows, args.n_jobs)
    model.plot(
        args.data,
        args.output,
        columns=_columns(args.columns),
        sample_rows=args.sample_rows,
        max_rows=args.max_rows,
        bins=args.bins,
        dpi=args.dpi,
        log=args.log,
    )
    if not args.quiet:
        print(f"wrote {args.output}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from ._inputs import make_source
    from ._report import check_report_destination

    _check_output(args.metrics_json, args.model, *args.data, args.output)
    check_report_destination(args.output, [args.model, *args.data], args.force)
    model = _load(args.model, args.device, args.chunk_rows)
    source = make_source(args.data, _model_columns(model))
    bars = _progress(args, source.n_rows)

    def progress(phase: str, rows: int) -> None:
        if phase == "report":  # the plots that follow are quick; one bar for the pass
            bars(phase, rows)

    try:
        rows = model.report(
            source,
            args.output,
            columns=_columns(args.columns),
            sample_rows=args.sample_rows,
            max_rows=args.max_rows,
            bins=args.bins,
            dpi=args.dpi,
            log={"both": None, "log": True, "linear": False}[args.scale],
            overwrite=args.force,
            describe={"model file": args.model, "data": ", ".join(args.data)},
            progress=progress,
        )
    finally:
        bars.close()
    _write_metrics(args.metrics_json, {"columns": rows})
    if not args.quiet:
        exact = sum(r["round_trip"] <= 1e-9 for r in rows)
        clipped = sum(r["n_clipped"] for r in rows)
        print(
            f"wrote {args.output}: {len(rows)} columns, {exact} with an exact round trip, "
            f"{clipped:,} values clipped"
        )
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import time
    import warnings

    import numpy as np

    from ._errors import ConvergenceWarning
    from ._estimator import VGM

    rng = np.random.default_rng(0)
    centers = np.array([-5.0, 0.0, 3.0, 8.0, 15.0])
    X = (
        centers[rng.integers(0, 5, (args.rows, args.columns))]
        + rng.normal(0, 0.7, (args.rows, args.columns))
    ).astype(np.float32)
    results: dict[str, Any] = {
        "rows": args.rows,
        "columns": args.columns,
        "iterations": args.iterations,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = VGM(
            10,
            max_iter=args.iterations,
            tol=0.0,
            device=args.device,
            chunk_rows=args.chunk_rows,
            random_state=0,
        ).fit(X)
    seconds = model.fit_report_["seconds"]
    values = args.rows * args.columns
    results["backend"] = model.backend_
    results["prepass_values_per_second"] = values / seconds["prepass"]
    results["iteration_seconds"] = seconds["iterations"] / args.iterations
    results["estep_values_per_second"] = values / results["iteration_seconds"]
    t = time.perf_counter()
    model.transform(X)
    results["transform_values_per_second"] = values / (time.perf_counter() - t)
    _write_metrics(args.metrics_json, results)
    if not args.quiet:
        print(
            f"gpuvgm bench: {args.rows:,} rows x {args.columns} float32 columns, K=10, "
            f"backend {model.backend_}"
        )
        print(f"  pre-pass        {results['prepass_values_per_second']:>14,.0f} values/s")
        print(
            f"  iteration       {results['estep_values_per_second']:>14,.0f} values/s "
            f"({results['iteration_seconds'] * 1e3:.1f} ms per pass)"
        )
        print(f"  transform       {results['transform_values_per_second']:>14,.0f} values/s")
    return 0


def _installed_version(distribution: str) -> str:
    """A dependency's installed version, read from its metadata: importing NumPy and pyarrow
    to ask them would cost ``gpuvgm info`` a quarter of a second."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def _cmd_info(args: argparse.Namespace) -> int:
    from ._backends import get_backend

    print(f"gpuvgm {__version__}")
    print(
        f"python {platform.python_version()}, numpy {_installed_version('numpy')}, "
        f"pyarrow {_installed_version('pyarrow')}"
    )
    if args.model:
        from ._estimator import load

        model = load(args.model)
        print(f"model {args.model}: {model!r}")
        print(
            f"  seed {model.seed_} (`gpuvgm fit --seed {model.seed_}` with the same data and "
            "options repeats the fit)"
        )
        _print_components(model)
    try:
        backend = get_backend("cuda")
        print(f"cuda: available ({backend.NAME})")
    except GPUVGMError as exc:
        print(f"cuda: unavailable: {exc}")
        if args.device:
            return 1
    return 0


def _print_components(model: Any) -> None:
    """Per column: every component's weight, then the valid ones by code (the value the
    transform writes in ``component``) with weight, mean and std."""
    import numpy as np

    for j, name in enumerate(_model_columns(model)):
        valid = model.valid_components_[j]
        weights = model.weights_[j]
        stds = np.sqrt(model.covariances_[j])
        n_valid = int(valid.sum())
        print(
            f"  {name}: {n_valid} valid of {valid.size} components, iterations "
            f"{int(model.n_iter_[j])}, converged {'yes' if model.converged_[j] else 'no'}"
        )
        print(f"    weights (all {valid.size}): [{', '.join(f'{w:.4g}' for w in weights)}]")
        print(f"    {'code':>6} {'weight':>10} {'mean':>14} {'std':>12}")
        for code, k in enumerate(np.flatnonzero(valid)):
            print(f"    {code:>6} {weights[k]:>10.6f} {model.means_[j][k]:>14.6g} {stds[k]:>12.6g}")
        if n_valid < valid.size:
            print(
                f"    pruned {valid.size - n_valid} (weight <= {model.weight_threshold:g}, no "
                f"code): total weight {weights[~valid].sum():.6f}"
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpuvgm",
        description="Mode-specific normalization (Dirichlet-process variational Gaussian "
        "mixtures) on a billion rows.",
    )
    parser.add_argument("--version", action="version", version=f"gpuvgm {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log progress (-v) or every iteration (-vv); show tracebacks",
    )
    common.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    common.add_argument(
        "--device",
        choices=["auto", "cpu", "numpy", "cuda"],
        default="auto",
        help="auto: CUDA when usable, else the compiled CPU backend (cpu); the NumPy backend "
        f"for inputs of at most {SMALL_INPUT_VALUES:,} values, where loading Numba would take "
        "longer than the whole run",
    )
    common.add_argument("--chunk-rows", type=int, default=1 << 20)
    common.add_argument(
        "--n-jobs",
        type=int,
        default=None,
        help="CPU threads (default: GPUVGM_NUM_THREADS or one per core; -1: every core)",
    )
    common.add_argument("--metrics-json", metavar="PATH", help="write the figures as JSON")
    common.add_argument(
        "--progress",
        action="store_true",
        help="draw progress bars on stderr even when it is not a terminal (default: only then)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", parents=[common], help="generate the demo table, fit, transform and invert it"
    )
    demo.add_argument("--dir", default="demo_data", help="where the demo files go")
    demo.add_argument("--rows", type=int, default=5_000_000)
    demo.add_argument("--max-iter", type=int, default=100)
    demo.add_argument("--clip", type=_clip_arg, default=None, help=_CLIP_HELP)
    demo.set_defaults(func=_cmd_demo)

    fit = sub.add_parser("fit", parents=[common], help="fit a model to Parquet/CSV files")
    fit.add_argument("data", nargs="+", help="Parquet/CSV files or directories (sorted)")
    fit.add_argument("-o", "--output", required=True, help="model file to write")
    fit.add_argument(
        "--force",
        action="store_true",
        help="replace an existing output that is not a gpuvgm model file (never an input)",
    )
    fit.add_argument("--columns", help="comma-separated columns to fit (default: all)")
    fit.add_argument("--n-components", type=int, default=10)
    fit.add_argument("--max-iter", type=int, default=100)
    fit.add_argument("--tol", type=float, default=1e-7)
    fit.add_argument("--tol-scale", choices=["per_row", "sum"], default="per_row")
    fit.add_argument("--component-selection", choices=["sample", "argmax"], default="sample")
    fit.add_argument(
        "--cache-bytes",
        type=int,
        default=None,
        help="host cache (default: 1/8 of free RAM, then a temp file)",
    )
    fit.add_argument("--schedule", choices=["auto", "sklearn", "staged"], default="auto")
    fit.add_argument("--n-init", type=int, default=1)
    fit.add_argument("--device-cache-fraction", type=float, default=0.5)
    fit.add_argument(
        "--compute-dtype",
        choices=["float32", "float64"],
        default=None,
        help="E-step precision (default: float64 on the CPU, the data's dtype on CUDA)",
    )
    fit.add_argument("--clip", type=_clip_arg, default=None, help=_CLIP_HELP)
    fit.add_argument(
        "--seed",
        type=_seed_arg,
        default=DEFAULT_SEED,
        help=f"seed of the initialisation and of the component draws: an integer (default "
        f"{DEFAULT_SEED}, so every run gives the same model) or 'random' (a fresh seed, printed "
        "and stored in the model)",
    )
    where = fit.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="fit on a running Dask cluster (tcp://head:8786)"
    )
    where.add_argument(
        "--local-cluster", type=int, metavar="N", help="fit on a local Dask cluster of N workers"
    )
    fit.set_defaults(func=_cmd_fit)

    # The Parquet output of transform and inverse: one file, or a directory of part files.
    parquet_out = argparse.ArgumentParser(add_help=False)
    parquet_out.add_argument("-o", "--output", required=True, help=_OUTPUT_HELP)
    parquet_out.add_argument(
        "--rows-per-file", type=int, default=None, help="rows per part file (directory output)"
    )

    transform = sub.add_parser(
        "transform",
        parents=[common, parquet_out],
        help="encode files with a fitted model into Parquet",
    )
    transform.add_argument("model")
    transform.add_argument("data", nargs="+")
    transform.add_argument(
        "--layout",
        # gpuvgm._layouts.LAYOUTS, spelled here so that --help does not import pyarrow.
        choices=["full", "rdt", "rdt_random", "compact", "ctgan"],
        default="full",
        help="output columns (README, 'Layouts'): full = float64 normalized, int32 component "
        "(-1 for a null), bool is_null [default]; rdt = RDT ClusterBasedNormalizer's own output "
        "(float64, a null encoded as the mean, float64 is_null); rdt_random = rdt without "
        "is_null; compact = float32 + smallest int; ctgan = one-hot float32",
    )
    transform.add_argument("--columns", help="comma-separated (default: the model's columns)")
    transform.add_argument("--passthrough", help="comma-separated columns copied unchanged")
    transform.set_defaults(func=_cmd_transform)

    inverse = sub.add_parser(
        "inverse",
        parents=[common, parquet_out],
        help="decode a transformed Parquet file back to the columns",
    )
    inverse.add_argument("model")
    inverse.add_argument("data", help="a transformed Parquet file or directory of part files")
    inverse.set_defaults(func=_cmd_inverse)

    plot = sub.add_parser(
        "plot", parents=[common], help="draw each column's data and fitted mixture into an image"
    )
    plot.add_argument("model", help="a model file written by `gpuvgm fit`")
    plot.add_argument("data", nargs="+", help="Parquet/CSV files or directories (sorted)")
    plot.add_argument("-o", "--output", required=True, help="image to write: .png, .svg or .pdf")
    plot.add_argument("--columns", help="comma-separated columns to draw (default: all)")
    plot.add_argument(
        "--sample-rows", type=int, default=200_000, help="histogram sample per column"
    )
    plot.add_argument("--max-rows", type=int, default=None, help="read at most this many rows")
    plot.add_argument("--bins", type=int, default=100)
    plot.add_argument("--dpi", type=int, default=100)
    plot.add_argument("--log", action="store_true", help="density on a log scale")
    plot.set_defaults(func=_cmd_plot)

    report = sub.add_parser(
        "report",
        parents=[common],
        help="write one self-contained HTML page: a summary table and each column's plot",
    )
    report.add_argument("model", help="a model file written by `gpuvgm fit`")
    report.add_argument("data", nargs="+", help="Parquet/CSV files or directories (sorted)")
    report.add_argument("-o", "--output", required=True, help="the HTML page to write")
    report.add_argument(
        "--force", action="store_true", help="replace an existing file that is not a report"
    )
    report.add_argument("--columns", help="comma-separated columns to report (default: all)")
    report.add_argument(
        "--sample-rows", type=int, default=50_000, help="histogram sample per column"
    )
    report.add_argument("--max-rows", type=int, default=None, help="read at most this many rows")
    report.add_argument("--bins", type=int, default=80)
    report.add_argument("--dpi", type=int, default=96)
    report.add_argument(
        "--scale",
        choices=["both", "linear", "log"],
        default="both",
        help="density scale of the plots (both: linear above, log below)",
    )
    report.set_defaults(func=_cmd_report)

    bench = sub.add_parser("bench", parents=[common], help="time the passes on generated data")
    bench.add_argument("--rows", type=int, default=1_000_000)
    bench.add_argument("--columns", type=int, default=1)
    bench.add_argument("--iterations", type=int, default=10)
    bench.set_defaults(func=_cmd_bench)

    info = sub.add_parser("info", help="versions, GPU availability, a model file's contents")
    info.add_argument("model", nargs="?", help="a model file to describe")
    info.add_argument(
        "--device",
        action="store_true",
        help="exit with 1 when the CUDA backend is unusable (a smoke check)",
    )
    info.add_argument("-v", "--verbose", action="count", default=0)
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING
    if args.verbose == 1:
        level = logging.INFO
    elif args.verbose >= 2:
        level = logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    try:
        with _sigterm_as_interrupt():
            return int(args.func(args))
    except KeyboardInterrupt as exc:
        code = 128 + signal.SIGTERM if isinstance(exc, Terminated) else 130
        print(f"gpuvgm: {'terminated' if code != 130 else 'interrupted'}", file=sys.stderr)
        if argv is None:
            # Run as the program: the outputs being written were removed on the way here.
            # Exit now rather than join worker threads an asynchronous interrupt may have left
            # waiting on a lock (seen as a hang at interpreter exit under load).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except BrokenPipeError:  # `gpuvgm info | head`: the reader went away, nothing to report
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ParameterError as exc:
        if args.verbose:
            raise
        print(f"gpuvgm: error: {exc}", file=sys.stderr)
        return 2
    except GPUVGMError as exc:
        if args.verbose:
            raise
        print(f"gpuvgm: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # one not wrapped below the CLI: still one line
        if args.verbose:
            raise
        name = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
        print(f"gpuvgm: error:{name} {exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if args.verbose:
            raise
        print(
            f"gpuvgm: internal error: {type(exc).__name__}: {exc} (run with -v for the "
            "traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
