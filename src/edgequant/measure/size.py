"""Artifact size on disk and the bytes its weights take, from the artifact's metadata.

Example:
    >>> artifact_sizes({"size_bytes": 1000, "weight_bytes": 800})
    (1000, 800)
    >>> artifact_sizes({})
    (None, None)
"""

from __future__ import annotations

from pathlib import Path
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


def artifact_disk_bytes(path: Path | str) -> int:
    """Bytes on disk of an artifact: a directory's files, or a model file plus its companions.

    Companions are the files beside it whose names start with its stem (``model.xml`` +
    ``model.bin``; ``model.onnx`` + ``model.onnx.data``); our ``artifact.json`` never counts.
    Measured from the directory itself rather than from recorded file lists, which go stale when
    an artifact is built in a temporary folder and then moved.

    Example:
        >>> artifact_disk_bytes("/nonexistent/model.xml")
        0
    """
    p = Path(path)
    if p.is_dir():
        files = [f for f in p.rglob("*") if f.is_file()]
    elif p.parent.is_dir():
        files = [f for f in p.parent.iterdir() if f.is_file() and f.name.startswith(p.stem)]
    else:
        return 0
    return sum(f.stat().st_size for f in files if f.name != "artifact.json")
