"""``cupyx``: pinned host memory."""

from __future__ import annotations

from ._memory import empty_pinned

__all__ = ["empty_pinned"]
