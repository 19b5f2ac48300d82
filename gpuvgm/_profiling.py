"""NVTX ranges for Nsight Systems, when the optional ``nvtx`` package is installed."""

from __future__ import annotations

import contextlib
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


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (``VmHWM`` on Linux, ``ru_maxrss`` elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    import sys

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux/BSD
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale
