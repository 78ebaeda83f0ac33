"""Artifacts and run folders travel as tar.gz bytes; an artifact carries a content hash.

:func:`tree_hash` is the SHA-256 of a folder's files (relative paths and contents, in sorted
order): the submitting host computes it on the artifact it built, the device recomputes it on
what it unpacked and refuses to load anything else (:func:`unpack_checked`).

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "m.onnx").write_bytes(b"model")
    >>> blob, digest = pack_artifact(d)
    >>> out = unpack_checked(blob, digest, pathlib.Path(tempfile.mkdtemp()) / "a")
    >>> (out / "m.onnx").read_bytes(), tree_hash(out) == digest
    (b'model', True)
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import uuid
from pathlib import Path

from edgequant.errors import ArtifactError

#: files larger than this are left out of a run folder sent back (LoadGen traces can be huge)
MAX_RETURNED_FILE_BYTES = 16 * 1024 * 1024


def tree_hash(folder: Path) -> str:
    """SHA-256 over every file's relative path and contents, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        h.update(p.relative_to(folder).as_posix().encode() + b"\0")
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def pack(folder: Path, *, max_file_bytes: int | None = None) -> bytes:
    """``folder``'s files as tar.gz bytes (paths relative to it; big files left out if asked)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for p in sorted(q for q in folder.rglob("*") if q.is_file()):
            if max_file_bytes is not None and p.stat().st_size > max_file_bytes:
                continue
            tar.add(p, arcname=p.relative_to(folder).as_posix(), recursive=False)
    return buf.getvalue()


def pack_artifact(folder: Path) -> tuple[bytes, str]:
    """The artifact folder as tar.gz bytes and its :func:`tree_hash`."""
    return pack(folder), tree_hash(folder)


def unpack(blob: bytes, dest: Path) -> Path:
    """Extract tar.gz bytes into ``dest`` (only plain files and folders inside it)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
    return dest


def unpack_checked(blob: bytes, digest: str, dest: Path) -> Path:
    """Unpack an artifact into ``dest`` unless a checked copy is already there; refuse it
    (:class:`ArtifactError`) when its content hash is not ``digest``."""
    if dest.is_dir() and tree_hash(dest) == digest:
        return dest
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}")
    try:
        unpack(blob, tmp)
        got = tree_hash(tmp)
        if got != digest:
            raise ArtifactError(
                f"the artifact received has content hash {got[:12]}, not {digest[:12]}: "
                "it was damaged on the way; re-run the sweep"
            )
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


__all__ = [
    "MAX_RETURNED_FILE_BYTES",
    "pack",
    "pack_artifact",
    "tree_hash",
    "unpack",
    "unpack_checked",
]
