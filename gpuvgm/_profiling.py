"""NVTX ranges for Nsight Systems, when the optional ``nvtx`` package is installed."""

from __future__ import annotations

import contextlib
import os
from typing import Any

try:
    import nvtx
except ImportError:
    nvtx = None


def annotate(name: str) -> contextlib.AbstractContextManager[Any]:
    """An NVTX range named ``name`` in the ``gpuvgm`` domain; a no-op without ``nvtx``."""
    if nvtx is None:
        return contextlib.nullcontext()
    return nvtx.annotate(name, domain="gpuvgm")


def _proc_status_bytes(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status in bytes, or None where there is none (not Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (``VmHWM`` on Linux, ``ru_maxrss`` elsewhere).

    ``VmHWM`` belongs to the current address space; ``ru_maxrss`` survives ``exec``, so a child
    process would report its parent's peak.
    """
    peak = _proc_status_bytes("VmHWM:")
    if peak is not None:
        return peak
    import resource
    import sys

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux/BSD
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def current_rss_bytes() -> int:
    """Resident memory now (``VmRSS`` on Linux); 0 where /proc is missing."""
    return _proc_status_bytes("VmRSS:") or 0


def cpu_report(process_seconds: float, wall_seconds: float) -> dict[str, float | int]:
    """``fit_report_["cpu"]``: the process's CPU seconds over a span of ``wall_seconds``, and
    its utilisation of the cores it may run on (1.0: every core busy throughout)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return {
        "process_seconds": process_seconds,
        "wall_seconds": wall_seconds,
        "cores": cores,
        "utilisation": process_seconds / max(wall_seconds, 1e-12) / cores,
    }
