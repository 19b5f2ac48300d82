"""The ``gpuvgm`` command line. The only module that prints.

Exit codes: 0 done, 1 data or model error (one line, no traceback unless ``-v``), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from collections.abc import Sequence
from typing import Any

from ._errors import GPUVGMError
from ._version import __version__


def _print_demo(result: dict[str, Any]) -> None:
    rows = result["rows"]
    print(
        f"gpuvgm {__version__} demo: {rows:,} rows x {len(result['columns'])} columns, "
        f"backend {result['backend']}"
    )
    print(f"  data: {result['data']}")
    print()
    print(f"  {'phase':<10} {'seconds':>9} {'rows/s':>14}")
    print(
        f"  {'fit':<10} {result['fit_seconds']:>9.2f} {result['fit_rows_per_second']:>14,.0f}"
        f"   ({result['fit_passes']} passes: pre-pass, init, iterations; "
        f"{result['fit_row_passes_per_second']:,.0f} row-passes/s)"
    )
    print(
        f"  {'transform':<10} {result['transform_seconds']:>9.2f} "
        f"{result['transform_rows_per_second']:>14,.0f}   (Parquet -> Parquet, RDT layout)"
    )
    print(
        f"  {'inverse':<10} {result['inverse_seconds']:>9.2f} "
        f"{result['inverse_rows_per_second']:>14,.0f}   (Parquet -> memory, checked)"
    )
    print()
    print(
        f"  {'column':<10} {'components':>10} {'iterations':>10} {'converged':>9} "
        f"{'nulls':>7} {'clipped':>8} {'round-trip max |err| / std':>27}"
    )
    for j, name in enumerate(result["columns"]):
        print(
            f"  {name:<10} {result['components'][j]:>10} {result['n_iter'][j]:>10} "
            f"{'yes' if result['converged'][j] else 'no':>9} {result['nulls'][j]:>7,} "
            f"{result['n_clipped'][j]:>8,} "
            f"{result['round_trip_max_error_over_std'][j]:>27.2e}"
        )
    print()
    print(f"  encoded output: {result['encoded']}")


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    result = run_demo(
        args.dir,
        rows=args.rows,
        device=args.device,
        max_iter=args.max_iter,
        chunk_rows=args.chunk_rows,
    )
    if args.metrics_json:
        with open(args.metrics_json, "w") as f:
            json.dump(result, f, indent=2)
    if not args.quiet:
        _print_demo(result)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import numpy as np
    import pyarrow as pa

    from ._backends import get_backend

    print(f"gpuvgm {__version__}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, pyarrow {pa.__version__}")
    try:
        backend = get_backend("cuda")
        print(f"cuda: available ({backend.NAME})")
    except GPUVGMError as exc:
        print(f"cuda: unavailable: {exc}")
        if args.device:
            return 1
    return 0


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
    common.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    common.add_argument("--chunk-rows", type=int, default=1 << 20)
    common.add_argument("--metrics-json", metavar="PATH", help="write the figures as JSON")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", parents=[common], help="generate the demo table, fit, transform and invert it"
    )
    demo.add_argument("--dir", default="demo_data", help="where the demo files go")
    demo.add_argument("--rows", type=int, default=5_000_000)
    demo.add_argument("--max-iter", type=int, default=100)
    demo.set_defaults(func=_cmd_demo)

    info = sub.add_parser("info", help="versions and whether a GPU backend is usable")
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
        return int(args.func(args))
    except GPUVGMError as exc:
        if args.verbose:
            raise
        print(f"gpuvgm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gpuvgm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
