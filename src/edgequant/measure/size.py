"""Artifact size on disk and the bytes its weights take, from the artifact's metadata.

Example:
    >>> artifact_sizes({"size_bytes": 1000, "weight_bytes": 800})
    (1000, 800)
    >>> artifact_sizes({})
    (None, None)
"""

from __future__ import annotations

from typing import Any


def artifact_sizes(
    metadata: dict[str, Any], size_bytes: int | None = None
) -> tuple[int | None, int | None]:
    """``(size_bytes, weight_bytes)``; None where unknown (never a guess).

    ``size_bytes`` measured on disk by the caller wins over the metadata value; ``weight_bytes``
    is what the backend recorded when it built the artifact (``weight_bytes`` key).
    """
    size = size_bytes if size_bytes is not None else metadata.get("size_bytes")
    weights = metadata.get("weight_bytes")
    return (None if size is None else int(size)), (None if weights is None else int(weights))
