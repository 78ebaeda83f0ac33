"""Peak resident memory of this process (runs are one per process, so this is per run).

Example:
    >>> peak_rss_bytes() > 0
    True
"""

from __future__ import annotations

import resource
import sys


def peak_rss_bytes() -> int:
    """Peak resident set size of the current process, in bytes.

    ``ru_maxrss`` is in KiB on Linux and in bytes on macOS; both are normalised to bytes.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def current_rss_bytes() -> int | None:
    """Current resident set size in bytes (Linux ``/proc``), or None where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")
