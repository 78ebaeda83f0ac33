"""Where edgequant keeps what it caches: one root for every stage.

Example:
    >>> import os
    >>> os.environ["EDGEQUANT_CACHE"] = "/tmp/eq"; default_cache_dir()
    PosixPath('/tmp/eq')
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$EDGEQUANT_CACHE`` if set, else ``~/.cache/edgequant``: artifacts, converted sources
    (``sources/``), learnt roundings (``adaround/``).

    Example:
        >>> default_cache_dir().name != ""
        True
    """
    env = os.environ.get("EDGEQUANT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgequant"


__all__ = ["default_cache_dir"]
